"""`bench capacity memory`: hit ratio against memory per node, without a server.

The scenario's op stream (bench.capacity.stream: sampled, split over the pool's nodes
by its consistent hashing) goes through a model of each node (bench.capacity.cachesim:
memcached's slab classes and segmented LRU) at several memory sizes. What comes out:

- the hit-ratio curve against memory per node for the node count, the pool's hit
  ratio over the ops after the warm-up, with its sampling error (one standard
  deviation of the ratio estimator over the sampled keys: sum over sampled keys of
  (hits - r * lookups)^2, times (1 - R) / R^2, over the lookups squared), and Che's
  approximation beside it where the workload is IRM;
- the memory per node a target hit ratio needs: interpolated on the curve (log
  memory), then simulated once more at that size to show what it really gives;
- per slab class, at that size: pages, items, and the waste (memory a class holds
  beyond its items' bytes: chunk rounding, page ends, free chunks);
- the working set: the keys touched after the warm-up and the memory they need;
- per node: share of requests and of the working set (the skew of the ring).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bench.capacity.cachesim import MemcachedNode, NodeResult
from bench.capacity.che import CheModel
from bench.capacity.slabs import SlabClasses
from bench.capacity.stream import (DEFAULT_BUDGET, SampledStream, StreamSettings, measured_keys,
                                   placement, sample_stream)
from bench.errors import InputError
from bench.scenario.model import Scenario

#: Hit ratios the default curve is laid out for (through Che, or the working set).
CURVE_HIT_RATIOS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
#: Fractions of the working set's memory for the curve when Che does not apply.
CURVE_FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
#: A hot key whose chance to be evicted between its requests exceeds this is flagged.
RESIDENCY_FLOOR = 0.99


@dataclass
class NodeShare:
    """One node of the pool at one memory size."""

    node: str
    hit_ratio: float | None
    request_share: float
    working_set_share: float
    evictions: float
    eviction_age_s: float | None


@dataclass
class ClassUsage:
    """One slab class of the pool (all nodes) at one memory size."""

    chunk_size: int
    pages: int
    memory_bytes: int
    items: float
    item_bytes: float
    waste_bytes: float
    waste_share: float


@dataclass
class MemoryPoint:
    """The pool with `memory_per_node` of -m on every node."""

    memory_per_node: int
    hit_ratio: float
    error: float
    che: float | None
    nodes: list[NodeShare]
    classes: list[ClassUsage]
    hot_residency_min: float | None


@dataclass
class WorkingSet:
    """The keys the measured ops touched and what holding them all takes."""

    keys: float
    item_bytes: float
    memory: float
    memory_per_node_max: float


@dataclass
class MemoryReport:
    """What `bench capacity memory` answers (written as memory.json)."""

    scenario: str
    nodes: list[str]
    slabs: str
    op_rate: float
    ops: int
    warmup_ops: int
    sample_rate: float
    expected_error: float
    curve: list[MemoryPoint]
    target_hit_ratio: float | None
    target: MemoryPoint | None
    che_memory_for_target: float | None
    working_set: WorkingSet
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    """JSON-safe: numpy numbers as Python ones, NaN as None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------ one size


def simulate(stream: SampledStream, memory_per_node: int) -> MemoryPoint:
    """Every node of the pool with `memory_per_node` bytes of -m, through the stream."""
    rate, slabs = stream.sample_rate, stream.slabs
    measured_ops = stream.ops - stream.warmup_ops
    hits = lookups = 0.0
    residual: list[np.ndarray] = []
    shares, results = [], []
    residency_min: float | None = None
    for n, events in enumerate(stream.events):
        node = MemcachedNode(slabs, memory_per_node, rate, stream.pinned_chunks(n))
        result = node.run(events.times, events.keys, events.codes, events.classes,
                          events.units, events.nbytes, events.ttls)
        results.append(result)
        key_hits, key_lookups = _per_key(result, events)
        hot_l, hot_h, residency = _hot_lookups(stream, n, result, measured_ops)
        if residency is not None:
            residency_min = residency if residency_min is None else min(residency_min, residency)
        node_lookups = key_lookups.sum() / rate + hot_l
        node_hits = key_hits.sum() / rate + hot_h
        hits, lookups = hits + node_hits, lookups + node_lookups
        residual.append(np.stack((key_hits, key_lookups)))
        shares.append((node_hits, node_lookups, result))
    ratio = hits / lookups if lookups else math.nan
    error = _sampling_error(residual, ratio, rate, lookups)
    che = che_hit_ratio(stream, memory_per_node)
    nodes = _node_shares(stream, shares)
    return MemoryPoint(memory_per_node=int(memory_per_node), hit_ratio=ratio, error=error,
                       che=che, nodes=nodes, classes=_class_usage(stream, results),
                       hot_residency_min=residency_min)


