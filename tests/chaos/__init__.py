"""Fault tests: kills, restarts, provider outages, overload, a full disk and hostile input.

``pytest tests/chaos`` runs the short version (inside ``make test``); ``python -m
tests.chaos.run`` (``make chaos``) runs the long one and prints the table docs/performance.md quotes.
"""
