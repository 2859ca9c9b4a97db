"""Target URLs and the interface every protocol adapter implements.

A target is named by one URL (`memcached://`, `redis://`, `redis+cluster://`, and over TLS
`memcached+tls://`, `rediss://`, `rediss+cluster://`); parsing it
here, once, means every later stage (driver, run.json, stats) sees the same validated
nodes and never the password (`TargetInfo.redacted`, and `repr()` hides it too).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from bench.errors import InputError
from bench.targets.tls import TLS_OPTIONS
from bench.units import parse_duration

KINDS = {"memcached": "memcached", "memcached+tls": "memcached", "redis": "redis",
         "rediss": "redis", "redis+cluster": "redis-cluster", "rediss+cluster": "redis-cluster"}
TLS_SCHEMES = frozenset({"memcached+tls", "rediss", "rediss+cluster"})
EXPECTED = {
    "memcached": "memcached://host:port[,host:port...]",
    "redis": "redis://[user:password@]host:port[/db]",
    "redis-cluster": "redis+cluster://[user:password@]host:port[,host:port...]",
}
_TLS_FORMS = "(over TLS: memcached+tls://, rediss://, rediss+cluster://)"
#: mcrouter's settings at Wikimedia: 250 ms timeouts, TKO after 10 in a row, a probe of a
#: TKO'd node every 60 s, failed-over writes kept at most 60 s in the gutter pool.
PRESETS = {"wmf": {"timeout": 0.25, "tko": 10, "probe": 60.0, "gutter_ttl": 60.0}}

_NODE = re.compile(r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})")
_PASSWORD_IN_URL = re.compile(r"(://[^/@?]*?:).*@")   # to the last @, as parse_target reads it


@dataclass(frozen=True)
class TargetInfo:
    """A parsed, validated target URL; safe to log and to write into run.json."""

    kind: str                       # "memcached" | "redis" | "redis-cluster"
    nodes: list[str]                # ["host:port", ...], in URL order
    redacted: str                   # the URL with the password replaced by ***
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)   # {"timeout": seconds, ...}
    tls: bool = False               # memcached+tls://, rediss://, rediss+cluster://


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
        raise _bad(url, " or ".join(EXPECTED.values()) + " " + _TLS_FORMS)
    credentials, _, rest = rest.rpartition("@")
    rest, _, query = rest.partition("?")
    hosts, _, path = rest.partition("/")   # a trailing "/" alone is fine
    username, password = _credentials(url, kind, credentials)
    nodes = _nodes(url, kind, hosts)
    db = _db(url, kind, path) if path else 0
    tls = scheme.lower() in TLS_SCHEMES
    options = _options(url, kind, tls, query)
    auth = ""
    if username or password:
        auth = quote(username or "", safe="") + (":***" if password else "") + "@"
    rest = ",".join(nodes) + (f"/{db}" if path else "") + (f"?{query}" if query else "")
    return TargetInfo(kind=kind, nodes=nodes, redacted=f"{scheme.lower()}://{auth}{rest}",
                      db=db, username=username, password=password, options=options, tls=tls)


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


def _positive_duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("expected a duration > 0 such as 500ms or 2s")
    return seconds


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"expected a whole number >= 1, got {value!r}")
    return int(value)


def _pem_file(value: str) -> str:
    if not Path(value).is_file():
        raise ValueError(f"no such file {value!r}")
    return value


def _host_name(value: str) -> str:
    if not _NODE.fullmatch(value + ":1"):
        raise ValueError(f"expected a host name, got {value!r}")
    return value


def _gutter(value: str) -> list[str]:
    nodes = value.split(",")
    if not all(_NODE.fullmatch(node) for node in nodes):
        raise ValueError(f"expected host:port[,host:port...], got {value!r}")
    return nodes


def _preset(value: str) -> str:
    if value not in PRESETS:
        raise ValueError(f"expected one of {', '.join(PRESETS)}, got {value!r}")
    return value


_ANY, _TLS, _MEMCACHED, _MEMCACHED_TLS = "any", "tls", "memcached", "memcached+tls"
#: name -> (which targets take it, its parser); a parser raises ValueError with what it expected.
OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "timeout": (_ANY, _positive_duration),
    **{name: (_TLS, _pem_file) for name in TLS_OPTIONS if name != "sni"},
    "sni": (_MEMCACHED_TLS, _host_name),  # redis-py always sends the URL's host
    "preset": (_MEMCACHED, _preset),      # mcrouter-style routing (bench.targets.routing)
    "tko": (_MEMCACHED, _count),
    "probe": (_MEMCACHED, _positive_duration),
    "gutter": (_MEMCACHED, _gutter),
    "gutter_ttl": (_MEMCACHED, _positive_duration),
}


def _takes(kind: str, tls: bool, name: str) -> bool:
    """Whether a target of this kind (over TLS or not) takes option `name`."""
    return {_ANY: True, _TLS: tls, _MEMCACHED: kind == "memcached",
            _MEMCACHED_TLS: tls and kind == "memcached"}[OPTIONS[name][0]]


def _options(url: str, kind: str, tls: bool, query: str) -> dict[str, Any]:
    """Known query options, parsed, a preset's values under the explicit ones; unknown
    ones are refused so that typos are not ignored."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise _bad(url, EXPECTED[kind], "query options are name=value joined by &") from None
    options: dict[str, Any] = {}
    for name, value in pairs:
        if name not in OPTIONS or not _takes(kind, tls, name):
            known = ", ".join(option for option in OPTIONS if _takes(kind, tls, option))
            raise _bad(url, EXPECTED[kind], f"unknown option {name!r}; known: {known}")
        try:
            options[name] = OPTIONS[name][1](value)
        except ValueError as exc:
            raise _bad(url, EXPECTED[kind], f"option {name}: {exc}") from None
    return {**PRESETS.get(options.get("preset", ""), {}), **options}
