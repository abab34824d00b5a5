"""Measured comparisons of the differentiation backends, and the paper's tasks."""
