"""Target URLs and the interface every protocol adapter implements.

A target is named by one URL (`memcached://`, `redis://`, `redis+cluster://`); parsing it
here, once, means every later stage (driver, run.json, stats) sees the same validated
nodes and never the password (`TargetInfo.redacted`, and `repr()` hides it too).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import parse_qsl, quote, unquote

from bench.errors import InputError
from bench.units import parse_duration

KINDS = {"memcached": "memcached", "redis": "redis", "redis+cluster": "redis-cluster"}
EXPECTED = {
    "memcached": "memcached://host:port[,host:port...]",
    "redis": "redis://[user:password@]host:port[/db]",
    "redis-cluster": "redis+cluster://[user:password@]host:port[,host:port...]",
}
OPTIONS = {"timeout": "a duration > 0 such as 500ms or 2s"}

_NODE = re.compile(r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})")
_PASSWORD_IN_URL = re.compile(r"(://[^/@?]*?:)[^@]*@")


@dataclass(frozen=True)
class TargetInfo:
    """A parsed, validated target URL; safe to log and to write into run.json."""

    kind: str                       # "memcached" | "redis" | "redis-cluster"
    nodes: list[str]                # ["host:port", ...], in URL order
    redacted: str                   # the URL with the password replaced by ***
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, float] = field(default_factory=dict)   # {"timeout": seconds}


#: Ops only some protocols have; a Target that has one overrides its method.
OPTIONAL_OPS = ("hget", "hset")


class UnsupportedOperation(InputError):
    """The scenario asks for an operation the protocol does not have (hget on memcached)."""


class Target(ABC):
    """Clients for one Locust user: not thread-safe, not shared, reconnects after errors.

    Keys are str, values bytes, TTLs float seconds (0 = no expiry). Every call waits for
    the server's reply, so a failing server raises (see `error_kind`) instead of
    looking like a miss.
    """

    kind = "target"   # each adapter names its protocol, for messages

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The value, or None on a miss."""

    @abstractmethod
    def get_multi(self, keys: list[str]) -> dict[str, bytes]:
        """The keys that were found (misses are absent)."""

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store unconditionally."""

    @abstractmethod
    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Store only if absent; True if stored (a lock was taken)."""

    @abstractmethod
    def replace(self, key: str, value: bytes, ttl: float) -> bool:
        """Store only if present; True if stored."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """True if the key existed."""

    @abstractmethod
    def incr(self, key: str, delta: int) -> int | None:
        """The new value; None when the key is missing and the protocol does not create it."""

    @abstractmethod
    def decr(self, key: str, delta: int) -> int | None:
        """The new value; None when the key is missing and the protocol does not create it."""

    @abstractmethod
    def touch(self, key: str, ttl: float) -> bool:
        """Set a new TTL; True if the key exists."""

    @abstractmethod
    def set_many(self, items: dict[str, bytes], ttl: float) -> None:
        """Store many keys in as few round trips as the protocol allows (prefill)."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection; never raises."""

    @classmethod
    def unsupported_ops(cls) -> frozenset[str]:
        """The optional ops (hashes) this protocol leaves to the base class's refusal."""
        return frozenset(op for op in OPTIONAL_OPS if getattr(cls, op) is getattr(Target, op))

    def hget(self, key: str, field: str) -> bytes | None:
        """One field of a hash; only protocols with hashes override this."""
        raise UnsupportedOperation(f"hget needs a Redis target, not {self.kind}", field="target")

    def hset(self, key: str, mapping: dict[str, bytes], ttl: float) -> None:
        """Write fields of a hash (and its TTL); only protocols with hashes override this."""
        raise UnsupportedOperation(f"hset needs a Redis target, not {self.kind}", field="target")

    def __enter__(self) -> Target:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def split_node(node: str) -> tuple[str, int]:
    """("host", port) from a validated "host:port"."""
    host, _, port = node.rpartition(":")
    return host, int(port)


def redact_raw(url: str) -> str:
    """Hide a password even in a URL too broken to parse, for error messages."""
    return _PASSWORD_IN_URL.sub(r"\1***@", url)


def parse_target(url: str) -> TargetInfo:
    """Validate a target URL; InputError names the URL and the form that was expected."""
    scheme, sep, rest = url.strip().partition("://")
    kind = KINDS.get(scheme.lower()) if sep else None
    if kind is None:
        raise _bad(url, " or ".join(EXPECTED.values()))
    credentials, _, rest = rest.rpartition("@")
    rest, _, query = rest.partition("?")
    hosts, _, path = rest.partition("/")   # a trailing "/" alone is fine
    username, password = _credentials(url, kind, credentials)
    nodes = _nodes(url, kind, hosts)
    db = _db(url, kind, path) if path else 0
    options = _options(url, kind, query)
    auth = ""
    if username or password:
        auth = quote(username or "", safe="") + (":***" if password else "") + "@"
    rest = ",".join(nodes) + (f"/{db}" if path else "") + (f"?{query}" if query else "")
    return TargetInfo(kind=kind, nodes=nodes, redacted=f"{scheme.lower()}://{auth}{rest}",
                      db=db, username=username, password=password, options=options)


def _bad(url: str, expected: str, problem: str = "") -> InputError:
    """The one error shape for a bad URL: what was expected, what was given, and why."""
    why = f" ({problem})" if problem else ""
    return InputError(f"expected {expected}, got {redact_raw(url)!r}{why}", field="target")


def _credentials(url: str, kind: str, text: str) -> tuple[str | None, str | None]:
    """(username, password), percent-decoded; memcached has no credentials in the URL."""
    if not text:
        return None, None
    if kind == "memcached":
        raise _bad(url, EXPECTED[kind], "memcached URLs take no user or password")
    user, colon, password = text.partition(":")
    if not colon:
        raise _bad(url, EXPECTED[kind], "write user:password@ or :password@")
    return unquote(user) or None, unquote(password) or None


def _nodes(url: str, kind: str, text: str) -> list[str]:
    """host:port entries, checked one by one; a plain redis:// URL has exactly one."""
    nodes = text.split(",")
    for node in nodes:
        match = _NODE.fullmatch(node)
        if not match or not 0 < int(match["port"]) < 65536:
            raise _bad(url, EXPECTED[kind], f"{node!r} is not host:port with a port 1-65535")
    if len(set(nodes)) != len(nodes):
        raise _bad(url, EXPECTED[kind], "a node is listed twice")
    if kind == "redis" and len(nodes) > 1:
        raise _bad(url, EXPECTED[kind], "one node; use redis+cluster:// for a cluster")
    return nodes


def _db(url: str, kind: str, path: str) -> int:
    """The Redis database number from the path; the other kinds take no path."""
    if kind != "redis":
        raise _bad(url, EXPECTED[kind], f"no /path after the nodes of a {kind} URL")
    if not path.isdigit():
        raise _bad(url, EXPECTED[kind], "the database after / is a number such as 0")
    return int(path)


def _options(url: str, kind: str, query: str) -> dict[str, float]:
    """Known query options, parsed; unknown ones are refused so that typos are not ignored."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise _bad(url, EXPECTED[kind], "query options are name=value joined by &") from None
    options = {}
    for name, value in pairs:
        if name not in OPTIONS:
            raise _bad(url, EXPECTED[kind], f"unknown option {name!r}; known: {', '.join(OPTIONS)}")
        try:
            options[name] = parse_duration(value)
        except ValueError as exc:
            raise _bad(url, EXPECTED[kind], f"option {name}: {exc}") from None
        if options[name] <= 0:
            raise _bad(url, EXPECTED[kind], f"option {name}: expected {OPTIONS[name]}")
    return options
