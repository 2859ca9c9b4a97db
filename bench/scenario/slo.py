"""SLOs as SRE teams write them, and their verdicts over a whole run and per window.

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

Why ratios of counts and not percentile comparisons: "99.9% of gets under 2 ms" is met
when the share of recorded values <= 2 ms is >= 99.9%. Counting values at or below the
threshold in the histogram is exact up to the histogram's resolution, and adds up over
ops, intervals and machines, where percentiles don't. Values the histogram cannot tell
apart from the threshold (same bucket) count as at the threshold, so "under 2 ms" means
"<= 2 ms": a value exactly at the threshold meets it, the next distinguishable value
misses. Ratios are compared as exact fractions so that 999 of 1000 meets 99.9%.

This module imports nothing from `bench` but `errors`, `units` and its sibling
`validity` (the thresholds an SLO file may override): the scenario module
validates `slo:` blocks with `parse_slo`, and the analyzer hands measurements in through
the small `SloSource` protocol.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Protocol

import numpy as np
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, \
    model_validator

from bench.errors import InputError
from bench.scenario.validity import ValiditySpec
from bench.units import parse_duration, parse_fraction

# The protocol-level op names the executor records (docs/internals.md); anything else in
# an SLO is a typo that would otherwise make an objective silently judge nothing.
KNOWN_OPS = ("get", "get_multi", "set", "add", "replace", "delete", "incr", "decr", "touch",
             "hget", "hset")
ERROR_KINDS = ("timeout", "connection", "server", "client")
#: The ops that look keys up: a hit ratio is theirs (a delete of a missing key or an
#: incr of a new counter is not a cache miss).
LOOKUP_OPS = ("get", "get_multi", "hget")
_RATIO_PRECISION = 10**9


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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LatencyObjective(_Model):
    """`percentile` of the ops in `ops` complete in at most `under_us` microseconds."""

    ops: list[str] = Field(min_length=1)
    percentile: Fraction01
    under_us: DurationUs = Field(alias="under", gt=0)
    name: str | None = None

    @model_validator(mode="after")
    def _known_ops(self) -> LatencyObjective:
        unknown = [op for op in self.ops if op not in KNOWN_OPS]
        if unknown:
            raise ValueError(f"unknown op {unknown[0]!r}; expected some of {', '.join(KNOWN_OPS)}")
        return self

    @property
    def title(self) -> str:
        """The objective as a sentence: `99.9% of get, get_multi under 2 ms`."""
        return self.name or (f"{format_percent(self.percentile)} of {', '.join(self.ops)} "
                             f"under {format_us(self.under_us)}")


class ErrorBudget(_Model):
    """At most `max` of all ops may fail; timeouts count as failures unless told not to."""

    max: Fraction01
    count_timeouts: bool = True


class HitRatioObjective(_Model):
    """Hits / (hits + misses) over the ops that look keys up must be at least `min`."""

    min: Fraction01


class RegressionPolicy(_Model):
    """`bench compare`: relative increase of a percentile tolerated before it is a regression."""

    tolerance: Fraction01


class SloSpec(_Model):
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


def format_percent(fraction: float) -> str:
    """0.999 -> `99.9%`, without float noise (0.9990000000000001 would print 99.9%)."""
    return f"{round(fraction * 100, 9):g}%"


def describe_windows(windows: dict[str, Any] | None) -> str:
    """`58/60 of 10 s (96.7%, need 99%)`, or `-` without a window rule (console, report)."""
    if not windows or not windows["windows"]:
        return "-"
    return (f"{windows['compliant']}/{windows['windows']} of {windows['window_s']:g} s "
            f"({format_percent(windows['share'])}, need {format_percent(windows['target'])})")


def format_us(us: float) -> str:
    """Microseconds for people: 2000 -> `2 ms`, 500 -> `500 us`, 1_500_000 -> `1.5 s`."""
    if us >= 1_000_000:
        return f"{us / 1e6:g} s"
    if us >= 1000:
        return f"{us / 1e3:g} ms"
    return f"{us:g} us"


def _field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's ('objectives', 0, 'under') -> `objectives[0].under`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_slo(data: Any, file: str | None = None) -> SloSpec:
    """Validate an SLO mapping; InputError names the file, the field and what was expected."""
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of SLO settings, got {type(data).__name__}",
                         file=file, field="slo")
    try:
        return SloSpec.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = ("unknown setting; expected one of " +
                       ", ".join(_allowed_keys(first["loc"])))
        raise InputError(message, file=file, field=_field_path(first["loc"]) or "slo") from None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at `loc` accepts, as written in files (aliases), for error messages."""
    model: type[BaseModel] = SloSpec
    nested = {"objectives": LatencyObjective, "errors": ErrorBudget,
              "hit_ratio": HitRatioObjective, "regression": RegressionPolicy,
              "validity": ValiditySpec}
    if len(loc) > 1 and loc[0] in nested:
        model = nested[loc[0]]
    return [info.alias or name for name, info in model.model_fields.items()]


