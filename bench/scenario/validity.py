"""The validity thresholds: when a run is not a measurement of the cache (the spec).

A run measures the cache only while its load generator keeps up with its schedule.
Each load process (a Locust worker, or the single local process: a *source*) is judged
on its own figures over the measured window (bench.analysis.validity gives the verdict,
from loadgen.csv and the `_lag:<source>` histograms); the run is invalid when any
source is. A source is invalid when

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

Errors are located like the SLO's (bench.scenario.yamldoc): `validity.max_cpu`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, WithJsonSchema

from bench.errors import InputError
from bench.scenario.yamldoc import StrictModel, error_path, field_path
from bench.units import format_percent, parse_duration, parse_fraction


def _duration_us(value: Any) -> int:
    """`1ms` -> 1000 (whole microseconds, like the lag histograms)."""
    return int(round(parse_duration(value) * 1e6))


def _written(example: str) -> WithJsonSchema:
    """The JSON Schema of a quantity written as a number or with units (editors)."""
    return WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}],
                           "description": f"a number or a string like {example}"})


Share = Annotated[float | None, BeforeValidator(parse_fraction), _written("95%")]


class ValiditySpec(StrictModel):
    """Validity thresholds; a field left out (None) keeps the value it overrides."""

    min_rate: Share = None
    max_send_lag_p99_us: Annotated[int | None, BeforeValidator(_duration_us),
                                   _written("1ms")] = Field(default=None,
                                                            alias="max_send_lag_p99", gt=0)
    max_cpu: Share = None

    @classmethod
    def _unknown_key(cls, key: Any, known: list[str]) -> str:
        return f"unknown setting; expected one of {', '.join(known)}"

    def over(self, base: ValiditySpec) -> ValiditySpec:
        """`base` with the fields this spec sets replaced by this spec's values."""
        return base.model_copy(update={name: value for name, value in self if value is not None})

    def to_data(self) -> dict[str, Any]:
        """The spec in the file's own form: `parse_validity(spec.to_data())` gives it back."""
        data = {"min_rate": None if self.min_rate is None else format_percent(self.min_rate),
                "max_send_lag_p99": None if self.max_send_lag_p99_us is None
                else f"{self.max_send_lag_p99_us}us",
                "max_cpu": None if self.max_cpu is None else format_percent(self.max_cpu)}
        return {key: value for key, value in data.items() if value is not None}


def parse_validity(data: Any, file: str | None = None) -> ValiditySpec:
    """Validate a `validity:` mapping; InputError names the file, the field, what was expected."""
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of validity thresholds, got "
                         f"{type(data).__name__}", file=file, field="validity")
    try:
        return ValiditySpec.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        raise InputError(first["msg"].removeprefix("Value error, "), file=file,
                         field=field_path(("validity", *error_path(first, data)))) from None


#: The documented defaults (module docstring), written as a file would write them.
DEFAULT_VALIDITY = parse_validity({"min_rate": "95%", "max_send_lag_p99": "1ms", "max_cpu": "90%"})


def resolve(*layers: ValiditySpec | None) -> ValiditySpec:
    """DEFAULT_VALIDITY overridden by each given layer in turn (None layers are skipped)."""
    spec = DEFAULT_VALIDITY
    for layer in layers:
        if layer is not None:
            spec = layer.over(spec)
    return spec
