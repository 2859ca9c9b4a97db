"""What `bench run` hands to Locust: the load plan and the run configuration.

`driver.py` builds a `RunConfig` in the orchestrating process; it travels as JSON in an
environment variable to the Locust master, which forwards it to every worker (Locust
custom arguments), where `users.py` reads it back. One definition keeps both ends of
that hand-over in step.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from bench.results.recorder import INTERVAL_S
from bench.results.rundir import RunInfo

#: The environment variable that carries a RunConfig from `bench run` to Locust.
CONFIG_ENV = "CACHEBENCH_CONFIG"


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