def _per_key(result: NodeResult, events: Any) -> tuple[np.ndarray, np.ndarray]:
    """Hits and lookups of each key looked up on the node after the warm-up."""
    outcomes = result.outcomes[events.measured_from:]
    lookup = outcomes >= 0
    _, key = np.unique(events.keys[events.measured_from:][lookup], return_inverse=True)
    return (np.bincount(key, weights=outcomes[lookup]).astype(np.float64),
            np.bincount(key).astype(np.float64))


def _hot_lookups(stream: SampledStream, node: int, result: NodeResult, measured_ops: int
                 ) -> tuple[float, float, float | None]:
    """Expected lookups and hits of the node's hot keys over the measured ops, and the
    lowest chance that one stays resident between two of its requests: an LRU keeps
    a key requested within its eviction age (the node's, since automove evens out the
    classes' ages), and memcached's segmented LRU protects a twice-hit key longer."""
    mine = stream.hot.node == node
    if not mine.any():
        return 0.0, 0.0, None
    lookups = stream.hot.lookups[mine] * measured_ops
    age = result.node_eviction_age_s
    rate_per_s = stream.hot.accesses[mine] * stream.op_rate
    residency = np.ones(len(lookups)) if np.isnan(age) else -np.expm1(-rate_per_s * age)
    hits = lookups * stream.hot_present[mine] * residency
    return float(lookups.sum()), float(hits.sum()), float(residency.min())


def _sampling_error(residual: list[np.ndarray], ratio: float, rate: float,
                    lookups: float) -> float:
    """One standard deviation of the pool's hit ratio from which keys were sampled
    (the linearised variance of a ratio estimator under Bernoulli sampling)."""
    if rate >= 1 or not lookups:
        return 0.0
    both = np.concatenate(residual, axis=1)
    spread = float(np.sum((both[0] - ratio * both[1]) ** 2))
    return math.sqrt((1.0 - rate) / rate**2 * spread) / lookups


def request_shares(stream: SampledStream, nodes: tuple[str, ...] | None = None) -> np.ndarray:
    """Each node's share of the requests (every op that reaches it) after the warm-up,
    on the stream's pool or, placing the keys anew, on `nodes`: the ring's skew, which
    the hottest node's load is made of."""
    count = len(stream.nodes if nodes is None else nodes)
    key_node = stream.keys.node if nodes is None else placement(stream.keys.names, nodes)
    hot_node = stream.hot.node if nodes is None else placement(stream.hot.names, nodes)
    counts = np.bincount(key_node[measured_keys(stream)], minlength=count) / stream.sample_rate
    np.add.at(counts, hot_node, stream.hot.accesses * (stream.ops - stream.warmup_ops))
    return counts / counts.sum() if counts.sum() else counts


def _node_shares(stream: SampledStream, shares: list[tuple[float, float, NodeResult]]
                 ) -> list[NodeShare]:
    working = working_set_by_node(stream)
    total = working.sum()
    requests = request_shares(stream)
    out = []
    for n, (node_hits, node_lookups, result) in enumerate(shares):
        evicted = result.evictions.sum()
        ages = result.eviction_age_s[result.evictions > 0]
        out.append(NodeShare(
            node=stream.nodes[n], hit_ratio=node_hits / node_lookups if node_lookups else None,
            request_share=float(requests[n]),
            working_set_share=float(working[n] / total) if total else 0.0,
            evictions=float(evicted / stream.sample_rate),
            eviction_age_s=float(np.average(ages, weights=result.evictions[result.evictions > 0]))
            if len(ages) else None))
    return out


def _class_usage(stream: SampledStream, results: list[NodeResult]) -> list[ClassUsage]:
    """Slab classes summed over the nodes, hot keys included, in real (unsampled) units."""
    slabs, rate = stream.slabs, stream.sample_rate
    hot = stream.hot
    hot_chunks = np.bincount(hot.classes, weights=hot.units, minlength=len(slabs.sizes))
    pages = sum(r.pages for r in results) + np.ceil(hot_chunks / slabs.per_page).astype(int)
    items = sum(r.items for r in results) / rate + hot_chunks
    item_bytes = sum(r.item_bytes for r in results) / rate
    item_bytes = item_bytes + np.bincount(hot.classes, weights=hot.nbytes,
                                          minlength=len(slabs.sizes))
    held = pages * slabs.page_size
    return [ClassUsage(chunk_size=int(slabs.sizes[c]), pages=int(pages[c]),
                       memory_bytes=int(held[c]), items=float(items[c]),
                       item_bytes=float(item_bytes[c]),
                       waste_bytes=float(held[c] - item_bytes[c]),
                       waste_share=float((held[c] - item_bytes[c]) / held[c]))
            for c in range(len(slabs.sizes)) if pages[c]]


