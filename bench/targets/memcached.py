"""memcached adapter: one pymemcache `Client` per node, keys routed by a ketama ring.

pymemcache's `HashClient` is not used for pools: after a node fails it answers calls to
that node with the default value (a miss, a False) until `retry_timeout` has passed,
and after `retry_attempts` it drops the node and re-maps its keys. Both hide a failing
server from the results. Here a call to a failing node always raises, and that node's
client reconnects on its next call, so a server that comes back is used again.
"""

from __future__ import annotations

import bisect
import math
import re
import ssl
import struct
import time
from contextlib import closing
from hashlib import md5

from pymemcache.client.base import Client
from pymemcache.exceptions import (MemcacheClientError, MemcacheError,
                                   MemcacheIllegalInputError, MemcacheServerError,
                                   MemcacheUnexpectedCloseError)

from bench.targets.base import Target, split_node
from bench.targets.sockets import one_send
from bench.vocabulary import ERROR_CLIENT, ERROR_CONNECTION, ERROR_SERVER

HASH_STOP = "|#|"            # mcrouter/MediaWiki: only the key before it picks the node
POINTS_PER_NODE = 160        # ketama points per node, as libmemcached and twemproxy use
MAX_RELATIVE_TTL = 30 * 86400  # memcached reads a larger exptime as a unix timestamp
ERRORS = (MemcacheError,)    # what a node can raise besides OSError

_valid_key = re.compile(r"[!-~]{1,250}").fullmatch   # the text protocol's key rule
_md5_words = struct.Struct("<4I").unpack
_md5_first_word = struct.Struct("<I").unpack_from


def exptime(ttl: float) -> int:
    """memcached's exptime for a TTL in seconds: whole seconds rounded up, so a key
    never expires before its TTL, and absolute beyond 30 days, as memcached requires."""
    if ttl <= 0:
        return 0
    seconds = math.ceil(ttl)
    return seconds if seconds <= MAX_RELATIVE_TTL else int(time.time()) + seconds


def hash_part(key: str) -> str:
    """The part of a key that chooses its node (mcrouter's hash stop), so that
    `WANCache:x|#|v` and `WANCache:x|#|t` live on the same node."""
    cut = key.find(HASH_STOP)
    return key if cut < 0 else key[:cut]


