"""Locust's entry point for cachebench (`locust -f bench/locustfile.py`, run by `bench run`).

Locust imports this file under its own module name; the users and hooks live in
`bench.loadgen` so that they are imported exactly once.
"""

from bench.loadgen import CacheUser  # noqa: F401  (Locust discovers the User class here)
