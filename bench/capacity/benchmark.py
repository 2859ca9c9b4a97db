"""`bench capacity benchmark` (in `make perf`): is the memory model fast and is its
sampling honest?

Two checks, each against a stated bound:

- speed: a 10 M-key MediaWiki-like key space, 100 M ops, sampled with the default
  budget, the whole `bench capacity memory` work (stream, curve, target size):
  the CPU time of this process, which runs on one core, within 60 s (the size for 90%);
- sampling error: a key space small enough to simulate every key, simulated both in
  full and sampled, at sizes from about 88% to 97% hit ratio: within 1 point.

CPU time, not wall time, so that a busy neighbour on a shared machine does not
count against the model; a dedicated core gives the same figure as wall time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.capacity.memory import run_memory, simulate
from bench.capacity.slabs import SlabClasses
from bench.capacity.stream import StreamSettings, sample_stream
from bench.scenario.model import Scenario

SPEED_LIMIT_S = 60.0
ERROR_LIMIT = 0.01


def benchmark_scenario(keys: int) -> Scenario:
    """MediaWiki's object cache shape (Zipf 0.99, lognormal sizes compressed above
    1500 B, TTLs, cache-aside gets, sets, deletes and adds) over `keys` keys."""
    return Scenario.from_json({
        "name": f"capacity-benchmark-{keys}", "load": {"rate": 100_000},
        "keyspaces": [{
            "name": "objects", "keys": keys, "template": "{wiki}:obj:{id}",
            "popularity": {"dist": "zipf", "alpha": 0.99},
            "value_size": {"dist": "lognormal", "median": 350, "p99": 40_960, "min": 8,
                           "max": 900 * 1024},
            "compression": {"threshold": 1500, "ratio": 0.4},
            "ttl": {"3600": 0.25, "86400": 0.5, "604800": 0.25},
            "mix": {"get": {"weight": 0.9, "on_miss": "set"}, "set": 0.05,
                    "delete": 0.03, "add": 0.02}}]})


@dataclass
class Check:
    name: str
    value: float
    limit: float
    unit: str
    detail: str

    @property
    def passed(self) -> bool:
        return self.value <= self.limit


def speed(keys: int = 10_000_000, ops: int = 100_000_000) -> Check:
    """CPU seconds of the whole sampled memory model at 10 M keys and 100 M ops."""
    started = time.process_time()
    report = run_memory(benchmark_scenario(keys), nodes=("cache1:11211",), slabs=SlabClasses(),
                        op_rate=100_000, target=0.9, ops=ops)
    cpu = time.process_time() - started
    answer = report.target.memory_per_node if report.target else None
    return Check(f"{keys:,} keys, {ops:,} ops, sampled", cpu, SPEED_LIMIT_S, "s CPU",
                 f"rate {report.sample_rate:.3g}, {len(report.curve)} sizes, 90% at "
                 + (f"{answer / 2**30:.2f} GiB" if answer else "not reached"))


def sampling_error(keys: int = 100_000, ops: int = 1_000_000) -> Check:
    """Largest |sampled - full| hit ratio over three sizes (about 88% to 97%)."""
    scenario, slabs = benchmark_scenario(keys), SlabClasses()

    def model(**options: object):
        return sample_stream(scenario, StreamSettings(ops=ops, warmup_ops=ops // 3,
                                                      op_rate=100_000, **options), slabs)

    full, sampled = model(sample_rate=1.0), model(budget=ops // 20)
    worst, shown = 0.0, []
    for memory_mb in (48, 96, 160):
        exact = simulate(full, memory_mb * 2**20).hit_ratio
        estimate = simulate(sampled, memory_mb * 2**20).hit_ratio
        worst = max(worst, abs(estimate - exact))
        shown.append(f"{memory_mb} MiB {exact * 100:.2f}/{estimate * 100:.2f}%")
    return Check(f"sampled (rate {sampled.sample_rate:.2g}) vs every key, {keys:,} keys",
                 worst * 100, ERROR_LIMIT * 100, "pt", "full/sampled: " + ", ".join(shown))
