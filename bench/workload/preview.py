"""What a scenario will send, before anyone points it at a cache (`bench scenarios preview`).

The preview answers "what will this scenario send?": op shares, how concentrated key
popularity is (share of requests to the hottest 1% of keys, observed and exact), key
and value size percentiles, TTL shares and the bytes the key spaces need when every key
is cached. Value sizes are shown both ways a scenario's `per` can mean them: as the
requests carry them and as the keys store them. It draws the same stream a run would (stream 0 of 1), so `write_csv` writes
exactly the ops a one-user run sends. The tables are `bench.output.scenarios`'.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import InputError
from bench.scenario.distributions import top_share
from bench.scenario.model import Scenario
from bench.workload.ops import Op, SpacePlan, Workload

#: Share of the key space whose requests `preview` reports ("top 1% of keys").
TOP_FRACTION = 0.01
#: Keys per key space sampled for size and working-set estimates.
SIZE_SAMPLE = 100_000
#: Percentiles of key length and value size in a preview (100: the largest).
PERCENTILES = (50, 90, 99, 100)


@dataclass
class SpacePreview:
    """What one key space's ops look like in a preview."""

    name: str
    keys: int
    popularity: str
    requests: int = 0
    top_share_observed: float | None = None
    top_share_expected: float | None = None
    mean_key_bytes: float = 0.0
    mean_value_bytes: float = 0.0

    @property
    def working_set_bytes(self) -> float:
        """Keys and values of every key (data only: no per-item server overhead)."""
        return self.keys * (self.mean_key_bytes + self.mean_value_bytes)


@dataclass
class Preview:
    """The numbers `bench scenarios preview` prints (a pure function of scenario, seed, ops)."""

    ops: int
    op_shares: dict[str, float] = field(default_factory=dict)
    ttl_shares: dict[float, float] = field(default_factory=dict)
    key_length: dict[int, float] = field(default_factory=dict)
    value_size: dict[int, float] = field(default_factory=dict)
    value_size_per_key: dict[int, float] = field(default_factory=dict)
    spaces: list[SpacePreview] = field(default_factory=list)

    @property
    def working_set_bytes(self) -> float:
        return sum(s.working_set_bytes for s in self.spaces)


def requested_keys(op: Op) -> tuple[str, ...]:
    """The keys an op requests, as popularity counts them: a batch's keys, else the first
    (check keys and lock instances are companions of the first key, not requests)."""
    return op.keys if op.action == "get_multi" else op.keys[:1]


def preview(scn: Scenario, ops: int, seed: int | None = None) -> Preview:
    """Draw `ops` ops of stream 0 of 1 and summarise them (see the module docstring)."""
    workload = Workload(scn, seed)
    drawn = list(itertools.islice(workload.stream(0, 1), ops))
    result = Preview(ops=len(drawn))
    if not drawn:
        return result
    total = len(drawn)
    kinds = Counter(f"{scn.keyspaces[op.space].name}/{op.kind}" for op in drawn)
    result.op_shares = {k: n / total for k, n in kinds.most_common()}
    ttls = Counter(op.ttl for op in drawn)
    result.ttl_shares = {t: n / total for t, n in ttls.most_common()}
    key_lengths = np.array([len(k) for op in drawn for k in requested_keys(op)])
    sizes = np.array([op.value_size for op in drawn])
    result.key_length = _percentiles(key_lengths)
    result.value_size = _percentiles(sizes)
    stored: list[tuple[np.ndarray, float]] = []
    result.spaces = [_space_preview(workload, i, drawn, stored)
                     for i in range(len(scn.keyspaces))]
    result.value_size_per_key = _weighted_percentiles(stored)
    return result


def _percentiles(values: np.ndarray) -> dict[int, float]:
    return {p: float(np.percentile(values, p)) for p in PERCENTILES}


def _weighted_percentiles(samples: list[tuple[np.ndarray, float]]) -> dict[int, float]:
    """Percentiles over several key spaces' sampled per-key sizes, each sample standing
    for `weight` keys per value (its key count over the sample size)."""
    values = np.concatenate([v for v, _ in samples])
    weights = np.concatenate([np.full(len(v), w) for v, w in samples])
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return {p: float(values[order][min(np.searchsorted(cumulative, p / 100 - 1e-12),
                                       len(values) - 1)]) for p in PERCENTILES}


def _space_preview(workload: Workload, index: int, drawn: list[Op],
                   stored: list[tuple[np.ndarray, float]]) -> SpacePreview:
    """Popularity concentration and sizes of key space `index`; its sampled per-key
    value sizes are appended to `stored`."""
    space = workload.scenario.keyspaces[index]
    requests = Counter(k for op in drawn if op.space == index for k in requested_keys(op))
    if space.trace is not None:
        sizes = np.array(list({op.keys[0]: op.value_size for op in workload.trace.ops}.values()))
        stored.append((sizes, 1.0))
        return _trace_preview(space.name, workload.trace.ops, sum(requests.values()))
    plan = workload.plans[index]
    pop = plan.popularity
    out = SpacePreview(space.name, space.keys, pop.describe(), sum(requests.values()))
    top = math.floor(TOP_FRACTION * space.keys + 1e-9)
    if top >= 1 and out.requests:
        counts = sorted(requests.values(), reverse=True)
        out.top_share_observed = sum(counts[:top]) / out.requests
        out.top_share_expected = top_share(pop, TOP_FRACTION)
    sample = np.arange(min(space.keys, SIZE_SAMPLE))
    if space.keys > SIZE_SAMPLE:
        sample = np.random.default_rng(0).choice(space.keys, SIZE_SAMPLE, replace=False)
    out.mean_key_bytes = float(np.mean([len(k) for k in plan.keys_for(sample)]))
    sizes = plan.sizes(sample)
    stored.append((sizes, space.keys / len(sample)))
    out.mean_value_bytes = float(sizes.mean())
    return out


def sampled_sizes(plan: SpacePlan, sample: int = SIZE_SAMPLE) -> tuple[float, float]:
    """Mean key bytes and mean value bytes of a key space, from up to `sample` of its
    keys (all of them in a smaller space)."""
    keys = plan.space.keys
    chosen = np.arange(min(keys, sample))
    if keys > sample:
        chosen = np.random.default_rng(0).choice(keys, sample, replace=False)
    return (float(np.mean([len(k) for k in plan.keys_for(chosen)])),
            float(plan.sizes(chosen).mean()))


def _trace_preview(name: str, ops: list[Op], requests: int) -> SpacePreview:
    """A trace's key space: its distinct keys, each with the last value size it had."""
    sizes = {op.keys[0]: op.value_size for op in ops}
    return SpacePreview(name, len(sizes), "trace", requests,
                        mean_key_bytes=float(np.mean([len(k) for k in sizes])),
                        mean_value_bytes=float(np.mean(list(sizes.values()))))


def write_csv(scn: Scenario, seed: int, ops: int, path: Path) -> None:
    """`op,key,value_size,ttl` per op; a batch's keys are space-separated (keys have none)."""
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["op", "key", "value_size", "ttl"])
            for op in itertools.islice(Workload(scn, seed).stream(0, 1), ops):
                writer.writerow([op.action, " ".join(op.keys), op.value_size, f"{op.ttl:g}"])
    except OSError as err:
        raise InputError(f"cannot write the CSV: {err.strerror}", file=str(path),
                         field="--csv") from None
