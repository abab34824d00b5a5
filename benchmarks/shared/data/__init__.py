"""Data for the benchmarks: generated on the fly or shipped by a package."""
