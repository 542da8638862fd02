"""Benchmarks of a real `tessera serve` process: `make bench` (see docs/performance.md)."""
