"""mcrouter-style routing for a memcached pool: per-request timeout, TKO, probes, gutter.

What it models (Wikimedia's mcrouter, `?preset=wmf` in `bench.targets.base.PRESETS`):

- a node that fails `tko` requests in a row (timeouts, refused or dropped connections)
  is marked TKO ("technical knock-out"): requests for its keys are no longer sent to it;
- every `probe` seconds one request for a TKO'd node is let through; when it succeeds
  the node is back (its keys route to it again);
- while a node is TKO'd its keys fail over to the gutter pool (`gutter=h:p,...`, a
  ketama ring of its own, the key's hash stop respected as in the main pool) and writes
  that fail over are kept there at most `gutter_ttl` seconds (FailoverWithExptimeRoute);
  without a gutter pool they fail at once with `NodeDown` (a connection error).

Unlike mcrouter, a request that times out before TKO is not retried on the gutter: it
is reported as the timeout it was, so that the outage before TKO shows up as an error
burst in the results instead of being hidden behind a slow success.

TKO state is per process and shared by every user of the same node (as one mcrouter
serves every PHP worker of a host); greenlets are cooperative, so no lock is needed.
`RoutedPool.counts` tells how many requests each pool served, kept apart so that the
gutter's hits and misses can be checked against the gutter servers' own counters.
"""

from __future__ import annotations

import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheIllegalInputError, MemcacheUnexpectedCloseError

from bench.targets import memcached
from bench.targets.base import Target

#: Defaults for options the URL leaves out (mcrouter's own defaults, not the WMF preset).
DEFAULT_TKO = 3
DEFAULT_PROBE_S = 10.0
DEFAULT_GUTTER_TTL_S = 60.0
#: Failures that count toward TKO: the node did not answer (a server error does not).
NODE_FAILURES = (OSError, MemcacheUnexpectedCloseError)
ROUTING_OPTIONS = ("tko", "probe", "gutter", "gutter_ttl", "preset")

T = TypeVar("T")


class NodeDown(ConnectionError):
    """The key's node is TKO'd and there is no gutter pool to fail over to."""


@dataclass
class NodeHealth:
    """One node's TKO state: consecutive failures, and when it may next be probed."""

    failures: int = 0
    down: bool = False
    next_probe: float = 0.0
    tko_count: int = 0          # how often it was marked TKO (for tests and diagnostics)

    def usable(self, now: float, probe_s: float) -> bool:
        """Whether a request may go to the node now (up, or due for its probe, which
        then pushes the next probe `probe_s` later)."""
        if not self.down:
            return True
        if now < self.next_probe:
            return False
        self.next_probe = now + probe_s
        return True

    def succeeded(self) -> None:
        self.failures, self.down = 0, False

    def failed(self, now: float, tko: int, probe_s: float) -> None:
        self.failures += 1
        if not self.down and self.failures >= tko:
            self.down, self.next_probe = True, now + probe_s
            self.tko_count += 1


#: "host:port" -> its health, for every routed pool of this process.
HEALTH: dict[str, NodeHealth] = {}


def wants_routing(options: dict[str, Any]) -> bool:
    """Whether a memcached URL asks for mcrouter-style routing."""
    return any(name in options for name in ROUTING_OPTIONS)


