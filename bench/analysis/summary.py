"""summary.json as types: per op (`OpSummary`), the whole run (`Summary`), and its verdict.

Why types: the terminal, the report, the Prometheus export and `bench run` all read
the summary; with attributes a misspelt key is an AttributeError where it is made,
not a None three modules later. The field names are summary.json's keys, so the one
serializer (`Summary.to_json` / `Summary.from_json`) is the file's definition:

    format, scenario, started, ended, duration_s, target, completed, ops, total, slo,
    validity
    [phases]   a run with faults: before / during / after them (`Phases`)
    [gutter]   mcrouter-style routing with a gutter pool: what it served (`GutterFigures`)

The two in brackets are there only for runs that have them.

Latency tables (`latency_us`, `service_us`) stay mappings keyed p50, p90, p99, p99.9,
p99.99, max, mean: readers pick columns from them by those names (`PERCENTILE_KEYS`).
`validity` is whether the run measured the cache at all (`bench.analysis.validity`;
None for a run directory without loadgen.csv, and in summary.json files written before
it existed). The analyzer builds a Summary (`bench.analysis.runs.summarize`); reading
summary.json back checks its format like run.json's (`bench.results.rundir.read_versioned`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Self

from bench.analysis.validity import Validity
from bench.analysis.verdicts import Verdict
from bench.results.rundir import FaultWindow, JsonRecord, RunTarget, optional

#: The summary.json formats this harness reads; it writes the last.
SUMMARY_FORMATS = (1,)


@dataclass(frozen=True)
class OpSummary(JsonRecord):
    """One op, or the total over all ops, over the measured window."""

    count: int
    errors: int
    errors_by_kind: dict[str, int]
    hits: int | None  # None for an op that does not look keys up
    misses: int | None
    hit_ratio: float | None
    keys: int
    throughput: float | None  # ops/s over the measured window
    bytes: int
    latency_us: dict[str, float | None]  # from the intended start
    service_us: dict[str, float | None]  # from the actual send


@dataclass(frozen=True)
class PhaseFigures(JsonRecord):
    """One phase around a run's faults (bench.analysis.phases), over its whole intervals."""

    duration_s: float
    count: int
    errors: int
    errors_by_kind: dict[str, int]
    hit_ratio: float | None  # of the lookups; None without any
    latency_us: dict[str, float | None]  # all ops merged, from the intended start


@dataclass(frozen=True)
class FaultTiming(JsonRecord):
    """Seconds from the first fault's start to what bench.analysis.phases names; None
    when it was not seen (no error, no TKO, not recovered by the end of the run)."""

    first_error_s: float | None = None
    tko_s: float | None = None
    p99_recovered_s: float | None = None
    hit_ratio_recovered_s: float | None = None

    def items(self) -> list[tuple[str, float | None]]:
        """(name, seconds) in summary.json's order, for tables."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True)
class Phases(JsonRecord):
    """summary.json `phases`: the fault windows (run.json `faults`), the figures before,
    during and after them (None for a phase without an interval) and the recovery times."""

    windows: list[FaultWindow]
    before: PhaseFigures | None
    during: PhaseFigures | None
    after: PhaseFigures | None
    timing: FaultTiming

    def phase(self, name: str) -> PhaseFigures | None:
        """`before`, `during` or `after` by name (bench.analysis.phases.PHASES)."""
        return {"before": self.before, "during": self.during, "after": self.after}[name]

    def to_json(self) -> dict[str, Any]:
        return {"windows": [window.to_json() for window in self.windows],
                **{name: optional(PhaseFigures.to_json, figures) for name, figures in
                   (("before", self.before), ("during", self.during), ("after", self.after))},
                "timing": self.timing.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(windows=[FaultWindow.from_json(w) for w in data["windows"]],
                   **{name: optional(PhaseFigures.from_json, data.get(name))
                      for name in ("before", "during", "after")},
                   timing=FaultTiming.from_json(data["timing"]))


@dataclass(frozen=True)
class PoolFigures(JsonRecord):
    """Get hits and misses of a pool's servers over the run, from their own counters."""

    hits: int
    misses: int
    hit_ratio: float | None  # None without a lookup


@dataclass(frozen=True)
class GutterFigures(JsonRecord):
    """summary.json `gutter` (bench.analysis.routing): what the gutter pool served, and
    the main pool beside it."""

    gutter: PoolFigures
    main: PoolFigures

    def pools(self) -> list[tuple[str, PoolFigures]]:
        """(name, figures) in summary.json's order, for tables."""
        return [("gutter", self.gutter), ("main", self.main)]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(gutter=PoolFigures.from_json(data["gutter"]),
                   main=PoolFigures.from_json(data["main"]))


@dataclass(frozen=True)
class Summary(JsonRecord):
    """summary.json: what ran (from run.json), per-op and total numbers, the SLO verdict,
    the validity verdict."""

    scenario: str | None
    started: str | None
    ended: str | None
    duration_s: float
    target: RunTarget | None
    completed: bool
    ops: dict[str, OpSummary]
    total: OpSummary
    slo: Verdict | None  # None without an SLO
    validity: Validity | None = None  # None: not judged (no load generator figures)
    phases: Phases | None = None  # a run with faults
    gutter: GutterFigures | None = None  # a memcached pool with a gutter pool

    def to_json(self) -> dict[str, Any]:
        """The summary.json object, `format` first (plain numbers and strings, ready for
        json.dumps); `phases` and `gutter` only for a run that has them."""
        data = {"format": SUMMARY_FORMATS[-1], **super().to_json(),
                "target": optional(RunTarget.to_json, self.target)}
        for name, record in (("phases", self.phases), ("gutter", self.gutter)):
            if record is None:
                del data[name]
            else:
                data[name] = record.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """From a summary.json object whose format was checked."""
        return cls.from_fields(data, target=optional(RunTarget.from_json, data.get("target")),
                               ops={op: OpSummary.from_json(o) for op, o in data["ops"].items()},
                               total=OpSummary.from_json(data["total"]),
                               slo=optional(Verdict.from_json, data.get("slo")),
                               validity=optional(Validity.from_json, data.get("validity")),
                               phases=optional(Phases.from_json, data.get("phases")),
                               gutter=optional(GutterFigures.from_json, data.get("gutter")))
