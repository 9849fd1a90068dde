"""Benchmark scripts (run as ``python bench/<name>.py``); they write their section of bench_results/BENCHMARKS.md
(``--update-docs``: of docs/BENCHMARKS.md)."""
