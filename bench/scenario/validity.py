"""Is a run a measurement of the cache? The validity thresholds, and the verdict on them.

A run in which the load generator fell behind its own schedule measured the harness,
not the cache: its percentiles say nothing about the cache, whatever the SLO verdict.
Each load process (the local runner, or each Locust worker: a *source*) is judged on its
own figures over the measured window, which `bench.analysis.runs` reads from the run
directory (loadgen.csv, the `_lag:<source>` histograms); the run is invalid when any
source is, and the reasons name the worst. A source is invalid when

- **rate** (open loop): it sent fewer than `min_rate` (default 95%) of the ops its
  schedule intended in the window;
- **send lag** (open loop): the p99 of how late it sent the first call of an op exceeds
  `max_send_lag_p99` (default 1 ms). Lateness counts from the op's intended start, or
  from when its user was free to send it if that is later: a user still waiting for a
  slow reply is the cache's doing (latency from the intended start already charges it
  to the cache), a user that was free and did not send is the harness's;
- **CPU** (both loops): it averaged more than `max_cpu` (default 90%) of one core over
  the window. A process with no CPU left delays every timer and every reply it reads,
  so its service times and its closed-loop throughput are its own, not the cache's.

Closed-loop runs have no schedule: they report the same figures and are never invalid
for rate or lag. The thresholds can be changed per field by a `validity:` block in the
scenario and, over that, in the SLO file (or a scenario's `slo:` block)::

    validity: {min_rate: 95%, max_send_lag_p99: 1ms, max_cpu: 90%}

This module imports nothing from `bench` but `errors` and `units`, like `slo.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from bench.errors import InputError
from bench.units import parse_duration, parse_fraction

#: What an INVALID verdict tells the user to do.
ADVICE = ("try a lower --rate, or spread the load: --processes N (-1: one per core) or "
          "more `bench worker` machines")


def _duration_us(value: Any) -> int:
    """`1ms` -> 1000 (whole microseconds, like the lag histograms)."""
    return int(round(parse_duration(value) * 1e6))


def _written(example: str) -> WithJsonSchema:
    """The JSON Schema of a quantity written as a number or with units (editors)."""
    return WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}],
                           "description": f"a number or a string like {example}"})


Share = Annotated[float | None, BeforeValidator(parse_fraction), _written("95%")]


class ValiditySpec(BaseModel):
    """Validity thresholds; a field left out (None) keeps the value it overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    min_rate: Share = None
    max_send_lag_p99_us: Annotated[int | None, BeforeValidator(_duration_us),
                                   _written("1ms")] = Field(default=None,
                                                            alias="max_send_lag_p99", gt=0)
    max_cpu: Share = None

    def over(self, base: ValiditySpec) -> ValiditySpec:
        """`base` with the fields this spec sets replaced by this spec's values."""
        return base.model_copy(update={name: value for name, value in self if value is not None})

    def to_data(self) -> dict[str, Any]:
        """The spec in the file's own form: `parse_validity(spec.to_data())` gives it back."""
        data = {"min_rate": _percent(self.min_rate),
                "max_send_lag_p99": None if self.max_send_lag_p99_us is None
                else f"{self.max_send_lag_p99_us}us",
                "max_cpu": _percent(self.max_cpu)}
        return {key: value for key, value in data.items() if value is not None}


def _percent(fraction: float | None) -> str | None:
    """0.95 -> `95%` (slo.format_percent's form; this module cannot import slo.py)."""
    return None if fraction is None else f"{round(fraction * 100, 9):g}%"


def parse_validity(data: Any, file: str | None = None) -> ValiditySpec:
    """Validate a `validity:` mapping; InputError names the file, the field, what was expected."""
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of validity thresholds, got "
                         f"{type(data).__name__}", file=file, field="validity")
    try:
        return ValiditySpec.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in ("validity", *first["loc"]))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown setting; expected one of min_rate, max_send_lag_p99, max_cpu"
        raise InputError(message, file=file, field=field) from None


#: The documented defaults (module docstring), written as a file would write them.
DEFAULT_VALIDITY = parse_validity({"min_rate": "95%", "max_send_lag_p99": "1ms", "max_cpu": "90%"})


def resolve(*layers: ValiditySpec | None) -> ValiditySpec:
    """DEFAULT_VALIDITY overridden by each given layer in turn (None layers are skipped)."""
    spec = DEFAULT_VALIDITY
    for layer in layers:
        if layer is not None:
            spec = layer.over(spec)
    return spec


# --- the verdict ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFigures:
    """What one load process did over the measured window (the verdict's input)."""

    intended: int  # ops its schedule meant to send in the window (open loop)
    sent: int  # ops whose first call it sent in the window
    send_lag_p99_us: float | None  # None: nothing sent, or a closed loop
    cpu: float | None  # user + system seconds over the window's seconds (None: unknown)


def reasons(figures: SourceFigures, spec: ValiditySpec, open_loop: bool,
            source: str | None = None) -> list[str]:
    """Why one source's measurement is invalid, one sentence per reason (none: valid).

    `source` prefixes each sentence when given (runs with several load processes).
    `spec` must be resolved (every field set, see `resolve`).
    """
    who = f"process {source}: " if source else ""
    found = []
    if open_loop and figures.intended and figures.sent < spec.min_rate * figures.intended:
        found.append(f"{who}sent {figures.sent / figures.intended:.1%} of the ops asked "
                     f"({figures.sent:,} of {figures.intended:,}), under "
                     f"{_percent(spec.min_rate)}")
    lag = figures.send_lag_p99_us
    if open_loop and lag is not None and lag > spec.max_send_lag_p99_us:
        found.append(f"{who}send lag p99 {_ms(lag)}, over {_ms(spec.max_send_lag_p99_us)}")
    if figures.cpu is not None and figures.cpu > spec.max_cpu:
        found.append(f"{who}CPU-bound at {figures.cpu:.0%} of a core, over "
                     f"{_percent(spec.max_cpu)}")
    return found


def _ms(us: float) -> str:
    return f"{us / 1000:.3g} ms"


def headline(validity: dict[str, Any] | None) -> str | None:
    """`INVALID: the load generator fell behind: why. What to do.`, None unless invalid.

    The terminal, the report, `bench analyze` and `bench compare` all lead with it.
    """
    if not validity or validity.get("valid") is not False:
        return None
    return (f"INVALID: the load generator fell behind: {'; '.join(validity['reasons'])}. "
            f"It measured itself, not the cache; {ADVICE}.")
