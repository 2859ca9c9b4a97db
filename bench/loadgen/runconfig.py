"""What `bench run` hands to Locust: the load plan and the run configuration.

`driver.py` builds a `RunConfig` in the orchestrating process; it travels as JSON in an
environment variable to the Locust master, which forwards it to every worker (Locust
custom arguments), where `users.py` reads it back. One definition keeps both ends of
that hand-over in step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bench.errors import InputError

from bench.results.recorder import INTERVAL_S
from bench.results.rundir import RunInfo

#: The environment variable that carries a RunConfig from `bench run` to Locust.
CONFIG_ENV = "CACHEBENCH_CONFIG"


class Range(NamedTuple):
    """The accepted values of one quantity of a run, `low` excluded when `above`."""

    low: float
    high: float
    unit: str = ""
    above: bool = False

    def check(self, value: float, field: str, file: str | None = None) -> float:
        """`value` if in range, else one-line InputError saying the accepted range."""
        if math.isfinite(value) and value <= self.high and (
                value > self.low if self.above else value >= self.low):
            return value
        unit = f" {self.unit}" if self.unit else ""
        low = f"more than {_number(self.low)}" if self.above else _number(self.low)
        raise InputError(f"expected {low} to {_number(self.high)}{unit}, got {_number(value)}",
                         file=file, field=field)


def _number(value: float) -> str:
    """An int as written, a float in %g form (`inf` included)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


#: Every quantity of a run, bounded: far beyond any real run, and small enough that a
#: typo (`--users 1e20`, `--rate 1e12`, `--duration 1e400s`) is refused at parse time
#: instead of exhausting the machine, overflowing Locust or writing Infinity to run.json.
LIMITS: dict[str, Range] = {
    "users": Range(1, 100_000, "users"),
    "rate": Range(0, 10_000_000, "ops/s", above=True),
    "duration": Range(0, 7 * 86400, "s", above=True),
    "warmup": Range(0, 86400, "s"),
    "think": Range(0, 3600, "s"),
    "timeout": Range(0, 60, "s", above=True),  # latencies are recorded up to 60 s
    "seed": Range(0, 2**63 - 1),
    "port": Range(1, 65535),
    "processes": Range(1, 1024, "processes"),
    "workers": Range(1, 10_000, "workers"),
}


@dataclass(frozen=True)
class LoadPlan:
    """The load of one run, after flags override the scenario's `load:` block."""

    mode: str  # "open" | "closed"
    rate: float | None  # open loop: total ops/s over all users
    arrival: str  # "poisson" | "uniform"
    users: int
    think_s: float
    warmup_s: float
    duration_s: float
    prefill: bool
    seed: int


@dataclass(frozen=True)
class RunConfig:
    """Everything a Locust process needs to run its share of the load."""

    scenario: dict[str, Any]  # the resolved scenario (Scenario.to_json)
    load: LoadPlan
    target_url: str  # with credentials: never written to run.json
    timeout_s: float
    interval_s: float = INTERVAL_S  # what the recorders bin by and run.json records
    run_dir: str | None = None
    run_info: RunInfo = field(default_factory=RunInfo)  # the run's description
    ui: bool = False

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "run_info": self.run_info.to_json()})

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        return cls(**{**data, "load": LoadPlan(**data["load"]),
                      "run_info": RunInfo.from_json(data["run_info"])})
