"""Redis adapter: one `redis.Redis` (single connection) or `RedisCluster` per user.

Commands go through `execute_command` so that exactly the documented commands are sent
(SET .. EX/PX, SET NX PX, INCRBY, ...) without the argument building of the helpers.
redis-py's default retries (3, with backoff) are turned off: a failed call is an error
in the results, not a slow success. The client is created on the first call, so opening
a target does no network I/O, and after a failure the next call reconnects.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterError, DataError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from bench.targets.base import Target, TargetInfo, split_node
from bench.targets.sockets import one_send
from bench.targets.tls import redis_keywords
from bench.vocabulary import ERROR_CLIENT, ERROR_CONNECTION, ERROR_SERVER, ERROR_TIMEOUT

CLIENT_NAME = "cachebench"   # visible in CLIENT LIST, so operators can tell who is loading
ERRORS = (RedisError, RedisClusterException)   # what a node can raise besides OSError
_KINDS = ((RedisTimeoutError, ERROR_TIMEOUT), (RedisConnectionError, ERROR_CONNECTION),
          (DataError, ERROR_CLIENT),
          (ResponseError, ERROR_SERVER),   # OOM, MOVED, ...
          (ClusterError, ERROR_SERVER))    # MOVED storms


def _ms(ttl: float) -> int:
    """A TTL in whole milliseconds, at least 1 (0 would mean "expire now" or an error)."""
    return max(1, round(ttl * 1000))


def expiry(ttl: float) -> tuple[str, int] | tuple[()]:
    """SET's expiry arguments: none for 0, EX for whole seconds, PX (ms) for fractions."""
    if ttl <= 0:
        return ()
    return ("EX", int(ttl)) if ttl % 1 == 0 else ("PX", _ms(ttl))


def _px(ttl: float) -> tuple[str, int] | tuple[()]:
    """Millisecond expiry for locks (add = SET NX PX), as MediaWiki's lock keys use."""
    return ("PX", _ms(ttl)) if ttl > 0 else ()


def _client_options(info: TargetInfo, timeout: float) -> dict[str, Any]:
    """Connection settings shared by every client this module makes. RESP2, as
    MediaWiki's phpredis speaks it and as proxies (twemproxy) understand it; TLS for
    rediss:// URLs."""
    return {"username": info.username, "password": info.password,
            "socket_timeout": timeout, "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0), "protocol": 2, "client_name": CLIENT_NAME,
            **(redis_keywords(info.options) if info.tls else {})}


# Per node: does it close the connection on CLIENT SETNAME/SETINFO (a proxy such as
# twemproxy, which knows no CLIENT command)? Found once per process.
_IS_PROXY: dict[str, bool] = {}


def _handshake(connection: redis.Connection) -> None:
    """redis-py's own handshake, on a socket that sends each command with one syscall
    (sockets.py); a TLS socket keeps its own sendall (an SSL write is not a plain send())."""
    if not isinstance(connection, redis.SSLConnection):
        one_send(connection._sock)
    connection.on_connect()


def _node_client(info: TargetInfo, node: str, timeout: float, **extra: Any) -> redis.Redis:
    """A plain client for one "host:port" (hiredis parses replies when installed)."""
    host, port = split_node(node)
    options = {**_client_options(info, timeout), "redis_connect_func": _handshake, **extra}
    if node not in _IS_PROXY:
        found = _is_proxy(host, port, options)
        if found is not None:
            _IS_PROXY[node] = found
    if _IS_PROXY.get(node):
        options.update(client_name=None, driver_info=None)
    return redis.Redis(host, port, **options)


def _is_proxy(host: str, port: int, options: dict[str, Any]) -> bool | None:
    """True when the node hangs up on the connection handshake's CLIENT commands but
    answers without them (a proxy), False when it takes them, None when it does not
    answer at all (unknown yet: the real calls will report that)."""
    try:
        with redis.Redis(host, port, **options) as named:
            named.ping()
        return False
    except RedisConnectionError:
        pass
    except ERRORS:
        return False  # it answered, with an error of its own (e.g. NOAUTH)
    try:
        with redis.Redis(host, port, **{**options, "client_name": None,
                                        "driver_info": None}) as plain:
            plain.ping()
    except ERRORS:
        return None
    return True


