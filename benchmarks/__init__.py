"""Benchmarks: each compares the pipeline with a baseline measured in the same run."""
