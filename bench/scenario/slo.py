"""SLOs as SRE teams write them: the spec, validated (verdicts: bench.analysis.verdicts).

An SLO file (or a scenario's `slo:` block) looks like::

    name: mediawiki-memcached
    objectives:                       # "99.9% of get and get_multi under 2 ms"
      - {ops: [get, get_multi], percentile: 99.9%, under: 2ms}
      - {ops: [set], percentile: 99%, under: 5ms}
    errors: {max: 0.1%, count_timeouts: true}   # error budget: at most 0.1% of ops fail
    hit_ratio: {min: 90%}
    window: 10s                       # also judge every 10 s window ...
    windows_compliant: 99%            # ... and require 99% of them to meet each objective
    regression: {tolerance: 10%}      # `bench compare`: tolerated relative increase
    validity: {max_cpu: 80%}          # the measurement's own checks (validity.py)

"Under 2 ms" means "<= 2 ms" (bench.analysis.verdicts says how it is judged).

The scenario model validates `slo:` blocks with `parse_slo`; SLO files and scenarios
name mistakes alike (bench.scenario.yamldoc). An objective may name only the ops that
results carry (`vocabulary.RECORDED_OPS`): any other name is a typo that would make it
silently judge nothing. A `validity:` block overrides the thresholds of the validity
verdict (the spec: bench.scenario.validity) over the scenario's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from bench.errors import InputError
from bench.scenario.validity import ValiditySpec
from bench.scenario.yamldoc import StrictModel, YamlDoc, error_path, field_path, read_document
from bench.units import format_percent, format_us, parse_duration, parse_fraction
from bench.vocabulary import RECORDED_OPS


def _fraction(value: Any) -> float:
    """`99.9%` or 0.999 -> 0.999 (pydantic turns the ValueError into a field error)."""
    return parse_fraction(value)


def _duration_us(value: Any) -> int:
    """`2ms` -> 2000: thresholds are whole microseconds, like the histograms."""
    return int(round(parse_duration(value) * 1e6))


def _duration_s(value: Any) -> float:
    """`10s` -> 10.0, refusing zero (a window must hold time)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration > 0 like 10s, got {value!r}")
    return seconds


Fraction01 = Annotated[float, BeforeValidator(_fraction)]
DurationUs = Annotated[int, BeforeValidator(_duration_us)]
WindowS = Annotated[float, BeforeValidator(_duration_s)]


class _SloModel(StrictModel):
    """Base of the SLO models: an SLO file speaks of settings."""

    @classmethod
    def _unknown_key(cls, key: Any, known: list[str]) -> str:
        return f"unknown setting; expected one of {', '.join(known)}"


class LatencyObjective(_SloModel):
    """`percentile` of the ops in `ops` complete in at most `under_us` microseconds."""

    ops: list[str] = Field(min_length=1)
    percentile: Fraction01
    under_us: DurationUs = Field(alias="under", gt=0)
    name: str | None = None

    @model_validator(mode="after")
    def _known_ops(self) -> LatencyObjective:
        unknown = [op for op in self.ops if op not in RECORDED_OPS]
        if unknown:
            raise ValueError(f"unknown op {unknown[0]!r}; expected some of "
                             f"{', '.join(RECORDED_OPS)}")
        return self

    @property
    def title(self) -> str:
        """The objective as a sentence: `99.9% of get, get_multi under 2 ms`."""
        return self.name or (f"{format_percent(self.percentile)} of {', '.join(self.ops)} "
                             f"under {format_us(self.under_us)}")


class ErrorBudget(_SloModel):
    """At most `max` of all ops may fail; timeouts count as failures unless told not to."""

    max: Fraction01
    count_timeouts: bool = True


class HitRatioObjective(_SloModel):
    """Hits / (hits + misses) over the ops that look keys up must be at least `min`."""

    min: Fraction01


class RegressionPolicy(_SloModel):
    """`bench compare`: relative increase of a percentile tolerated before it is a regression."""

    tolerance: Fraction01


class SloSpec(_SloModel):
    """A validated SLO: latency objectives, error budget, hit ratio, window rule."""

    name: str | None = None
    description: str | None = None
    objectives: list[LatencyObjective] = Field(default_factory=list)
    errors: ErrorBudget | None = None
    hit_ratio: HitRatioObjective | None = None
    window_s: WindowS | None = Field(default=None, alias="window")
    windows_compliant: Fraction01 | None = None
    regression: RegressionPolicy | None = None
    validity: ValiditySpec | None = None

    @model_validator(mode="after")
    def _window_pair(self) -> SloSpec:
        if (self.window_s is None) != (self.windows_compliant is None):
            raise ValueError("window and windows_compliant go together: "
                             "e.g. window: 10s, windows_compliant: 99%")
        return self

    def to_data(self) -> dict[str, Any]:
        """The spec in the file's own form, so `parse_slo(spec.to_data())` gives it back.

        run.json stores this, keeping a run directory self-describing.
        """
        data: dict[str, Any] = {"name": self.name, "description": self.description}
        data["objectives"] = [
            {"ops": list(o.ops), "percentile": format_percent(o.percentile),
             "under": f"{o.under_us}us", **({"name": o.name} if o.name else {})}
            for o in self.objectives]
        if self.errors:
            data["errors"] = {"max": format_percent(self.errors.max),
                              "count_timeouts": self.errors.count_timeouts}
        if self.hit_ratio:
            data["hit_ratio"] = {"min": format_percent(self.hit_ratio.min)}
        if self.window_s is not None:
            data["window"] = f"{self.window_s:g}s"
            data["windows_compliant"] = format_percent(self.windows_compliant or 0.0)
        if self.regression:
            data["regression"] = {"tolerance": format_percent(self.regression.tolerance)}
        if self.validity:
            data["validity"] = self.validity.to_data()
        return {key: value for key, value in data.items() if value is not None}


def parse_slo(data: Any, file: str | None = None) -> SloSpec:
    """Validate an SLO mapping; InputError names the file, the field and what was expected."""
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of SLO settings, got {type(data).__name__}",
                         file=file, field="slo")
    try:
        return SloSpec.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        raise InputError(first["msg"].removeprefix("Value error, "), file=file,
                         field=field_path(error_path(first, data)) or "slo") from None


def load_slo(path: str | Path) -> SloSpec:
    """Read and validate an SLO YAML file."""
    doc = YamlDoc(read_document(str(path), "SLO file"), str(path),
                  expected="an SLO mapping (objectives, errors, ...)")
    data = doc.data
    return parse_slo(data, file=str(path))