class RedisTarget(Target):
    """A single Redis node (or a proxy in front of several). Single commands use one
    connection; pipelines (set_many, hset with a TTL) take a second one from the
    client's own pool, kept for the next pipeline: at most two connections per user."""

    kind = "redis"

    def __init__(self, info: TargetInfo, timeout: float) -> None:
        self._info = info
        self._timeout = timeout
        self._client: redis.Redis | RedisCluster | None = None

    def _connect(self) -> redis.Redis | RedisCluster:
        """One connection, kept for every call; redis-py re-opens it after an error."""
        self._client = _node_client(self._info, self._info.nodes[0], self._timeout,
                                    db=self._info.db, single_connection_client=True)
        return self._client

    def _connected(self) -> redis.Redis | RedisCluster:
        """The client, created on first use (a failed creation is retried next call)."""
        return self._client if self._client is not None else self._connect()

    def _cmd(self, *args: Any) -> Any:
        """Send one command and wait for its reply (parsed by redis-py's callbacks)."""
        return self._connected().execute_command(*args)

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        return self._cmd("MGET", *keys)

    def get(self, key: str) -> bytes | None:
        return self._cmd("GET", key)

    def get_multi(self, keys: list[str]) -> dict[str, bytes]:
        return {key: value for key, value in zip(keys, self._mget(keys)) if value is not None}

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self._cmd("SET", key, value, *expiry(ttl))

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(self._cmd("SET", key, value, "NX", *_px(ttl)))

    def replace(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(self._cmd("SET", key, value, "XX", *expiry(ttl)))

    def delete(self, key: str) -> bool:
        return self._cmd("DEL", key) == 1

    def incr(self, key: str, delta: int) -> int:
        return self._cmd("INCRBY", key, delta)

    def decr(self, key: str, delta: int) -> int:
        return self._cmd("DECRBY", key, delta)

    def touch(self, key: str, ttl: float) -> bool:
        if ttl <= 0:   # EXPIRE 0 would delete the key; memcached's touch 0 means "no expiry"
            return bool(self._cmd("PERSIST", key)) or self._cmd("EXISTS", key) == 1
        unit, amount = expiry(ttl)
        return bool(self._cmd("EXPIRE" if unit == "EX" else "PEXPIRE", key, amount))

    def hget(self, key: str, field: str) -> bytes | None:
        return self._cmd("HGET", key, field)

    def hset(self, key: str, mapping: dict[str, bytes], ttl: float) -> None:
        fields = [item for pair in mapping.items() for item in pair]
        if ttl <= 0:
            self._cmd("HSET", key, *fields)
            return
        unit, amount = expiry(ttl)
        pipe = self._connected().pipeline(transaction=False)
        pipe.execute_command("HSET", key, *fields)
        pipe.execute_command("EXPIRE" if unit == "EX" else "PEXPIRE", key, amount)
        pipe.execute()

    def set_many(self, items: dict[str, bytes], ttl: float) -> None:
        args = expiry(ttl)
        pipe = self._connected().pipeline(transaction=False)
        for key, value in items.items():
            pipe.execute_command("SET", key, value, *args)
        pipe.execute()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class RedisClusterTarget(RedisTarget):
    """A Redis Cluster: the client follows MOVED/ASK and splits multi-key calls by slot."""

    kind = "redis-cluster"

    def _connect(self) -> RedisCluster:
        """Discovers the slot map from the seed nodes (the first call pays for it)."""
        self._client = _cluster_client(self._info, self._timeout)
        return self._client

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        return self._connected().mget_nonatomic(keys)


def _cluster_client(info: TargetInfo, timeout: float) -> RedisCluster:
    """A cluster client seeded with every node of the URL."""
    seeds = [ClusterNode(*split_node(node)) for node in info.nodes]
    return RedisCluster(startup_nodes=seeds, **_client_options(info, timeout))


def cluster_masters(info: TargetInfo, timeout: float) -> list[str]:
    """Every master's "host:port" as the cluster reports it; the seed nodes when no
    seed answers (each then reports its own error in the stats)."""
    try:
        with closing(_cluster_client(info, timeout)) as cluster:
            return sorted(node.name for node in cluster.get_primaries())
    except ERRORS:
        return list(info.nodes)


def _flatten(info: dict[str, Any], prefix: str = "") -> dict[str, int | float]:
    """INFO's nested sections as flat numeric counters: db0 {keys} -> db0_keys,
    cmdstat_get {calls} -> cmdstat_get_calls; text fields are left out."""
    flat: dict[str, int | float] = {}
    for name, value in info.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}_"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix + name] = value
    return flat


def node_stats(info: TargetInfo, node: str, timeout: float) -> dict[str, int | float]:
    """`INFO all` (with commandstats and keyspace) of one node as flat numeric counters."""
    with closing(_node_client(info, node, timeout)) as client:
        return _flatten(client.info("all"))


def node_version(info: TargetInfo, node: str, timeout: float) -> str:
    """The server's redis_version, e.g. "7.0.15"."""
    with closing(_node_client(info, node, timeout)) as client:
        return str(client.info("server")["redis_version"])


def error_kind(exc: BaseException) -> str | None:
    """Classify redis-py's exceptions; None when `exc` is not one of them (a cluster
    exception wrapping another, such as "no reachable node", is left to its cause)."""
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, RedisClusterException) and exc.__cause__ is None:
        return ERROR_SERVER
    return None
