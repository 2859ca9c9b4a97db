"""The validity verdict: is a run a measurement of the cache, or of a load generator that
fell behind its schedule?

The thresholds are bench.scenario.validity's (defaults, the scenario's `validity:`
block, the SLO's); this module judges each load process (a *source*) on its own figures
over the measured window and gives summary.json's `validity` block as a `Validity`
record, whose field names are the block's keys:

    valid, reasons, advice, mode, thresholds {min_rate, max_send_lag_p99_us, max_cpu},
    asked_rate, achieved_rate, rate_ratio, intended, sent, send_lag_us, cpu_max,
    cpu_max_source, stall_max_us, parked_max, in_flight_max, sources {source: ...}

The top-level figures are over all sources (rates and counts summed, send lag from the
merged histograms, CPU and the other maxima those of the worst source, which
`cpu_max_source` names); each of `sources` has its own figures and verdict. The run is
invalid when any source is, and its reasons name the source when there are several.

The analyzer hands the figures in through the small `LoadSource` protocol, as it does
the SLO's through `verdicts.SloSource`, so a verdict needs no run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Self

import numpy as np

from bench.results.histograms import Layout, latency_stats
from bench.results.rundir import JsonRecord
from bench.scenario.validity import ValiditySpec
from bench.units import format_ms, format_percent

#: What an INVALID verdict tells the user to do.
ADVICE = ("try a lower --rate, or spread the load: --processes N (-1: one per core) or "
          "more `bench worker` machines")


# --- one source ---------------------------------------------------------------------


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
    `spec` must be resolved (every field set, see `bench.scenario.validity.resolve`).
    """
    who = f"process {source}: " if source else ""
    found = []
    if open_loop and figures.intended and figures.sent < spec.min_rate * figures.intended:
        found.append(f"{who}sent {format_percent(figures.sent / figures.intended, 1)} of the "
                     f"ops asked ({figures.sent:,} of {figures.intended:,}), under "
                     f"{format_percent(spec.min_rate)}")
    lag = figures.send_lag_p99_us
    if open_loop and lag is not None and lag > spec.max_send_lag_p99_us:
        found.append(f"{who}send lag p99 {format_ms(lag)} ms, over "
                     f"{format_ms(spec.max_send_lag_p99_us)} ms")
    if figures.cpu is not None and figures.cpu > spec.max_cpu:
        found.append(f"{who}CPU-bound at {format_percent(figures.cpu, 0)} of a core, over "
                     f"{format_percent(spec.max_cpu)}")
    return found


# --- the records of summary.json ------------------------------------------------------


@dataclass(frozen=True)
class ValidityThresholds(JsonRecord):
    """The thresholds the run was judged by (resolved: every one set)."""

    min_rate: float
    max_send_lag_p99_us: int
    max_cpu: float


@dataclass(frozen=True)
class SourceValidity(JsonRecord):
    """One load process over the measured window: its figures and its own verdict."""

    valid: bool
    reasons: list[str]
    intended: int
    sent: int
    rate_ratio: float | None  # sent / intended (open loop)
    achieved_rate: float | None  # ops/s sent
    send_lag_us: dict[str, float | None] | None  # p50 ... max, mean; None without lag data
    cpu: float | None  # of one core, averaged over the window
    cpu_user_s: float
    cpu_system_s: float
    stall_max_us: int  # the longest event-loop stall (watchdog wake-up)
    parked_max: int
    in_flight_max: int


@dataclass(frozen=True)
class Validity(JsonRecord):
    """summary.json `validity`: the run's verdict and figures, and every source's."""

    valid: bool
    reasons: list[str]
    advice: str | None  # what to do, when invalid
    mode: str  # open | closed
    thresholds: ValidityThresholds
    asked_rate: float | None  # open loop: the rate the schedule asked for
    achieved_rate: float | None
    rate_ratio: float | None
    intended: int
    sent: int
    send_lag_us: dict[str, float | None] | None
    cpu_max: float | None
    cpu_max_source: str
    stall_max_us: int
    parked_max: int
    in_flight_max: int
    sources: dict[str, SourceValidity]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls.from_fields(
            data, thresholds=ValidityThresholds.from_json(data["thresholds"]),
            sources={name: SourceValidity.from_json(s) for name, s in data["sources"].items()})


