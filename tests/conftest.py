"""Fixtures that start real cache servers on free 127.0.0.1 ports and stop them afterwards.

They use bench.cluster, the same code as `bench cluster up`, so the tests exercise the
launcher users run. A missing server program FAILS the test with the Debian package to
install (CI installs them; a skip would hide that nothing was tested).

    memcached_server      function  LocalServer: url, nodes, host, port, pid, pause(), resume()
    redis_server          function  LocalServer (standalone Redis, no persistence)
    memcached_pool        module    ServerGroup: url (3 nodes), nodes, servers
    nutcracker_memcached  module    ServerGroup: url/nodes = the proxy; servers = 2 memcached + nutcracker
    redis_cluster         session   ServerGroup: 3 masters; url names one node, nodes all

Shared (module/session) servers are never flushed between tests: use keys unique to the
test, e.g. with the `key_prefix` fixture.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import pytest

from bench import cluster
from bench.errors import BenchError


class _Stoppable(Protocol):
    def stop(self) -> object: ...


S = TypeVar("S", bound=_Stoppable)


def _serve(start: Callable[[], S]) -> Iterator[S]:
    """Start, yield, and stop even when the test fails; a start failure (missing program,
    server that never answers) fails the test with its one-line message."""
    try:
        running = start()
    except BenchError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def memcached_server(tmp_path) -> Iterator[cluster.LocalServer]:
    """One memcached node, fresh for each test."""
    yield from _serve(lambda: cluster.start_memcached(0, tmp_path))


@pytest.fixture
def redis_server(tmp_path) -> Iterator[cluster.LocalServer]:
    """One standalone Redis, fresh for each test."""
    yield from _serve(lambda: cluster.start_redis(0, tmp_path))


@pytest.fixture(scope="module")
def memcached_pool(tmp_path_factory) -> Iterator[cluster.ServerGroup]:
    """Three memcached nodes behind one client-side-hashed URL."""
    workdir = tmp_path_factory.mktemp("memcached-pool")
    yield from _serve(lambda: cluster.start_memcached_pool(3, workdir))


@pytest.fixture(scope="module")
def nutcracker_memcached(tmp_path_factory) -> Iterator[cluster.ServerGroup]:
    """nutcracker in front of two memcached nodes; clients see only the proxy."""
    workdir = tmp_path_factory.mktemp("nutcracker")
    yield from _serve(lambda: cluster.start_proxied_pool(2, workdir, "memcached"))


@pytest.fixture(scope="module")
def nutcracker_redis(tmp_path_factory) -> Iterator[cluster.ServerGroup]:
    """nutcracker in front of two Redis nodes (Redis protocol); clients see only the proxy."""
    workdir = tmp_path_factory.mktemp("nutcracker-redis")
    yield from _serve(lambda: cluster.start_proxied_pool(2, workdir, "redis"))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[cluster.ServerGroup]:
    """A 3-master Redis Cluster (takes seconds to form, hence one per session)."""
    workdir = tmp_path_factory.mktemp("redis-cluster")
    yield from _serve(lambda: cluster.start_redis_cluster(3, workdir))


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses, for the shared pool and cluster fixtures."""
    return f"test:{uuid.uuid4().hex[:12]}:"
