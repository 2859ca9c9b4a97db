"""What `bench run` checks before it sends anything: every quantity of the plan within
its bounds, values a server can store, a prefill that fits in the target.

Why a module of its own: these checks are the difference between a typo refused in one
line (`--users 1e20`, `--rate 1e400`, a 10^12-key prefill) and a run that exhausts the
machine, writes Infinity into run.json or fills a cache it cannot fit in. Limits live
in `bench.loadgen.runconfig.LIMITS`, beside the plan they bound; `bench.commands`
bounds each flag with them as it parses it, and the driver bounds the plan here, whether
a flag, an option of a library caller or the scenario gave a quantity. Like every stage,
this takes plain values, never an argparse Namespace.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection

import numpy as np

from bench.errors import InputError
from bench.loadgen.runconfig import LIMITS, LoadPlan
from bench.scenario.model import Scenario
from bench.targets import TargetInfo, server_stats
from bench.units import format_size
from bench.workload.ops import Workload
from bench.workload.preview import sampled_sizes

#: Values larger than Redis's largest string (512 MB) are refused before a run.
MAX_VALUE_BYTES = 512 * 2**20
#: ... judged at this quantile of a key space's size distribution (one key in a million).
LARGEST_VALUE_QUANTILE = 1 - 1e-6
#: Keys per key space sampled for the working set before a run.
SIZE_CHECK_SAMPLE = 2000

#: LoadPlan field -> the LIMITS entry (also the flag, --NAME) and the scenario field it
#: comes from.
PLAN_SOURCES = {"users": ("users", "load.users"), "rate": ("rate", "load.rate"),
                "duration_s": ("duration", "load.duration"),
                "warmup_s": ("warmup", "load.warmup"), "think_s": ("think", "load.think"),
                "seed": ("seed", "seed")}


def check_plan(plan: LoadPlan, scenario: Scenario, from_options: Collection[str]) -> None:
    """Every quantity of the plan within its LIMITS, whether an option (a flag) or the
    scenario gave it; the error names whichever did. `from_options` holds the LoadPlan
    fields that options set."""
    for attribute, (name, scenario_field) in PLAN_SOURCES.items():
        value = getattr(plan, attribute)
        if value is None:  # no rate in closed loop
            continue
        if attribute in from_options:
            LIMITS[name].check(value, f"--{name}")
        else:
            LIMITS[name].check(value, scenario_field, file=scenario.source)


def local_processes(value: int | None) -> int | None:
    """--processes resolved (-1: one per core); None when not given."""
    if value is None:
        return None
    if value == -1:
        return os.cpu_count() or 1
    limit = LIMITS["processes"]
    if not limit.low <= value <= limit.high:
        raise InputError(f"expected -1 (one per core) or {limit.low:g} to {limit.high:g}, "
                         f"got {value}", field="--processes")
    return value


def space_bytes(workload: Workload) -> list[float]:
    """Bytes of each key space with every key stored, estimated from a sample of keys.

    On the way, refuses values larger than a server can store (Redis: 512 MB strings;
    memcached far less by default), judged on the size distribution itself: a typo in a
    size would otherwise be allocated in every Locust process.
    """
    estimates = []
    for plan in workload.plans:  # none for a trace: its sizes come from the file
        largest = int(plan.value_size.quantile(np.array([LARGEST_VALUE_QUANTILE]))[0])
        if largest > MAX_VALUE_BYTES:
            raise InputError(f"values of up to {largest:,} bytes; expected at most "
                             f"{MAX_VALUE_BYTES:,} (512 MiB)", file=workload.scenario.source,
                             field=f"keyspaces[{plan.index}].value_size")
        key_bytes, value_bytes = sampled_sizes(plan, SIZE_CHECK_SAMPLE)
        estimates.append(plan.space.keys * (key_bytes + value_bytes))
    return estimates


def target_memory(info: TargetInfo) -> int | None:
    """Bytes the target can hold: the sum over its nodes of memcached's limit_maxbytes or
    Redis's maxmemory (the machine's memory when unlimited); None when a node does not
    say (a proxy has no stats)."""
    total = 0
    for stats in server_stats(info).values():
        value = (stats.get("limit_maxbytes") or stats.get("maxmemory")
                 or stats.get("total_system_memory"))
        if not value:
            return None
        total += int(value)
    return total


def check_memory(info: TargetInfo, scenario: Scenario, plan: LoadPlan, workload: Workload,
                 space_bytes: list[float], force: bool) -> None:
    """Refuse (without `force`, --force) a prefill larger than the target's memory; warn
    when the working set is: every key would not fit, so the run measures evictions."""
    memory = target_memory(info)
    if memory is None:
        return
    working = sum(space_bytes)
    prefilled = sum(b for b, space in zip(space_bytes, workload.plans) if space.space.prefill) \
        if plan.prefill else 0.0
    if prefilled > memory and not force:
        raise InputError(f"the prefill writes about {format_size(prefilled)} (keys x mean key "
                         f"and value size) but {info.redacted} holds {format_size(memory)}; "
                         "lower the key counts, use --no-prefill, or pass --force",
                         file=scenario.source, field="keyspaces")
    if max(working, prefilled) > memory:
        print(f"warning: the working set is about {format_size(working)} but "
              f"{info.redacted} holds {format_size(memory)}: expect evictions",
              file=sys.stderr)
