"""The tests' PostgreSQL: ``capture.postgres``, where the benchmarks find it too (``bench/`` may
not import ``tests/``). Imported from here by the tests written before it moved."""

from capture.postgres import DATABASE, USER, PostgresServer, free_port, pg_bin, running_postgres

__all__ = ["DATABASE", "USER", "PostgresServer", "free_port", "pg_bin", "running_postgres"]
