"""Benchmarks behind `fraudnet bench` (run on demand, never in the test suite)."""
