"""mcrouter-style routing (bench.targets.routing) against real memcached servers: TKO
after consecutive timeouts, failover to a gutter pool with a TTL cap, probes that bring
a node back, and counts that agree with every server's own counters.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import cluster
from bench.targets import error_kind, open_target, parse_target, server_stats
from bench.targets.routing import HEALTH, NodeDown, RoutedPool
from bench.vocabulary import ERROR_CONNECTION, ERROR_TIMEOUT

TKO = 3


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[cluster.ServerGroup]:
    group = cluster.start_memcached_pool(3, tmp_path)
    yield group
    group.stop()


@pytest.fixture
def gutter(tmp_path: Path) -> Iterator[cluster.ServerGroup]:
    servers = [cluster.start_memcached(0, tmp_path, name=f"gutter-{i}") for i in (1, 2)]
    group = cluster.ServerGroup(url="", nodes=[s.address for s in servers], servers=servers)
    yield group
    group.stop()


def _url(pool: cluster.ServerGroup, extra: str = "") -> str:
    return f"{pool.url}?timeout=100ms&tko={TKO}&probe=1s{extra}"


def _keys_of(target: RoutedPool, node: str, count: int, template: str = "route:{}") -> list[str]:
    """`count` keys (`template` filled with 0, 1, ...) that the main ring puts on `node`."""
    keys = (template.format(i) for i in range(10_000))
    return [key for key in keys if target._ring.node_for(key) == node][:count]


def _counter(stats: dict, node: str, name: str) -> int:
    return stats[node].get(name, 0)


def _deltas(before: dict, after: dict, name: str) -> dict[str, int]:
    return {node: _counter(after, node, name) - _counter(before, node, name) for node in after}


def _cache_aside(target: RoutedPool, keys: list[str]) -> list[str | None]:
    """get each key, set it after a miss; the error kind of each get (None if it worked)."""
    kinds: list[str | None] = []
    for key in keys:
        try:
            if target.get(key) is None:
                target.set(key, b"regenerated", 3600)
            kinds.append(None)
        except Exception as exc:  # noqa: BLE001 - the kind is what is checked
            kinds.append(error_kind(exc))
    return kinds


def test_stall_fails_over_to_the_gutter_after_tko(pool: cluster.ServerGroup,
                                                  gutter: cluster.ServerGroup) -> None:
    info = parse_target(_url(pool, f"&gutter={','.join(gutter.nodes)}&gutter_ttl=30s"))
    stalled = pool.servers[0]
    with open_target(info) as target:
        assert isinstance(target, RoutedPool)
        keys = _keys_of(target, stalled.address, 40)
        target.set_many({key: b"v" for key in keys}, 3600)
        before = server_stats(info)
        stalled.pause()
        try:
            first = _cache_aside(target, keys)      # misses in the gutter, then sets there
            second = _cache_aside(target, keys)     # gutter hits
        finally:
            stalled.resume()
        after = server_stats(info)
        counts = target.counts
    # TKO after exactly TKO timeouts in a row; no error after it.
    assert first[:TKO] == [ERROR_TIMEOUT] * TKO
    assert first[TKO:] == [None] * (len(keys) - TKO) and second == [None] * len(keys)
    assert HEALTH[stalled.address].tko_count == 1
    # Every gutter lookup is counted apart and agrees with the gutter servers' counters.
    hits, misses = _deltas(before, after, "get_hits"), _deltas(before, after, "get_misses")
    # First pass: a miss for each key after TKO; second: those hit, the TKO keys miss.
    assert counts["gutter_hits"] == sum(hits[node] for node in gutter.nodes) == len(keys) - TKO
    assert counts["gutter_misses"] == sum(misses[node] for node in gutter.nodes) == len(keys)
    # The stalled node may answer the timed-out gets once it runs again: the server counts
    # them (racing the client's closing of the socket), the client counted timeouts.
    assert counts["main_hits"] == 0 and sum(hits[node] for node in pool.nodes) <= TKO
    # Failed-over writes carry the gutter TTL cap (30 s), not the 3600 s asked for.
    ttls = [_meta_ttl(node, keys[-1]) for node in gutter.nodes]
    assert [ttl for ttl in ttls if ttl is not None] and all(0 < ttl <= 30 for ttl in ttls if ttl)


def _meta_ttl(node: str, key: str) -> int | None:
    """The TTL `node` reports for `key` (meta get `t`), None when it does not hold it."""
    host, port = node.split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(f"mg {key} t\r\n".encode())
        reply = sock.recv(256).decode()
    return int(reply.split()[1][1:]) if reply.startswith("HD") else None


def test_without_a_gutter_the_keys_of_a_tkod_node_are_errors(pool: cluster.ServerGroup) -> None:
    info = parse_target(_url(pool))
    stalled = pool.servers[1]
    with open_target(info) as target:
        keys = _keys_of(target, stalled.address, 20)
        stalled.pause()
        try:
            kinds = _cache_aside(target, keys)
            started = time.monotonic()
            with pytest.raises(NodeDown):
                target.get(keys[0])
            fast = time.monotonic() - started
        finally:
            stalled.resume()
    assert kinds[:TKO] == [ERROR_TIMEOUT] * TKO
    assert kinds[TKO:] == [ERROR_CONNECTION] * (len(keys) - TKO)
    assert fast < 0.05   # not sent: a TKO'd node costs no timeout


def test_probe_brings_the_node_back(pool: cluster.ServerGroup,
                                    gutter: cluster.ServerGroup) -> None:
    info = parse_target(_url(pool, f"&gutter={gutter.nodes[0]}"))
    stalled = pool.servers[2]
    with open_target(info) as target:
        keys = _keys_of(target, stalled.address, TKO + 2)
        stalled.pause()
        _cache_aside(target, keys)
        stalled.resume()
        assert HEALTH[stalled.address].down
        time.sleep(1.1)                      # the probe interval
        served_before = target.counts["main_requests"]
        assert _cache_aside(target, keys) == [None] * len(keys)
        assert not HEALTH[stalled.address].down
        assert target.counts["main_requests"] - served_before >= len(keys)


def test_hash_stop_keys_fail_over_together(pool: cluster.ServerGroup,
                                           gutter: cluster.ServerGroup) -> None:
    info = parse_target(_url(pool, f"&gutter={','.join(gutter.nodes)}"))
    stalled = pool.servers[0]
    with open_target(info) as target:
        bases = _keys_of(target, stalled.address, 20, "WANCache:{}")
        stalled.pause()
        try:
            _cache_aside(target, bases[:TKO])                  # TKO
            for base in bases:
                for sister in ("v", "t"):
                    target.set(f"{base}|#|{sister}", b"x", 60)
        finally:
            stalled.resume()
    holders = {base: {node for node in gutter.nodes for sister in ("v", "t")
                      if _meta_ttl(node, f"{base}|#|{sister}") is not None}
               for base in bases}
    assert all(len(nodes) == 1 for nodes in holders.values()), holders
    assert len({node for nodes in holders.values() for node in nodes}) == 2  # both used


def test_wmf_preset() -> None:
    info = parse_target("memcached://127.0.0.1:1,127.0.0.1:2?preset=wmf&gutter=127.0.0.1:3")
    assert info.options == {"preset": "wmf", "timeout": 0.25, "tko": 10, "probe": 60.0,
                            "gutter_ttl": 60.0, "gutter": ["127.0.0.1:3"]}
    explicit = parse_target("memcached://127.0.0.1:1?preset=wmf&tko=4")
    assert explicit.options["tko"] == 4 and explicit.options["timeout"] == 0.25