class KetamaRing:
    """Consistent hashing over "host:port" nodes, the same ring as twemproxy's
    `distribution: ketama` with `hash: md5`: deterministic in every process (md5, never
    Python's `hash()`), and adding or removing a node moves only ~1/n of the keys."""

    def __init__(self, nodes: list[str]) -> None:
        ring = sorted((point, node) for node in nodes for point in self._points(node))
        self._points_sorted = [point for point, _ in ring]
        self._owners = [node for _, node in ring]

    @staticmethod
    def _points(node: str) -> list[int]:
        """A node's points; like twemproxy and libmemcached, a node on the default port
        11211 is hashed by its host alone."""
        host, port = split_node(node)
        name = host if port == 11211 else node
        return [point for index in range(POINTS_PER_NODE // 4)
                for point in _md5_words(md5(f"{name}-{index}".encode()).digest())]

    def node_for(self, key: str) -> str:
        """The node that owns `key`: the first point at or after the key's hash, wrapping."""
        point = _md5_first_word(md5(hash_part(key).encode()).digest())[0]
        index = bisect.bisect_left(self._points_sorted, point)
        return self._owners[index if index < len(self._owners) else 0]


class MemcachedTarget(Target):
    """A single node or a client-side pool; every reply is awaited (noreply=False)."""

    kind = "memcached"

    def __init__(self, nodes: list[str], timeout: float,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self._clients = {node: _client(node, timeout, tls_context) for node in nodes}
        self._ring = KetamaRing(nodes) if len(nodes) > 1 else None
        self._only = self._clients[nodes[0]]

    def node_for(self, key: str) -> str:
        """The "host:port" that stores `key` (for tests and diagnostics)."""
        return self._ring.node_for(key) if self._ring else next(iter(self._clients))

    def _route(self, key: str) -> Client:
        """The client for the node owning `key`; an invalid key is refused, never sent."""
        if not _valid_key(key):
            raise MemcacheIllegalInputError(
                f"memcached key must be 1-250 printable ASCII characters without spaces "
                f"or control characters, got {key!r:.80} ({len(key)} characters)")
        return self._only if self._ring is None else self._clients[self._ring.node_for(key)]

    def _by_node(self, keys: list[str] | dict[str, bytes]) -> dict[Client, list[str]]:
        """Keys grouped by owning node, so that multi-key calls cost one round trip per node."""
        groups: dict[Client, list[str]] = {}
        for key in keys:
            groups.setdefault(self._route(key), []).append(key)
        return groups

    def get(self, key: str) -> bytes | None:
        return self._route(key).get(key)

    def get_multi(self, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for client, node_keys in self._by_node(keys).items():
            found.update(client.get_many(node_keys))
        return found

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self._route(key).set(key, value, exptime(ttl), noreply=False)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        return self._route(key).add(key, value, exptime(ttl), noreply=False)

    def replace(self, key: str, value: bytes, ttl: float) -> bool:
        return self._route(key).replace(key, value, exptime(ttl), noreply=False)

    def delete(self, key: str) -> bool:
        return self._route(key).delete(key, noreply=False)

    def incr(self, key: str, delta: int) -> int | None:
        return self._route(key).incr(key, delta, noreply=False)

    def decr(self, key: str, delta: int) -> int | None:
        return self._route(key).decr(key, delta, noreply=False)

    def touch(self, key: str, ttl: float) -> bool:
        return self._route(key).touch(key, exptime(ttl), noreply=False)

    def set_many(self, items: dict[str, bytes], ttl: float) -> None:
        expire = exptime(ttl)
        for client, node_keys in self._by_node(items).items():
            client.set_many({key: items[key] for key in node_keys}, expire, noreply=False)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


class _LeanClient(Client):
    """pymemcache's client without two costs of its hot path that the target covers:
    gevent's sendall (a socket that sends each request with one syscall, sockets.py) and
    a second check of every key (MemcachedTarget._route refuses, more strictly, every key
    pymemcache's check would). Measured at a worker's ceiling: 8% and 2% of its samples.
    A TLS socket keeps its own sendall: an SSL write is not a plain send()."""

    def _connect(self) -> None:
        super()._connect()
        if self.tls_context is None:
            one_send(self.sock)

    def check_key(self, key: str | bytes, key_prefix: bytes = b"") -> bytes:
        return key_prefix + (key.encode("ascii") if isinstance(key, str) else key)


def _client(node: str, timeout: float, tls_context: ssl.SSLContext | None = None) -> Client:
    """A lazily connecting client for one node: TCP_NODELAY, replies awaited, bytes values;
    over TLS when given a context (memcached 1.6 `-Z`)."""
    return _LeanClient(split_node(node), connect_timeout=timeout, timeout=timeout,
                       no_delay=True, default_noreply=False, tls_context=tls_context)


def node_stats(node: str, timeout: float,
               tls_context: ssl.SSLContext | None = None) -> dict[str, int | float]:
    """`stats` of one node as numbers (flags as 0/1); text fields such as version are
    left out, so that every value can be subtracted (after - before)."""
    with closing(_client(node, timeout, tls_context)) as client:
        raw = client.stats()
    return {name.decode(): int(value) if isinstance(value, bool) else value
            for name, value in raw.items() if isinstance(value, (int, float))}


def node_version(node: str, timeout: float, tls_context: ssl.SSLContext | None = None) -> str:
    """The server's `version` string, e.g. "1.6.18"."""
    with closing(_client(node, timeout, tls_context)) as client:
        return client.version().decode()


def error_kind(exc: BaseException) -> str | None:
    """Classify pymemcache's exceptions; None when `exc` is not one of them."""
    if isinstance(exc, MemcacheUnexpectedCloseError):
        return ERROR_CONNECTION
    if isinstance(exc, MemcacheServerError):
        return ERROR_CLIENT if "too large" in str(exc) else ERROR_SERVER
    if isinstance(exc, MemcacheClientError):
        return ERROR_CLIENT
    return None
