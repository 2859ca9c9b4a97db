"""Bytes on the wire per op: what a node receives and sends for the scenario's op mix.

From a sample of the scenario's own op stream (keys and value sizes as the requests
carry them), each protocol call costed in memcached's text protocol, the way the
harness's client sends it (`get <key>\\r\\n`, `VALUE <key> 0 <bytes>\\r\\n<data>\\r\\nEND\\r\\n`,
`set <key> 0 <exptime> <bytes>\\r\\n<data>\\r\\n` ...), plus TCP/IPv4/Ethernet headers per
packet of at most one MSS. Lookups hit with the planned hit ratio; a miss with
`on_miss: set` costs the set that follows it. RX and TX are the node's: RX is what
clients send it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from bench.scenario.model import Scenario
from bench.workload.ops import Op, Workload

#: Ethernet (14 + 4 FCS), IPv4 (20) and TCP with timestamps (32) per packet.
PACKET_OVERHEAD = 70
#: TCP payload per packet on a 1500-byte MTU with timestamps.
MSS = 1448
SAMPLE_OPS = 20_000
_END = len(b"END\r\n")
_STORED = len(b"STORED\r\n")


def on_wire(payload: int) -> int:
    """A message of `payload` bytes with the headers of the packets that carry it."""
    return payload + PACKET_OVERHEAD * max(1, math.ceil(payload / MSS))


def _value_line(key: str, size: int) -> int:
    """`VALUE <key> 0 <bytes>\\r\\n<data>\\r\\n` of one found key."""
    return len(f"VALUE {key} 0 {size}\r\n") + size + 2


def _store(key: str, size: int, ttl: float) -> tuple[int, int]:
    """(request, reply) of a set/add/replace."""
    return on_wire(len(f"set {key} 0 {math.ceil(ttl)} {size}\r\n") + size + 2), on_wire(_STORED)


def _lookup(keys: tuple[str, ...], sizes: tuple[int, ...], hit: float,
            fills: bool, ttl: float) -> tuple[float, float]:
    """(RX, TX) of a get/get_multi with hit probability `hit`, sets after misses."""
    rx = float(on_wire(len("get") + sum(len(k) + 1 for k in keys) + 2))
    tx = float(on_wire(_END + sum(hit * _value_line(k, s) for k, s in zip(keys, sizes))))
    if fills:
        for key, size in zip(keys, sizes):
            request, reply = _store(key, size, ttl)
            rx, tx = rx + (1 - hit) * request, tx + (1 - hit) * reply
    return rx, tx


def op_bytes(op: Op, hit: float, fills: bool) -> tuple[float, float]:
    """Expected (RX, TX) bytes of one op at the node(s) it reaches."""
    key = op.keys[0]
    if op.action in ("get", "hget"):
        return _lookup((key,), (op.value_size,), hit, fills, op.ttl)
    if op.action in ("get_multi", "wan_get"):
        sizes = op.sizes or (op.value_size,) + (0,) * (len(op.keys) - 1)
        return _lookup(op.keys, sizes, hit, fills or op.action == "wan_get", op.ttl)
    if op.action in ("set", "add", "replace", "hset", "wan_delete"):
        return _store(key, op.value_size, op.ttl)
    if op.action == "redlock":   # add and delete on every instance
        request, reply = _store(key, 8, op.ttl)
        return (len(op.keys) * (request + on_wire(len(f"delete {key}\r\n"))),
                len(op.keys) * (reply + on_wire(len(b"DELETED\r\n"))))
    command = {"delete": f"delete {key}\r\n", "touch": f"touch {key} {math.ceil(op.ttl)}\r\n",
               "incr": f"incr {key} 1\r\n", "decr": f"decr {key} 1\r\n",
               "ratelimit": f"incr {key} 1\r\n"}[op.action]
    return on_wire(len(command)), on_wire(len(b"NOT_FOUND\r\n"))


@dataclass(frozen=True)
class WireCost:
    """Mean bytes per op a node receives (rx) and sends (tx)."""

    rx: float
    tx: float


def wire_cost(scenario: Scenario, hit_ratio: float, ops: int = SAMPLE_OPS) -> WireCost:
    """Mean RX and TX bytes per op of the scenario at `hit_ratio` (see the module)."""
    fills = {(i, name): entry.on_miss == "set" for i, ks in enumerate(scenario.keyspaces)
             for name, entry in ks.mix.items()}
    drawn = list(itertools.islice(Workload(scenario).stream(0, 1), ops))
    costs = [op_bytes(op, hit_ratio, fills.get((op.space, op.kind), False)) for op in drawn]
    count = max(1, len(costs))
    return WireCost(rx=sum(c[0] for c in costs) / count, tx=sum(c[1] for c in costs) / count)
