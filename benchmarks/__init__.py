"""Benchmarks: scripts that print measured figures and ratios (not tests). See benchmarks/README.md."""
