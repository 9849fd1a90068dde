"""Benchmark scripts (run as ``python bench/<name>.py``); they write docs/BENCHMARKS.md."""