# ------------------------------------------------------------------------------ Che, working set


def _chunk_cost(stream: SampledStream, classes: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Memory an item takes: its chunks, each with its share of the page's unused end."""
    slabs = stream.slabs
    safe = np.maximum(classes, 0)
    return np.where(classes < 0, 0.0, units * slabs.page_size / slabs.per_page[safe])


def che_model(stream: SampledStream, node: int | None = None) -> CheModel | None:
    """Che's model of one node (or of the whole pool as one cache); None unless IRM."""
    keys = stream.che_keys
    if keys is None or stream.che_weights is None:
        return None
    pick = np.ones(len(keys), bool) if node is None else keys.node == node
    return CheModel(
        accesses=keys.accesses[pick], lookups=keys.lookups[pick],
        cost=_chunk_cost(stream, keys.classes[pick], keys.units[pick]),
        weights=stream.che_weights[pick],
        window=None if stream.prefilled else (float(stream.warmup_ops), float(stream.ops)))


def che_hit_ratio(stream: SampledStream, memory_per_node: float) -> float | None:
    """The pool's hit ratio by Che's approximation, node by node, with the memory a
    node really holds (each class in use has at least a page, whatever -m says)."""
    models = [che_model(stream, n) for n in range(len(stream.nodes))]
    if not models or models[0] is None:
        return None
    held = max(memory_per_node, stream.slabs.page_size * classes_in_use(stream))
    hits = sum(m.hit_ratio(held) * m.total_lookups for m in models if m.total_lookups)
    lookups = sum(m.total_lookups for m in models)
    return hits / lookups if lookups else None


def classes_in_use(stream: SampledStream) -> int:
    """Slab classes the scenario's items fall in."""
    return len(np.unique(stream.keys.classes[stream.keys.classes >= 0]))


def working_set_by_node(stream: SampledStream) -> np.ndarray:
    """Memory the keys touched after the warm-up take, per node."""
    memory = np.zeros(len(stream.nodes))
    keys = stream.keys
    for n, events in enumerate(stream.events):
        touched = np.unique(events.keys[events.measured_from:])
        memory[n] = _chunk_cost(stream, keys.classes[touched], keys.units[touched]).sum() \
            / stream.sample_rate
    hot = stream.hot
    np.add.at(memory, hot.node, _chunk_cost(stream, hot.classes, hot.units))
    return memory


def working_set(stream: SampledStream) -> WorkingSet:
    keys, hot = stream.keys, stream.hot
    touched = np.unique(np.concatenate([e.keys[e.measured_from:] for e in stream.events]))
    by_node = working_set_by_node(stream)
    return WorkingSet(
        keys=len(touched) / stream.sample_rate + len(hot),
        item_bytes=float(keys.nbytes[touched].sum() / stream.sample_rate + hot.nbytes.sum()),
        memory=float(by_node.sum()), memory_per_node_max=float(by_node.max(initial=0.0)))


# ------------------------------------------------------------------------------ the curve


def curve_memories(stream: SampledStream, target: float | None) -> list[int]:
    """Memory sizes per node for the curve: where Che puts CURVE_HIT_RATIOS (and the
    target), else fractions of the working set; never below a page per class in use."""
    per_node = working_set(stream).memory_per_node_max
    pool = che_model(stream)
    wanted = sorted(set(CURVE_HIT_RATIOS) | ({target} if target else set()))
    memories = []
    if pool is not None:
        for ratio in wanted:
            memory = pool.memory_for(ratio)
            if memory is not None:
                memories.append(memory / len(stream.nodes))
    if len(memories) < 3:
        memories = [per_node * f for f in CURVE_FRACTIONS]
    floor = float(stream.slabs.page_size * max(4, classes_in_use(stream)))
    ceiling = max(_round_mib(per_node * 1.05), _round_mib(floor))  # every touched key fits
    return sorted({min(_round_mib(max(m, floor)), ceiling) for m in memories if m > 0})


def _round_mib(memory: float) -> int:
    """Whole MiB (memcached's -m unit), at least 1."""
    return max(1, math.ceil(memory / 2**20)) * 2**20


def interpolate_memory(points: list[MemoryPoint], target: float) -> int | None:
    """Memory per node at which the simulated curve reaches `target` (linear in log
    memory between the two points around it); None when no point reaches it."""
    ordered = sorted(points, key=lambda p: p.memory_per_node)
    for below, above in zip(ordered, ordered[1:]):
        if below.hit_ratio < target <= above.hit_ratio:
            share = (target - below.hit_ratio) / (above.hit_ratio - below.hit_ratio)
            low, high = math.log(below.memory_per_node), math.log(above.memory_per_node)
            return _round_mib(math.exp(low + share * (high - low)))
    if ordered and ordered[0].hit_ratio >= target:
        return ordered[0].memory_per_node
    return None


def memory_report(stream: SampledStream, scenario: str, target: float | None,
                  memories: list[int] | None = None,
                  progress: Any = None) -> MemoryReport:
    """The curve, the memory for `target`, slab waste and the working set."""
    sizes = memories or curve_memories(stream, target)
    curve = []
    for memory in sizes:
        curve.append(simulate(stream, memory))
        if progress:
            progress(len(curve), len(sizes) + (1 if target else 0))
    notes = list(stream.notes)
    point, che_memory = None, None
    if target is not None:
        wanted = interpolate_memory(curve, target)
        if wanted is None:
            best = max(curve, key=lambda p: p.hit_ratio)
            notes.append(f"a hit ratio of {target:.4g} was not reached: "
                         f"{best.hit_ratio:.4g} at the largest size simulated")
        else:
            point = next((p for p in curve if p.memory_per_node == wanted), None) \
                or simulate(stream, wanted)
        pool = che_model(stream)
        pooled = pool.memory_for(target) if pool is not None else None
        che_memory = pooled / len(stream.nodes) if pooled is not None else None
    if progress:
        progress(len(sizes) + 1, len(sizes) + 1)
    shown = point or (curve[-1] if curve else None)
    if shown is not None and shown.hot_residency_min is not None \
            and shown.hot_residency_min < RESIDENCY_FLOOR:
        notes.append("at this size the cache evicts within the request interval of some keys "
                     "counted apart as resident: raise --budget, or --sample-rate 1")
    return MemoryReport(
        scenario=scenario, nodes=stream.nodes, slabs=stream.slabs.describe(),
        op_rate=stream.op_rate, ops=stream.ops, warmup_ops=stream.warmup_ops,
        sample_rate=stream.sample_rate,
        expected_error=max((p.error for p in curve), default=0.0),
        curve=curve, target_hit_ratio=target, target=point,
        che_memory_for_target=che_memory, working_set=working_set(stream), notes=notes)


# ------------------------------------------------------------------------------ the command's work


#: Ops simulated by default: this many per key, within the bounds below.
OPS_PER_KEY = 10
MIN_OPS, MAX_OPS = 1_000_000, 100_000_000
#: Share of the ops that warm the cache up before the hit ratio is counted.
WARMUP_SHARE = 0.3


def default_ops(scenario: Scenario) -> int:
    """Enough ops for the cache to reach its steady state (keys x 10, 1 M to 100 M)."""
    keys = sum(ks.keys or 0 for ks in scenario.keyspaces) or MIN_OPS
    return int(min(MAX_OPS, max(MIN_OPS, OPS_PER_KEY * keys)))


def pool_nodes(count: int, named: list[str] | None = None) -> tuple[str, ...]:
    """The pool's "host:port" nodes: the target's, else cache1..N on memcached's port
    (the ketama ring hashes host names, so names give the same skew as real hosts)."""
    if named:
        return tuple(named)
    if count < 1:
        raise InputError(f"expected at least 1 node, got {count}", field="--nodes")
    return tuple(f"cache{i + 1}:11211" for i in range(count))


def run_memory(scenario: Scenario, *, nodes: tuple[str, ...], slabs: SlabClasses,
               op_rate: float, target: float | None = None,
               memories: list[int] | None = None, ops: int | None = None,
               warmup_ops: int | None = None, sample_rate: float | None = None,
               budget: int = DEFAULT_BUDGET, seed: int | None = None,
               progress: Any = None) -> MemoryReport:
    """`bench capacity memory` with plain arguments (see the module docstring)."""
    ops = ops or default_ops(scenario)
    warmup = int(ops * WARMUP_SHARE) if warmup_ops is None else warmup_ops
    if not 0 <= warmup < ops:
        raise InputError(f"expected a warm-up below the {ops:,} ops, got {warmup:,}",
                         field="--warmup-ops")
    if sample_rate is not None and not 0 < sample_rate <= 1:
        raise InputError(f"expected a sampling rate in (0, 1], got {sample_rate:g}",
                         field="--sample-rate")
    settings = StreamSettings(ops=ops, warmup_ops=warmup, op_rate=op_rate, nodes=nodes,
                              seed=seed, sample_rate=sample_rate, budget=budget)
    stream = sample_stream(scenario, settings, slabs)
    return memory_report(stream, scenario.name, target, memories, progress)