class RoutedPool(Target):
    """A memcached pool (or single node) behind mcrouter-style failover."""

    kind = "memcached"

    def __init__(self, nodes: list[str], options: dict[str, Any], timeout: float,
                 tls_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._tko = int(options.get("tko", DEFAULT_TKO))
        self._probe_s = float(options.get("probe", DEFAULT_PROBE_S))
        self._gutter_ttl = float(options.get("gutter_ttl", DEFAULT_GUTTER_TTL_S))
        gutter = list(options.get("gutter", []))
        self._clients = {node: memcached._client(node, timeout, tls_context)
                         for node in [*nodes, *gutter]}
        self._ring = memcached.KetamaRing(nodes)
        self._gutter_ring = memcached.KetamaRing(gutter) if gutter else None
        self._health = {node: HEALTH.setdefault(node, NodeHealth()) for node in nodes}
        self._clock = clock
        #: requests served per pool and outcome: main/gutter x hits/misses/requests
        self.counts: Counter[str] = Counter()

    # -- routing

    def _place(self, key: str) -> tuple[str, bool]:
        """(node, via_gutter) for `key` now; NodeDown when its node is out and there is
        no gutter. An invalid key is refused, never sent."""
        if not memcached._valid_key(key):
            raise MemcacheIllegalInputError(
                f"memcached key must be 1-250 printable ASCII characters without spaces "
                f"or control characters, got {key!r:.80} ({len(key)} characters)")
        node = self._ring.node_for(key)
        if self._health[node].usable(self._clock(), self._probe_s):
            return node, False
        if self._gutter_ring is None:
            raise NodeDown(f"{node} is TKO (down after {self._tko} failures in a row)")
        return self._gutter_ring.node_for(key), True

    def _send(self, node: str, via_gutter: bool, call: Callable[[Client], T]) -> T:
        """One request to `node`; its outcome updates the main node's TKO state."""
        pool = "gutter" if via_gutter else "main"
        self.counts[f"{pool}_requests"] += 1
        if via_gutter:
            return call(self._clients[node])
        health = self._health[node]
        try:
            result = call(self._clients[node])
        except NODE_FAILURES:
            health.failed(self._clock(), self._tko, self._probe_s)
            raise
        health.succeeded()
        return result

    def _one(self, key: str, call: Callable[[Client, bool], T]) -> T:
        node, via_gutter = self._place(key)
        return self._send(node, via_gutter, lambda client: call(client, via_gutter))

    def _groups(self, keys: Iterable[str]) -> dict[tuple[str, bool], list[str]]:
        """Keys grouped by where they go now: one round trip per node."""
        groups: dict[tuple[str, bool], list[str]] = {}
        for key in keys:
            groups.setdefault(self._place(key), []).append(key)
        return groups

    def _exptime(self, ttl: float, via_gutter: bool) -> int:
        """memcached's exptime, capped at gutter_ttl for a write that failed over."""
        if via_gutter:
            ttl = min(ttl, self._gutter_ttl) if ttl > 0 else self._gutter_ttl
        return memcached.exptime(ttl)

    def _looked_up(self, via_gutter: bool, hits: int, misses: int) -> None:
        pool = "gutter" if via_gutter else "main"
        self.counts[f"{pool}_hits"] += hits
        self.counts[f"{pool}_misses"] += misses

    # -- the Target interface

    def get(self, key: str) -> bytes | None:
        def call(client: Client, via_gutter: bool) -> bytes | None:
            value = client.get(key)
            self._looked_up(via_gutter, value is not None, value is None)
            return value
        return self._one(key, call)

    def get_multi(self, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for (node, via_gutter), node_keys in self._groups(keys).items():
            got = self._send(node, via_gutter, lambda client: client.get_many(node_keys))
            self._looked_up(via_gutter, len(got), len(node_keys) - len(got))
            found.update(got)
        return found

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self._one(key, lambda c, g: c.set(key, value, self._exptime(ttl, g), noreply=False))

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        return self._one(key, lambda c, g: c.add(key, value, self._exptime(ttl, g),
                                                 noreply=False))

    def replace(self, key: str, value: bytes, ttl: float) -> bool:
        return self._one(key, lambda c, g: c.replace(key, value, self._exptime(ttl, g),
                                                     noreply=False))

    def delete(self, key: str) -> bool:
        return self._one(key, lambda c, g: c.delete(key, noreply=False))

    def incr(self, key: str, delta: int) -> int | None:
        return self._one(key, lambda c, g: c.incr(key, delta, noreply=False))

    def decr(self, key: str, delta: int) -> int | None:
        return self._one(key, lambda c, g: c.decr(key, delta, noreply=False))

    def touch(self, key: str, ttl: float) -> bool:
        return self._one(key, lambda c, g: c.touch(key, self._exptime(ttl, g), noreply=False))

    def set_many(self, items: dict[str, bytes], ttl: float) -> None:
        for (node, via_gutter), node_keys in self._groups(items).items():
            expire = self._exptime(ttl, via_gutter)
            batch = {key: items[key] for key in node_keys}
            self._send(node, via_gutter,
                       lambda client: client.set_many(batch, expire, noreply=False))

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
