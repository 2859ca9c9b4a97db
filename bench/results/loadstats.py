"""What the load generator itself did, per interval: the figures of the validity verdict.

Each load process has one `LoadMeter` beside its Recorder. The pacing loops tell it of
every op they send (`record_send((intended, sent, ready))`, one list append: the hot
path) and keep its `parked` and `in_flight` counts up to date; a watchdog
greenlet on the Locust side (`bench.loadgen.users`) calls `sample` every few
milliseconds with how late it woke (event-loop blocking) and the process's CPU times.
`flush` turns that into one `LoadInterval` per closed interval, on the recorder's
wall-clock grid, and the `Interval` messages carry them to the run directory keyed by
their source (loadgen.csv, hlog tag `_lag:<source>`); `bench.analysis.validity` judges
them against `bench.scenario.validity`'s thresholds.

Only the measured window counts (`window`): an op intended in it counts in the interval
of its intended start, a send in the interval in which it went out; sends, stalls and
CPU outside the window are dropped. An op sent after its interval was flushed (a user
catching up on a backlog) comes out in a later flush as a second piece with the same
start: consumers add pieces with equal starts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.results.histograms import (add_histogram, decode_histogram, encode_histogram,
                                      histogram_from_values, new_histogram, to_microseconds)


@dataclass
class LoadInterval:
    """One load process's own figures for one interval."""

    lag: HdrHistogram = field(default_factory=new_histogram)  # send lag, us (open loop)
    intended: int = 0  # ops whose intended start is in the interval
    sent: int = 0  # ops whose first call went out in the interval
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    stall_max_us: int = 0  # the watchdog's latest wake-up
    parked: int = 0  # most ops parked at once (waiting client-side), as sampled
    in_flight: int = 0  # most calls in flight at once, as sampled

    def merge(self, other: LoadInterval) -> None:
        """Add a later piece of the same source and interval: counts add, maxima max."""
        add_histogram(self.lag, other.lag)
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in _MAXIMA:
            setattr(self, name, max(getattr(self, name), getattr(other, name)))

    def to_message(self) -> dict[str, Any]:
        """JSON-able form; the histogram as its compressed base64 encoding."""
        return {"lag": encode_histogram(self.lag),
                **{name: getattr(self, name) for name in (*_SUMS, *_MAXIMA)}}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> LoadInterval:
        """Inverse of `to_message`."""
        return cls(lag=decode_histogram(message["lag"]),
                   intended=int(message["intended"]), sent=int(message["sent"]),
                   cpu_user_s=float(message["cpu_user_s"]),
                   cpu_system_s=float(message["cpu_system_s"]),
                   **{name: int(message[name]) for name in _MAXIMA})


_SUMS = ("intended", "sent", "cpu_user_s", "cpu_system_s")
_MAXIMA = ("stall_max_us", "parked", "in_flight")


def send_lag(intended: np.ndarray, sent: np.ndarray, ready: np.ndarray) -> np.ndarray:
    """Seconds an op went out later than it could have: after its intended start, or
    after its user was ready to send it if that is later; never below 0. NaN where
    `ready` is NaN (closed loop: no schedule to be late for)."""
    return np.maximum(sent - np.maximum(intended, ready), 0.0)


class LoadMeter:
    """Gathers one process's load figures and cuts them into closed `LoadInterval`s.

    `record_send((intended, sent, ready))` notes one op's first call (perf_counter
    seconds: when it was due, when it went out, when its user was ready to send it; NaN
    ready in a closed loop); it is a bound `list.append`, the cheapest call there is,
    since the pacing loops make it once per op. `parked` and `in_flight` are plain
    counters they increment and decrement (greenlets are cooperative: no lock);
    `sample` reads them.
    """

    def __init__(self, interval_s: float, origin: tuple[float, float] | None = None) -> None:
        """`interval_s` and `origin` (an (epoch, perf_counter) pair taken at the same
        instant) as for the Recorder: pass the same ones (`recorder.INTERVAL_S`, which
        this module cannot import: the recorder imports it), so both cut intervals at
        the same instants."""
        self.interval_s = float(interval_s)
        wall, perf = origin or (time.time(), time.perf_counter())
        self._epoch_offset = wall - perf
        self.parked = 0
        self.in_flight = 0
        self._sends: list[tuple[float, float, float]] = []
        self.record_send: Callable[[tuple[float, float, float]], None] = self._sends.append
        self._from, self._to = -math.inf, math.inf
        self._pieces: dict[int, LoadInterval] = {}
        self._cpu: tuple[float, float] | None = None

    def window(self, start_perf: float, end_perf: float) -> None:
        """Count only what happens in [start_perf, end_perf) (the measured window)."""
        self._from, self._to = start_perf, end_perf

    def sample(self, now_perf: float, stall_s: float, cpu_user_s: float,
               cpu_system_s: float) -> None:
        """The watchdog's tick: how late it woke, and the process's CPU times so far."""
        last, self._cpu = self._cpu, (cpu_user_s, cpu_system_s)
        if not self._from <= now_perf < self._to:
            return
        piece = self._piece(self._bin(now_perf))
        piece.stall_max_us = max(piece.stall_max_us, math.ceil(max(stall_s, 0.0) * 1e6))
        piece.parked = max(piece.parked, self.parked)
        piece.in_flight = max(piece.in_flight, self.in_flight)
        if last is not None:
            piece.cpu_user_s += cpu_user_s - last[0]
            piece.cpu_system_s += cpu_system_s - last[1]

    def flush(self, now_perf: float, final: bool = False) -> list[tuple[float, LoadInterval]]:
        """(start epoch, piece) of every interval that ended by `now_perf` (all if
        `final`), oldest first; what is still open stays."""
        self._take_sends()
        now_bin = math.floor(self._epoch(now_perf) / self.interval_s)
        closed = sorted(k for k in self._pieces if final or k < now_bin)
        return [(k * self.interval_s, self._pieces.pop(k)) for k in closed]

    def _take_sends(self) -> None:
        """Bin the sends recorded since the last flush into their pieces."""
        taken = len(self._sends)
        if not taken:
            return
        intended, sent, ready = np.array(self._sends[:taken], dtype=np.float64).T
        del self._sends[:taken]
        lag = send_lag(intended, sent, ready)
        in_window = (intended >= self._from) & (intended < self._to)
        for k, n in zip(*np.unique(self._bin(intended[in_window]), return_counts=True)):
            self._piece(int(k)).intended += int(n)
        went = (sent >= self._from) & (sent < self._to)
        bins = self._bin(sent[went])
        lag = lag[went]
        for k in np.unique(bins):
            piece = self._piece(int(k))
            in_bin = bins == k
            piece.sent += int(np.count_nonzero(in_bin))
            lags = lag[in_bin & ~np.isnan(lag)]
            if len(lags):
                add_histogram(piece.lag, histogram_from_values(to_microseconds(lags)[0]))

    def _piece(self, k: int) -> LoadInterval:
        return self._pieces.setdefault(k, LoadInterval())

    def _epoch(self, perf: Any) -> Any:
        return perf + self._epoch_offset

    def _bin(self, perf: Any) -> Any:
        """Interval number(s) of perf_counter time(s): floor(epoch / interval_s)."""
        bins = np.floor(self._epoch(perf) / self.interval_s)
        return bins.astype(np.int64) if isinstance(bins, np.ndarray) else int(bins)
