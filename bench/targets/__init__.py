"""Target adapters: one small interface over memcached (node or pool), Redis, Redis Cluster.

The workload only sees `Target`; which protocol carries an operation is decided once,
by the URL. A proxy (twemproxy/nutcracker) is just `memcached://proxy:port` or
`redis://proxy:port`: one node from the client's view.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.targets import memcached, redis, routing
from bench.targets.base import Target, TargetInfo, UnsupportedOperation, parse_target
from bench.targets.tls import client_context
from bench.vocabulary import ERROR_CLIENT, ERROR_CONNECTION, ERROR_OTHER, ERROR_TIMEOUT

__all__ = ["Target", "TargetInfo", "UnsupportedOperation", "error_kind", "open_target",
           "parse_target", "server_stats", "server_versions", "unsupported_ops"]

DEFAULT_TIMEOUT = 1.0
STATS_TIMEOUT = 2.0
_NODE_ERRORS = (OSError, *memcached.ERRORS, *redis.ERRORS)


def open_target(info: TargetInfo, timeout: float = DEFAULT_TIMEOUT) -> Target:
    """A NEW set of clients (one per Locust user, never shared). No network I/O happens
    here: connection problems surface, classified, on the first call. A `?timeout=`
    in the URL is the most specific setting and wins over `timeout`."""
    seconds = info.options.get("timeout", timeout)
    if info.kind == "memcached" and routing.wants_routing(info.options):
        return routing.RoutedPool(info.nodes, info.options, seconds, _tls_context(info))
    if info.kind == "memcached":
        return memcached.MemcachedTarget(info.nodes, seconds, _tls_context(info))
    if info.kind == "redis":
        return redis.RedisTarget(info, seconds)
    return redis.RedisClusterTarget(info, seconds)


_CLASSES: dict[str, type[Target]] = {"memcached": memcached.MemcachedTarget,
                                     "redis": redis.RedisTarget,
                                     "redis-cluster": redis.RedisClusterTarget}


def unsupported_ops(info: TargetInfo) -> frozenset[str]:
    """Ops the target's protocol does not have (hashes on memcached): `bench run` refuses
    a scenario that asks for them before sending anything."""
    return _CLASSES[info.kind].unsupported_ops()


def error_kind(exc: BaseException) -> str:
    """The error kind (vocabulary.ERROR_KINDS, or ERROR_OTHER) of an exception raised by a
    Target call; the recorder counts errors by these kinds."""
    kind = memcached.error_kind(exc) or redis.error_kind(exc)
    if kind:
        return kind
    if isinstance(exc, TimeoutError):       # socket.timeout is TimeoutError
        return ERROR_TIMEOUT
    if isinstance(exc, OSError):            # refused, reset, broken pipe, unknown host
        return ERROR_CONNECTION
    if isinstance(exc, UnsupportedOperation):
        return ERROR_CLIENT
    return error_kind(exc.__cause__) if exc.__cause__ is not None else ERROR_OTHER


def server_stats(info: TargetInfo, timeout: float = STATS_TIMEOUT) -> dict[str, dict[str, Any]]:
    """{"host:port": {counter: number}} from a fresh connection per node (memcached
    `stats`, Redis `INFO all`; every master of a cluster). A node that does not answer,
    e.g. a proxy that has no `stats`/`INFO`, gets {"error": "..."} instead."""
    ask = _asker(info, timeout, memcached.node_stats, redis.node_stats)
    return _per_node(_nodes(info, timeout), ask, lambda message: {"error": message})


def server_versions(info: TargetInfo, timeout: float = STATS_TIMEOUT) -> dict[str, str]:
    """{"host:port": "1.6.18"}; a node that does not answer gets "error: ..."."""
    ask = _asker(info, timeout, memcached.node_version, redis.node_version)
    return _per_node(_nodes(info, timeout), ask, lambda message: f"error: {message}")


def _asker(info: TargetInfo, timeout: float, for_memcached: Callable[..., Any],
           for_redis: Callable[..., Any]) -> Callable[[str], Any]:
    """The per-node question for this kind of target, as a function of "host:port"."""
    if info.kind == "memcached":
        return partial(for_memcached, timeout=timeout, tls_context=_tls_context(info))
    return partial(for_redis, info, timeout=timeout)


def _tls_context(info: TargetInfo) -> ssl.SSLContext | None:
    """The verifying TLS context of a memcached+tls:// target (None without TLS)."""
    return client_context(info.options) if info.tls else None


def _nodes(info: TargetInfo, timeout: float) -> list[str]:
    """The nodes whose counters make up the target: every master of a cluster, and a
    memcached pool's gutter nodes (what they served is part of the run's counts)."""
    if info.kind == "redis-cluster":
        return redis.cluster_masters(info, timeout)
    return [*info.nodes, *info.options.get("gutter", [])]


def _per_node(nodes: list[str], ask: Callable[[str], Any],
              failed: Callable[[str], Any]) -> dict[str, Any]:
    """`ask` each node; one node's failure is recorded for it (as `failed(message)`) and
    does not stop the rest."""
    answers: dict[str, Any] = {}
    for node in nodes:
        try:
            answers[node] = ask(node)
        except _NODE_ERRORS as exc:
            answers[node] = failed(type(exc).__name__ + (f": {exc}" if str(exc) else ""))
    return answers
