"""Per-op, per-interval latency histograms and counters, built in batch.

Why batched: hdrh's `record_value` is pure Python and costs more than a cache GET on
localhost, so recording per sample would slow the load generator down and distort
what it measures. The hot path (`Recorder.record_sample`) is one list append; `flush` turns
the buffered samples into HdrHistograms with numpy once per interval.

Why wall-clock bins: workers on different hosts merge their intervals by start time,
so an interval is the wall-clock second (`floor(epoch / interval_s) * interval_s`) in
which its samples *completed*. Latency is measured from the intended start (open loop:
no coordinated omission), service time from the actual send; both in whole
microseconds, clamped to [1 us, 60 s], clamped samples counted, never dropped.

Every sample, errors included, goes into the histograms: a timeout belongs in the tail,
and `count == latency.total_count` always holds.

An `Interval` also carries, per source (load process), what the load generator itself
did in it (`loadstats.LoadInterval`): the figures of the validity verdict.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.results.histograms import (add_histogram, decode_histogram, encode_histogram,
                                      histogram_from_values, new_histogram, to_microseconds)
from bench.results.loadstats import LoadInterval

if TYPE_CHECKING:  # only the shape: the analyzer side never loads the executor's imports
    from bench.workload.executor import Sample

#: The length of a reporting interval in seconds: the one value that the recorders bin
#: by, the run directory's hlog grid follows and run.json records (`RunConfig.interval_s`
#: carries it from `bench run` to every Locust process).
INTERVAL_S = 1.0


@dataclass
class OpInterval:
    """One op's histograms and counters for one interval."""

    latency: HdrHistogram = field(default_factory=new_histogram)
    service: HdrHistogram = field(default_factory=new_histogram)
    count: int = 0
    hits: int = 0
    misses: int = 0
    keys: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    clamped: int = 0

    def merge(self, other: OpInterval) -> None:
        """Add another worker's numbers for the same op and interval into this one."""
        add_histogram(self.latency, other.latency)
        add_histogram(self.service, other.service)
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n

    @property
    def error_count(self) -> int:
        """All errors, whatever their kind."""
        return sum(self.errors.values())

    def to_message(self) -> dict[str, Any]:
        """JSON-able form; histograms as their compressed base64 encoding."""
        message: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS}
        message.update(latency=encode_histogram(self.latency),
                       service=encode_histogram(self.service),
                       errors=dict(self.errors))
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> OpInterval:
        """Inverse of `to_message`."""
        return cls(latency=decode_histogram(message["latency"]),
                   service=decode_histogram(message["service"]),
                   errors=dict(message["errors"]),
                   **{name: int(message[name]) for name in _COUNTERS})


_COUNTERS = ("count", "hits", "misses", "keys", "bytes", "clamped")


@dataclass
class Interval:
    """Everything recorded for samples that completed in [start, start + length), and
    each source's load figures for that time (`sources`: source name -> LoadInterval)."""

    start: float
    length: float
    ops: dict[str, OpInterval] = field(default_factory=dict)
    sources: dict[str, LoadInterval] = field(default_factory=dict)

    def merge(self, other: Interval) -> Interval:
        """Add another worker's interval with the same start into this one; returns self."""
        if (self.start, self.length) != (other.start, other.length):
            raise ValueError(f"cannot merge interval {other.start}+{other.length}s "
                             f"into {self.start}+{self.length}s")
        for name, op in other.ops.items():
            self.ops.setdefault(name, OpInterval()).merge(op)
        for source, load in other.sources.items():
            self.sources.setdefault(source, LoadInterval()).merge(load)
        return self

    def to_message(self) -> dict[str, Any]:
        """JSON-able form, for Locust worker -> master messages."""
        return {"start": self.start, "length": self.length,
                "ops": {name: op.to_message() for name, op in self.ops.items()},
                "sources": {name: load.to_message() for name, load in self.sources.items()}}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Interval:
        """Inverse of `to_message`."""
        return cls(start=float(message["start"]), length=float(message["length"]),
                   ops={name: OpInterval.from_message(op)
                        for name, op in message["ops"].items()},
                   sources={name: LoadInterval.from_message(load)
                            for name, load in message["sources"].items()})


def with_load(intervals: list[Interval], pieces: list[tuple[float, LoadInterval]],
              source: str, interval_s: float) -> list[Interval]:
    """A Recorder's closed intervals with a LoadMeter's pieces (flushed at the same time)
    attached as `source`'s; a piece without samples gets an interval of its own."""
    by_start = {interval.start: interval for interval in intervals}
    for start, piece in pieces:
        by_start.setdefault(start, Interval(start, interval_s)).sources[source] = piece
    return [by_start[start] for start in sorted(by_start)]


