"""cachebench: a benchmarking harness for memcached and Redis."""

__version__ = "0.1.0"
