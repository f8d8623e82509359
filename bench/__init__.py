"""Benchmarks: the figures docs/performance.md quotes (`make bench`)."""
