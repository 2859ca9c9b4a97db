"""`bench capacity plan`: the fleet a forecast peak needs, and which resource decides it.

Inputs: the rate one node sustains within the SLO (a `bench capacity search`
directory, a run directory of a measured max-rate run, or a number), the scenario
(what the requests are: the memory model's hit ratios and the bytes per op), and
the forecast: `peak` ops/s today growing by `growth` a year for `horizon` years.

    planned rate  = peak x (1 + growth) ^ horizon
    throughput    = nodes whose hottest node (the ring's skew) stays within
                    (1 - headroom) of the measured per-node rate
    network       = nodes whose hottest node's RX and TX stay within (1 - headroom)
                    of the NIC
    memory        = nodes of `node_memory` each whose simulated pool reaches the target
                    hit ratio (or: as many as a memory budget pays for)
    nodes         = the largest of the three, plus `spare` (N+k: the pool still meets
                    all three with k nodes down)

Connections per node: every client holds a connection to every node (client-side
hashing), so a node sees as many as the clients needed for the planned rate, at the
rate per connection the measured run had. A gutter pool (mcrouter's failover pool)
is sized to carry the requests of `spare` failed nodes within the same headroom.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis.runs import read_summary
from bench.analysis.validity import is_invalid
from bench.capacity.memory import MemoryReport, memory_report, request_shares, simulate
from bench.capacity.network import WireCost, wire_cost
from bench.capacity.stream import SampledStream, on_nodes
from bench.errors import InputError
from bench.results.rundir import RUN_JSON, SUMMARY_JSON, read_run_info
from bench.scenario.model import Scenario

SEARCH_JSON = "search.json"
#: Node counts a plan tries beyond its first estimate before it calls the inputs unsound.
MAX_EXTRA_NODES = 64


@dataclass(frozen=True)
class Measured:
    """The per-node rate the plan builds on, and where it comes from."""

    node_rate: float
    source: str
    rate_per_connection: float | None = None
    search: dict[str, Any] | None = None   # search.json, for the latency plot


def measured_from_dir(path: str | Path) -> Measured:
    """A search directory (search.json) or a run directory (summary.json of a run that
    met its SLO and was valid): the rate one node sustains."""
    path = Path(path)
    if (path / SEARCH_JSON).is_file():
        return _from_search(path)
    if (path / SUMMARY_JSON).is_file():
        return _from_run(path)
    raise InputError(f"expected a search directory ({SEARCH_JSON}) or a run directory "
                     f"({SUMMARY_JSON})", file=str(path), field="--measured")


def _from_search(path: Path) -> Measured:
    data = _json(path / SEARCH_JSON)
    if data.get("generator_limited") or not data.get("max_rate"):
        raise InputError("the search found no max rate of the cache"
                         + (" (the load generator was the limit)" if data.get("generator_limited")
                            else ""), file=str(path / SEARCH_JSON), field="max_rate")
    confirmed = [p for p in data.get("probes", []) if p.get("phase") == "confirm"]
    users = _users(Path(confirmed[-1]["run_dir"])) if confirmed else None
    return Measured(node_rate=float(data["max_rate_per_node"]),
                    source=f"search {path} ({'confirmed' if data.get('confirmed') else 'unconfirmed'})",
                    rate_per_connection=data["max_rate"] / users if users else None, search=data)


def _from_run(path: Path) -> Measured:
    summary, info = read_summary(path), read_run_info(path)
    if summary.slo is None or summary.slo.passed is not True:
        raise InputError("the run did not meet its SLO: it measured no sustainable rate",
                         file=str(path / SUMMARY_JSON), field="slo.passed")
    if is_invalid(summary.validity):
        raise InputError("the run is invalid (the load generator fell behind)",
                         file=str(path / SUMMARY_JSON), field="validity")
    rate = (info.load or {}).get("rate")
    if not rate:
        raise InputError("expected an open-loop run (load.rate)", file=str(path / RUN_JSON),
                         field="load.rate")
    nodes = len((info.target.nodes if info.target else None) or [1])
    users = _users(path)
    return Measured(node_rate=rate / nodes, source=f"run {path}",
                    rate_per_connection=rate / users if users else None)


def _users(run_dir: Path) -> int | None:
    """Locust users of a run: each held one connection to every node."""
    try:
        return int((read_run_info(run_dir).load or {}).get("users") or 0) or None
    except InputError:
        return None


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read: {err}", file=str(path)) from None


@dataclass(frozen=True)
class Forecast:
    peak: float                 # ops/s today, the whole pool
    growth: float = 0.0         # per year
    horizon_years: float = 1.0

    @property
    def planned_rate(self) -> float:
        return self.peak * (1.0 + self.growth) ** self.horizon_years


@dataclass(frozen=True)
class Limits:
    """What one node has, and how much of it the plan may use."""

    node_memory: int
    nic_bytes_per_s: float | None = None
    headroom: float = 0.2
    spare: int = 1
    target_hit_ratio: float | None = 0.95
    memory_budget: int | None = None
    gutter: bool = False


@dataclass
class Plan:
    """The answer (capacity.md / capacity.html lead with it) and what it rests on."""

    scenario: str
    planned_rate: float
    nodes: int                  # with the spares
    spare: int
    binding: str
    counts: dict[str, int]      # nodes each resource needs (before the spares)
    node_rate: float
    hottest_share: float        # of the requests, on the hottest node of the final pool
    memory_per_node: int | None  # -m that meets the target on the pool without spares
    node_memory: int
    hit_ratio: float | None     # simulated, spares down (the worst case planned for)
    rx_per_node: float
    tx_per_node: float
    connections_per_node: int | None
    gutter_nodes: int | None
    assumptions: list[str] = field(default_factory=list)
    memory: MemoryReport | None = None
    search: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory"] = self.memory.to_json() if self.memory else None
        return data


def _smallest(start: int, enough: Any, what: str) -> int:
    """The smallest node count from `start` up for which `enough(n)` holds."""
    n = max(1, start)
    while not enough(n):
        n += 1
        if n > max(1, start) * 2 + MAX_EXTRA_NODES:
            raise InputError(f"no node count up to {n - 1} meets the {what}: check the inputs")
    return n


def _hottest_key(stream: SampledStream) -> float:
    """The largest share of the requests one key takes (no node count spreads it)."""
    shares = np.concatenate((stream.hot.accesses, stream.keys.accesses))
    return float(shares.max(initial=0.0)) / max(1e-12, float(
        stream.hot.accesses.sum() + stream.keys.accesses.sum() / stream.sample_rate))


def _check_hot_key(stream: SampledStream, planned: float, usable_rate: float) -> None:
    """A key hotter than a node can serve makes every node count fall short: say so."""
    share = _hottest_key(stream)
    if planned * share > usable_rate:
        raise InputError(
            f"no node count serves {planned:,.0f} ops/s: the hottest key alone gets "
            f"{share:.2%} of the requests ({planned * share:,.0f} ops/s), more than the "
            f"{usable_rate:,.0f} ops/s a node sustains within the headroom. Spread the hot "
            f"keys (replicate them, or cache them in the clients) or plan on faster nodes",
            field="--peak")


def make_plan(scenario: Scenario, stream: SampledStream, measured: Measured,
              forecast: Forecast, limits: Limits, node_names: Any) -> Plan:
    """Size the fleet (see the module docstring). `node_names(n)` names a pool of n."""
    planned = forecast.planned_rate
    usable_rate = measured.node_rate * (1.0 - limits.headroom)
    shares: dict[int, float] = {}

    def pool(n: int) -> SampledStream:
        return on_nodes(stream, node_names(n))

    def hottest(n: int) -> float:
        if n not in shares:
            shares[n] = float(request_shares(stream, node_names(n)).max())
        return shares[n]

    _check_hot_key(stream, planned, usable_rate)
    counts = {"throughput": _smallest(math.ceil(planned / usable_rate),
                                      lambda n: planned * hottest(n) <= usable_rate,
                                      "node rate")}
    counts["memory"], hit_ratio_guess = _memory_count(pool, limits)
    wire = wire_cost(scenario, hit_ratio_guess)
    if limits.nic_bytes_per_s:
        usable_nic = limits.nic_bytes_per_s * (1.0 - limits.headroom)
        busiest = max(wire.rx, wire.tx)
        counts["network"] = _smallest(math.ceil(planned * busiest / usable_nic),
                                      lambda n: planned * hottest(n) * busiest <= usable_nic,
                                      "NIC")
    binding = max(counts, key=counts.__getitem__)
    n = counts[binding]
    final = memory_report(pool(n), scenario.name, limits.target_hit_ratio,
                          memories=None if limits.target_hit_ratio else [limits.node_memory])
    at_node_memory = simulate(pool(n), limits.node_memory)
    share = hottest(n)
    plan = Plan(
        scenario=scenario.name, planned_rate=planned, nodes=n + limits.spare, spare=limits.spare,
        binding=binding, counts=counts, node_rate=measured.node_rate, hottest_share=share,
        memory_per_node=final.target.memory_per_node if final.target else None,
        node_memory=limits.node_memory, hit_ratio=at_node_memory.hit_ratio,
        rx_per_node=planned * share * wire.rx, tx_per_node=planned * share * wire.tx,
        connections_per_node=math.ceil(planned / measured.rate_per_connection)
        if measured.rate_per_connection else None,
        gutter_nodes=max(1, math.ceil(max(1, limits.spare) * planned * share / usable_rate))
        if limits.gutter else None,
        memory=final, search=measured.search)
    plan.assumptions = _assumptions(plan, measured, forecast, limits, stream, wire)
    return plan


def _memory_count(pool: Any, limits: Limits) -> tuple[int, float]:
    """Nodes of node_memory the memory needs, and the hit ratio they give."""
    if limits.memory_budget is not None:
        n = max(1, limits.memory_budget // limits.node_memory)
        return n, simulate(pool(n), limits.node_memory).hit_ratio
    target = limits.target_hit_ratio
    if target is None:
        raise InputError("expected --target-hit-ratio or --memory-budget",
                         field="--target-hit-ratio")
    single = memory_report(pool(1), "", target)
    if single.target is None:
        best = max(p.hit_ratio for p in single.curve)
        per_key = pool(1).ops / max(1, pool(1).total_keys)
        raise InputError(f"a hit ratio of {target:.4g} is out of reach of this scenario: "
                         f"{best:.4g} with every key it touches cached (first requests, "
                         f"deletes and expiry miss at any size"
                         + (f"; {per_key:.1f} ops per key may not reach the steady state: "
                            "raise --ops" if per_key < 10 else "") + ")",
                         field="--target-hit-ratio")
    start = math.ceil(single.target.memory_per_node / limits.node_memory)
    ratios: dict[int, float] = {}

    def enough(n: int) -> bool:
        ratios[n] = simulate(pool(n), limits.node_memory).hit_ratio
        return ratios[n] >= target

    n = _smallest(start, enough, "target hit ratio")
    return n, ratios[n]


def _assumptions(plan: Plan, measured: Measured, forecast: Forecast, limits: Limits,
                 stream: SampledStream, wire: WireCost) -> list[str]:
    """Everything the numbers rest on, in words."""
    out = [
        f"node rate {measured.node_rate:,.0f} ops/s within the SLO, from {measured.source}",
        f"peak {forecast.peak:,.0f} ops/s growing {forecast.growth:.0%} a year for "
        f"{forecast.horizon_years:g} year(s): {plan.planned_rate:,.0f} ops/s",
        f"headroom {limits.headroom:.0%} on throughput and network; N+{limits.spare}: the "
        f"counts hold with {limits.spare} node(s) down",
        f"keys spread by the ketama ring: the hottest of {plan.nodes - plan.spare} nodes takes "
        f"{plan.hottest_share:.1%} of the requests",
        f"bytes per op {wire.rx:,.0f} in / {wire.tx:,.0f} out (memcached text protocol, "
        "TCP/IP headers, hit ratio as simulated)",
        f"memory: the scenario's key space and sizes through memcached's memory model "
        f"({stream.slabs.describe()}), {stream.ops:,} ops"
        + (f", SHARDS rate {stream.sample_rate:.3g}" if stream.sample_rate < 1 else ""),
    ]
    if limits.memory_budget is not None:
        out.append(f"memory budget {limits.memory_budget / 2**30:,.1f} GiB in nodes of "
                   f"{limits.node_memory / 2**30:,.1f} GiB")
    if not limits.nic_bytes_per_s:
        out.append("no --nic given: network not counted")
    if plan.connections_per_node is None:
        out.append("connections unknown (the measured run's users are not recorded)")
    if plan.gutter_nodes:
        out.append(f"gutter pool carries the requests of {max(1, limits.spare)} failed node(s)")
    return out
