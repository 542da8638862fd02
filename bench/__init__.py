"""Benchmarks of a real `tessera serve` process: `make bench` (see README, "Performance")."""