class Recorder:
    """Buffers samples cheaply and turns them into closed `Interval`s on `flush`.

    Not shared across processes: each Locust worker has one, and the master merges the
    intervals. Thread-safe enough for gevent and for a flushing thread: `flush` only
    removes the samples it has taken.

    Why flush works in two steps: every call turns the samples buffered since the last
    call into numpy columns (cost proportional to those samples), and only a call after
    an interval has ended bins the columns into histograms. A caller that polls a few
    times per interval thus spreads the conversion over the interval instead of
    stalling its event loop once per interval for all of it.
    """

    def __init__(self, interval_s: float = INTERVAL_S,
                 origin: tuple[float, float] | None = None) -> None:
        """`origin` is an (epoch, perf_counter) pair taken at the same instant; it maps
        perf_counter times (monotonic, precise) to wall clock. Default: captured now.
        """
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = float(interval_s)
        wall, perf = origin or (time.time(), time.perf_counter())
        self._epoch_offset = wall - perf
        self._samples: list[tuple[Any, ...]] = []  # a Sample's fields + its origin
        self._append = self._samples.append
        self._chunks: list[_Columns] = []
        self._codes = _NameCodes()
        self._measure_from = -math.inf
        self._open_bin: int | None = None  # the interval open at the last flush
        self._close_at = math.inf  # perf time of the measured window's end

    def record_sample(self, sample: Sample, origin: float) -> None:
        """Buffer one sample whose latency counts from `origin` (its intended start; times
        in perf_counter seconds). The hot path: one append.

        What is buffered is a plain tuple, the sample's fields and then `origin`: the
        cyclic GC stops tracking a tuple of numbers and strings, but never a NamedTuple,
        so keeping the Sample itself would make every collection walk the whole buffer.
        """
        self._append(sample + (origin,))

    def record(self, name: str, intended: float, start: float, end: float, hits: int,
               misses: int, keys: int, error: str | None, nbytes: int) -> None:
        """`record_sample` from loose fields (for callers that hold no Sample)."""
        fields = (name, start, end, hits, misses, keys, error, nbytes)  # a Sample's layout
        self.record_sample(fields, intended)  # type: ignore[arg-type]

    def discard_before(self, perf_time: float) -> None:
        """Drop samples whose intended start is before `perf_time` (end of warm-up)."""
        self._measure_from = perf_time

    def close_at(self, perf_time: float) -> None:
        """Samples completing at or after `perf_time` (the end of the measured window,
        ops still in flight) count in the last interval before it, instead of opening a
        sliver of an interval whose few samples would weigh as much as a full one."""
        self._close_at = perf_time

    def epoch(self, perf_time: float) -> float:
        """Wall-clock epoch seconds of a perf_counter time, on this recorder's origin."""
        return perf_time + self._epoch_offset

    def flush(self, now_perf: float, final: bool = False,
              pause: Callable[[], None] | None = None) -> list[Interval]:
        """Closed intervals, oldest first: those that ended by `now_perf` (all if `final`).

        `pause` is called after each op's histograms of a closed interval are built: a
        caller on an event loop yields there, so that the users due meanwhile are not held
        up for all the ops of an interval at once (about a millisecond each).

        Samples of intervals still open stay buffered (as columns). A sample recorded
        after its interval was already flushed (it completed just before the boundary
        but was recorded after the flush) comes out in a later flush as a second
        `Interval` with the same start: consumers add intervals with equal starts.
        """
        self._convert_new_samples()
        now_bin = math.floor(self.epoch(now_perf) / self.interval_s)
        if not final and now_bin == self._open_bin:
            return []  # no interval ended since the last flush
        self._open_bin = now_bin
        if not self._chunks:
            return []
        columns = _Columns.concat(self._chunks)
        measured = columns.intended >= self._measure_from
        still_open = np.zeros(len(columns), dtype=bool) if final else \
            (columns.bin + 1) * self.interval_s > self.epoch(now_perf)
        keep = np.flatnonzero(measured & still_open)
        self._chunks = [columns.take(keep)] if len(keep) else []
        return columns.intervals(np.flatnonzero(measured & ~still_open), self._codes.names,
                                 self.interval_s, pause)

    def _convert_new_samples(self) -> None:
        taken = len(self._samples)
        if taken:
            batch = self._samples[:taken]
            del self._samples[:taken]
            self._chunks.append(_Columns.from_samples(batch, self._epoch_offset,
                                                      self.interval_s, self._codes,
                                                      self._close_at))