# --- the verdict ----------------------------------------------------------------------


class LoadSource(Protocol):
    """What a validity verdict needs from a run: each source's load figures over the
    window (loadgen.csv columns summed, maxima for stall_max_us, parked, in_flight) and
    its send-lag histogram."""

    loadgen: dict[str, dict[str, float]]
    layout: Layout

    @property
    def duration_s(self) -> float:
        """The measured window's length in seconds."""

    def lag_counts(self, source: str | None = None) -> np.ndarray:
        """Dense send-lag counts of one source (None: all merged); zeros without any."""


def judge(spec: ValiditySpec, source: LoadSource, open_loop: bool,
          asked_rate: float | None) -> Validity | None:
    """summary.json's `validity` block; None for a run without load figures (a run
    directory without loadgen.csv: nothing to judge by).

    `spec` is resolved (`bench.scenario.validity.resolve`); `asked_rate` is the open-loop
    rate of the whole run (all its directories).
    """
    if not source.loadgen:
        return None
    named = len(source.loadgen) > 1
    sources = {name: _source_validity(source, name, spec, open_loop, named)
               for name in sorted(source.loadgen)}
    found = [reason for s in sources.values() for reason in s.reasons]
    intended = sum(s.intended for s in sources.values())
    sent = sum(s.sent for s in sources.values())
    lag = source.lag_counts()
    cpu_source = max(sources, key=lambda name: sources[name].cpu or 0.0)
    duration = source.duration_s
    return Validity(
        valid=not found, reasons=found, advice=ADVICE if found else None,
        mode="open" if open_loop else "closed",
        thresholds=ValidityThresholds(min_rate=spec.min_rate,
                                      max_send_lag_p99_us=spec.max_send_lag_p99_us,
                                      max_cpu=spec.max_cpu),
        asked_rate=asked_rate if open_loop else None,
        achieved_rate=sent / duration if duration else None,
        rate_ratio=sent / intended if open_loop and intended else None,
        intended=intended, sent=sent,
        send_lag_us=latency_stats(lag, source.layout) if lag.any() else None,
        cpu_max=sources[cpu_source].cpu, cpu_max_source=cpu_source,
        stall_max_us=max(s.stall_max_us for s in sources.values()),
        parked_max=max(s.parked_max for s in sources.values()),
        in_flight_max=max(s.in_flight_max for s in sources.values()),
        sources=sources)


def _source_validity(source: LoadSource, name: str, spec: ValiditySpec, open_loop: bool,
                     named: bool) -> SourceValidity:
    """One source's figures over the window and its own verdict (its reasons name it
    when `named`)."""
    totals, duration = source.loadgen[name], source.duration_s
    lag = source.lag_counts(name)
    lag_stats = latency_stats(lag, source.layout) if lag.any() else None
    intended, sent = int(totals["intended"]), int(totals["sent"])
    user, system = float(totals["cpu_user_s"]), float(totals["cpu_system_s"])
    cpu = (user + system) / duration if duration else None
    judged = SourceFigures(intended=intended, sent=sent, cpu=cpu,
                           send_lag_p99_us=lag_stats["p99"] if lag_stats else None)
    found = reasons(judged, spec, open_loop, name if named else None)
    return SourceValidity(
        valid=not found, reasons=found, intended=intended, sent=sent,
        rate_ratio=sent / intended if open_loop and intended else None,
        achieved_rate=sent / duration if duration else None,
        send_lag_us=lag_stats, cpu=cpu, cpu_user_s=user, cpu_system_s=system,
        stall_max_us=int(totals["stall_max_us"]),
        parked_max=int(totals["parked"]), in_flight_max=int(totals["in_flight"]))


def is_invalid(validity: Validity | None) -> bool:
    """True when the run was judged and is not a measurement of the cache (exit 4)."""
    return validity is not None and not validity.valid


def headline(validity: Validity | None) -> str | None:
    """`INVALID: the load generator fell behind: why. What to do.`, None unless invalid.

    The terminal, the report, `bench analyze` and `bench compare` all lead with it.
    """
    if not is_invalid(validity):
        return None
    return (f"INVALID: the load generator fell behind: {'; '.join(validity.reasons)}. "
            f"It measured itself, not the cache; {ADVICE}.")
