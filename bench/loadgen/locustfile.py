"""Locust's entry point for cachebench (`locust -f bench/loadgen/locustfile.py`, run by `bench run`).

Locust imports this file under its own module name; the users and hooks live in
`bench.loadgen.users` so that they are imported exactly once.
"""

from bench.loadgen.users import CacheUser  # noqa: F401  (Locust discovers the User class here)