class _NameCodes:
    """A stable integer per op name, so columns from different batches can be joined."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []

    def recode(self, local: dict[str, int]) -> np.ndarray:
        """A table from a batch's codes (name -> index of its first sample in the batch)
        to the stable codes; entries for other indexes are never read."""
        table = np.zeros(max(local.values()) + 1, dtype=np.int64)
        for name, code in local.items():
            if name not in self.codes:
                self.codes[name] = len(self.names)
                self.names.append(name)
            table[code] = self.codes[name]
        return table


@dataclass
class _Columns:
    """Buffered samples as numpy columns, binned by completion interval."""

    intended: np.ndarray
    latency_s: np.ndarray
    service_s: np.ndarray
    bin: np.ndarray
    code: np.ndarray  # stable op-name code (see _NameCodes)
    errors: np.ndarray  # object: error kind or None
    numbers: dict[str, np.ndarray]  # hits, misses, keys, bytes

    def __len__(self) -> int:
        return len(self.intended)

    @classmethod
    def from_samples(cls, batch: list[tuple[Any, ...]], epoch_offset: float, interval_s: float,
                     codes: _NameCodes, close_at: float = math.inf) -> _Columns:
        """Columns are pulled with `fromiter(map(itemgetter))`: several times faster than
        `zip(*batch)` or an object array for batches of 10^5 tuples."""
        size = len(batch)
        column = {name: np.fromiter(map(itemgetter(i), batch), dtype, size)
                  for i, (name, dtype) in enumerate(_FIELDS) if dtype is not None}
        # First-seen code per name with one dict lookup per sample (no string sorting).
        first_seen: dict[str, int] = {}
        local = np.fromiter(map(first_seen.setdefault, map(itemgetter(0), batch),
                                itertools.count()), np.int64, size)
        return cls(intended=column["intended"],
                   latency_s=column["end"] - column["intended"],
                   service_s=column["end"] - column["start"],
                   bin=np.floor((np.minimum(column["end"], close_at - 1e-6) + epoch_offset)
                                / interval_s).astype(np.int64),
                   code=codes.recode(first_seen)[local], errors=column["error"],
                   numbers={name: column[name] for name in ("hits", "misses", "keys", "bytes")})

    @classmethod
    def concat(cls, parts: list[_Columns]) -> _Columns:
        if len(parts) == 1:
            return parts[0]
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts])
                      for name in _ARRAYS},
                   numbers={name: np.concatenate([p.numbers[name] for p in parts])
                            for name in parts[0].numbers})

    def take(self, rows: np.ndarray) -> _Columns:
        return _Columns(**{name: getattr(self, name)[rows] for name in _ARRAYS},
                        numbers={name: col[rows] for name, col in self.numbers.items()})

    def intervals(self, rows: np.ndarray, names: list[str], interval_s: float,
                  pause: Callable[[], None] | None = None) -> list[Interval]:
        """Intervals (oldest first) built from the given rows, one OpInterval per name;
        `pause()` after each (see Recorder.flush)."""
        by_start: dict[int, Interval] = {}
        for group in self._groups(rows):
            first = group[0]
            k = int(self.bin[first])
            interval = by_start.setdefault(k, Interval(start=k * interval_s, length=interval_s))
            interval.ops[names[self.code[first]]] = self._op_interval(group)
            if pause is not None:
                pause()
        return [by_start[k] for k in sorted(by_start)]

    def _groups(self, rows: np.ndarray) -> list[np.ndarray]:
        """Split `rows` into groups of equal (bin, name), by one stable sort."""
        if not len(rows):
            return []
        bins = self.bin[rows]
        key = (bins - bins.min()) * (int(self.code.max()) + 1) + self.code[rows]
        order = np.argsort(key, kind="stable")
        return np.split(rows[order], np.flatnonzero(np.diff(key[order])) + 1)

    def _op_interval(self, rows: np.ndarray) -> OpInterval:
        """Histograms and counters of one op in one interval."""
        latency, latency_clamped = to_microseconds(self.latency_s[rows])
        service, service_clamped = to_microseconds(self.service_s[rows])
        errors = self.errors[rows]
        return OpInterval(
            latency=histogram_from_values(latency), service=histogram_from_values(service),
            count=len(rows), errors=dict(Counter(errors[np.not_equal(errors, None)])),
            clamped=int(np.count_nonzero(latency_clamped | service_clamped)),
            **{name: int(column[rows].sum()) for name, column in self.numbers.items()})


# Buffered tuple layout (a Sample's fields, then the origin: Recorder.record_sample) and
# column dtypes; names (None) are coded apart, see _NameCodes.
_FIELDS = (("name", None), ("start", np.float64), ("end", np.float64), ("hits", np.int64),
           ("misses", np.int64), ("keys", np.int64), ("error", object), ("bytes", np.int64),
           ("intended", np.float64))
_ARRAYS = ("intended", "latency_s", "service_s", "bin", "code", "errors")
