"""Benchmarks: the figures the README quotes (`make bench`)."""