def load_slo(path: str | Path) -> SloSpec:
    """Read and validate an SLO YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"cannot read SLO file: {err.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("expected a UTF-8 text file (YAML)", file=str(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(err, 'problem', err)}", file=str(path),
                         line=mark.line + 1 if mark else None) from None
    return parse_slo(data, file=str(path))


# --- verdicts -------------------------------------------------------------------------


class SloSource(Protocol):
    """What a verdict needs from a run: per-interval counts, aligned with `interval_starts`."""

    interval_starts: np.ndarray

    def under(self, ops: list[str], threshold_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Per interval: (latency values <= threshold_us, all latency values) over `ops`."""

    def percentile_us(self, ops: list[str], fraction: float) -> float | None:
        """Whole-run latency at `fraction` over `ops` (for display; None without data)."""

    def counter(self, name: str, ops: list[str] | None = None) -> np.ndarray:
        """Per interval sum of a timeline counter (count, hits, misses, errors_timeout ...)."""


def meets(numerator: float, denominator: float, target: float, at_most: bool = False) -> bool:
    """numerator/denominator >= target (or <= with at_most), compared as exact fractions.

    Why: 99.9% parses to 0.9990000000000001 in floating point, and 999/1000 must meet it.
    """
    observed = Fraction(int(numerator), int(denominator))
    wanted = Fraction(target).limit_denominator(_RATIO_PRECISION)
    return observed <= wanted if at_most else observed >= wanted


def _ratio(numerator: float, denominator: float) -> float | None:
    """numerator/denominator, None when there is nothing to divide by."""
    return float(numerator) / float(denominator) if denominator else None


def window_index(starts: np.ndarray, window_s: float) -> np.ndarray:
    """Window number of each interval: windows of `window_s` from the first interval."""
    if not len(starts):
        return np.zeros(0, dtype=np.int64)
    # A small tolerance keeps an interval starting exactly on a window edge in that window.
    return np.floor((starts - starts.min()) / window_s + 1e-9).astype(np.int64)


