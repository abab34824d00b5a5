"""Peer implementations timed beside ours (optional dependencies, imported only here)."""
