"""Benchmarks: run them as scripts (python -m benchmarks.NAME); results go to results/."""
