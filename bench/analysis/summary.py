"""summary.json as types: per op (`OpSummary`), the whole run (`Summary`), and its verdict.

Why types: the terminal, the report, the Prometheus export and `bench run` all read
the summary; with attributes a misspelt key is an AttributeError where it is made,
not a None three modules later. The field names are summary.json's keys, so the one
serializer (`Summary.to_json` / `Summary.from_json`) is the file's definition:

    format, scenario, started, ended, duration_s, target, completed, ops, total, slo,
    validity

Latency tables (`latency_us`, `service_us`) stay mappings keyed p50, p90, p99, p99.9,
p99.99, max, mean: readers pick columns from them by those names (`PERCENTILE_KEYS`).
`validity` is whether the run measured the cache at all (`bench.analysis.validity`;
None for a run directory without loadgen.csv, and in summary.json files written before
it existed). The analyzer builds a Summary (`bench.analysis.runs.summarize`); reading
summary.json back checks its format like run.json's (`bench.results.rundir.read_versioned`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from bench.analysis.validity import Validity
from bench.analysis.verdicts import Verdict
from bench.results.rundir import JsonRecord, RunTarget, optional

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

    def to_json(self) -> dict[str, Any]:
        """The summary.json object, `format` first (plain numbers and strings, ready for
        json.dumps)."""
        return {"format": SUMMARY_FORMATS[-1], **super().to_json(),
                "target": optional(RunTarget.to_json, self.target)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """From a summary.json object whose format was checked."""
        return cls.from_fields(data, target=optional(RunTarget.from_json, data.get("target")),
                               ops={op: OpSummary.from_json(o) for op, o in data["ops"].items()},
                               total=OpSummary.from_json(data["total"]),
                               slo=optional(Verdict.from_json, data.get("slo")),
                               validity=optional(Validity.from_json, data.get("validity")))