def _per_window(values: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Sum per-interval values into their windows."""
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    return np.bincount(windows, weights=values, minlength=int(windows.max()) + 1) \
        .round().astype(np.int64)


def _windows_report(spec: SloSpec, numerators: np.ndarray, denominators: np.ndarray,
                    source: SloSource, target: float, at_most: bool) -> dict[str, Any] | None:
    """Share of windows (with data) meeting `target`, against `windows_compliant`.

    `worst` is the ratio of the worst window: the highest for an at-most target (error
    rate), the lowest otherwise.
    """
    if spec.window_s is None or spec.windows_compliant is None:
        return None
    windows = window_index(source.interval_starts, spec.window_s)
    pairs = [(n, d) for n, d in zip(_per_window(numerators, windows),
                                    _per_window(denominators, windows)) if d > 0]
    compliant = sum(meets(n, d, target, at_most) for n, d in pairs)
    ratios = [float(n) / float(d) for n, d in pairs]
    return {"window_s": spec.window_s, "windows": len(pairs), "compliant": compliant,
            "share": _ratio(compliant, len(pairs)), "target": spec.windows_compliant,
            "worst": (max if at_most else min)(ratios, default=None),
            "passed": meets(compliant, len(pairs), spec.windows_compliant) if pairs else None}


def _combine(*verdicts: bool | None) -> bool | None:
    """All judged parts must pass; parts without data (None) are not judged."""
    judged = [v for v in verdicts if v is not None]
    return all(judged) if judged else None


def _latency_verdict(spec: SloSpec, objective: LatencyObjective,
                     source: SloSource) -> dict[str, Any]:
    """Share of the ops' latencies at or under the threshold, whole run and per window."""
    under, total = source.under(objective.ops, objective.under_us)
    n_under, n_total = int(under.sum()), int(total.sum())
    whole = meets(n_under, n_total, objective.percentile) if n_total else None
    windows = _windows_report(spec, under, total, source, objective.percentile, False)
    return {"name": objective.title, "ops": list(objective.ops),
            "percentile": round(objective.percentile * 100, 9),
            "threshold_us": objective.under_us, "count": n_total, "under_count": n_under,
            "observed_fraction": _ratio(n_under, n_total),
            "observed_percentile_us": source.percentile_us(objective.ops, objective.percentile),
            "whole_run_passed": whole, "windows": windows,
            "passed": _combine(whole, windows["passed"] if windows else None)}


def _error_verdict(spec: SloSpec, budget: ErrorBudget, source: SloSource) -> dict[str, Any]:
    """Errors over all ops against the budget, with burn rates: every kind (an unexpected
    one too), less timeouts when the budget does not count them."""
    kinds = [k for k in ERROR_KINDS if budget.count_timeouts or k != "timeout"]
    errors = source.counter("errors")
    if not budget.count_timeouts:
        errors = errors - source.counter("errors_timeout")
    count = source.counter("count")
    n_errors, n_count = int(errors.sum()), int(count.sum())
    whole = meets(n_errors, n_count, budget.max, at_most=True) if n_count else None
    windows = _windows_report(spec, errors, count, source, budget.max, True)
    if windows is not None:
        windows["worst_burn_rate"] = _burn_rate(windows["worst"], budget.max)
    observed = _ratio(n_errors, n_count)
    return {"max_fraction": budget.max, "count_timeouts": budget.count_timeouts,
            "kinds": kinds, "errors": n_errors, "count": n_count, "observed_fraction": observed,
            "burn_rate": _burn_rate(observed, budget.max), "whole_run_passed": whole,
            "windows": windows, "passed": _combine(whole, windows["passed"] if windows else None)}


def _burn_rate(observed: float | None, allowed: float) -> float | None:
    """Observed error rate / allowed rate: 1.0 spends the budget exactly, 2.0 twice as fast.

    None when unknown (no ops) or unbounded (errors against a zero budget): JSON has no
    infinity, and the verdict already says FAIL.
    """
    if observed is None or (allowed == 0 and observed > 0):
        return None
    return observed / allowed if allowed else 0.0


def _hit_ratio_verdict(spec: SloSpec, objective: HitRatioObjective,
                       source: SloSource) -> dict[str, Any]:
    """Hits over lookups (hits + misses) of the LOOKUP_OPS, whole run and per window."""
    ops = list(LOOKUP_OPS)
    hits = source.counter("hits", ops)
    lookups = hits + source.counter("misses", ops)
    n_hits, n_lookups = int(hits.sum()), int(lookups.sum())
    whole = meets(n_hits, n_lookups, objective.min) if n_lookups else None
    windows = _windows_report(spec, hits, lookups, source, objective.min, False)
    return {"min": objective.min, "hits": n_hits, "lookups": n_lookups,
            "observed": _ratio(n_hits, n_lookups), "whole_run_passed": whole,
            "windows": windows, "passed": _combine(whole, windows["passed"] if windows else None)}


def evaluate(spec: SloSpec, source: SloSource) -> dict[str, Any]:
    """The verdict of every part of the SLO and the overall one (summary.json's `slo`).

    `passed` is True when every judged part passes, False when one fails, and None
    when nothing could be judged (no op of the SLO ran). A part with windows passes
    when the whole run meets it and enough windows do.
    """
    objectives = [_latency_verdict(spec, o, source) for o in spec.objectives]
    errors = _error_verdict(spec, spec.errors, source) if spec.errors else None
    hit_ratio = _hit_ratio_verdict(spec, spec.hit_ratio, source) if spec.hit_ratio else None
    parts = [o["passed"] for o in objectives] + [p["passed"] for p in (errors, hit_ratio) if p]
    return {"name": spec.name, "passed": _combine(*parts), "objectives": objectives,
            "errors": errors, "hit_ratio": hit_ratio, "window_s": spec.window_s,
            "spec": spec.to_data()}


def failures(verdict: dict[str, Any]) -> list[str]:
    """Why an SLO verdict failed, one sentence per failed part (for the terminal and reports)."""
    reasons = [_reason(o["name"], o, f"only {_pct(o['observed_fraction'], 3)} were")
               for o in verdict["objectives"] if o["passed"] is False]
    errors = verdict.get("errors")
    if errors and errors["passed"] is False:
        burn = errors["burn_rate"]
        reasons.append(_reason(
            f"errors <= {format_percent(errors['max_fraction'])}", errors,
            f"{_pct(errors['observed_fraction'], 3)} failed ("
            + ("zero budget" if burn is None else f"burn rate {burn:.1f}x") + ")"))
    hit_ratio = verdict.get("hit_ratio")
    if hit_ratio and hit_ratio["passed"] is False:
        reasons.append(_reason(f"hit ratio >= {format_percent(hit_ratio['min'])}", hit_ratio,
                               f"only {_pct(hit_ratio['observed'], 2)}"))
    return reasons


def _pct(fraction: float, digits: int) -> str:
    """0.98077 -> `98.077%`."""
    return f"{fraction * 100:.{digits}f}%"


def _reason(name: str, part: dict[str, Any], missed: str) -> str:
    """`<name>: <what was missed over the run>` and/or the window shortfall."""
    head = f"{name}: " + (missed if part["whole_run_passed"] is False else "met over the run")
    return head + _windows_reason(part["windows"])


def _windows_reason(windows: dict[str, Any] | None) -> str:
    """`, 97.0% of 10 s windows compliant (< 99%)` when the window rule failed."""
    if not windows or windows["passed"] is not False:
        return ""
    return (f", {windows['share']:.1%} of {windows['window_s']:g} s windows compliant "
            f"(< {format_percent(windows['target'])})")
