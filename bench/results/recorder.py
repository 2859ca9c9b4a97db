"""Per-op, per-interval latency histograms and counters, built in batch.

Why batched: hdrh's `record_value` is pure Python and costs more than a cache GET on
localhost, so recording per sample would slow the load generator down and distort
what it measures. The hot path (`Recorder.record`) is one list append; `flush` turns
the buffered samples into HdrHistograms with numpy once per interval.

Why wall-clock bins: workers on different hosts merge their intervals by start time,
so an interval is the wall-clock second (`floor(epoch / interval_s) * interval_s`) in
which its samples *completed*. Latency is measured from the intended start (open loop:
no coordinated omission), service time from the actual send; both in whole
microseconds, clamped to [1 us, 60 s], clamped samples counted, never dropped.

Every sample, errors included, goes into the histograms: a timeout belongs in the tail,
and `count == latency.total_count` always holds.
"""

from __future__ import annotations

import itertools
import math
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3
# Float noise in (end - start) * 1e6 is far below 1 ns; without this tolerance an exact
# 100 us difference computed as 100.0000000001 would round up to 101 us.
_ROUNDING_TOLERANCE_US = 1e-3

# A buffered sample: (name, intended, start, end, hits, misses, keys, error, nbytes),
# times in perf_counter seconds.
_Sample = tuple[str, float, float, float, int, int, int, "str | None", int]


def new_histogram() -> HdrHistogram:
    """An empty histogram with the harness-wide range: 1 us .. 60 s, 3 significant digits.

    hdrh's histogram and its encoder refer to each other. That cycle is made weak here,
    so a histogram is freed as soon as nothing uses it: the Locust processes collect
    cycles rarely (users._quiet_garbage_collector), and each interval's histograms
    (about 140 KB each, two per op) piled up until a full collection, growing RSS by
    megabytes a second.
    """
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    histogram.encoder.histogram = weakref.proxy(histogram)
    return histogram


def counts_array(histogram: HdrHistogram) -> np.ndarray:
    """A writable numpy view (uint64, no copy) of the histogram's counts.

    Lets the recorder fill and the analyzer read histograms without Python loops.
    """
    return np.ctypeslib.as_array(histogram.counts)


@dataclass(frozen=True)
class Layout:
    """The value range each counts-array index stands for, for one histogram configuration."""

    lowest: np.ndarray   # lowest equivalent value of each index (us)
    highest: np.ndarray  # highest equivalent value: what hdrh reports for a percentile
    median: np.ndarray   # middle of the range: what hdrh's mean uses
    histogram: HdrHistogram = field(repr=False)  # an empty one, to map values to indexes

    @property
    def counts_len(self) -> int:
        """Length of a dense counts array."""
        return len(self.lowest)

    def index_of(self, value_us: int) -> int:
        """Counts index holding `value_us` (values above the range map to the last index)."""
        return min(self.histogram.get_counts_array_index(int(value_us)), self.counts_len - 1)


@lru_cache(maxsize=8)
def layout_for(lowest: int, highest: int, significant_figures: int) -> Layout:
    """Layout of `HdrHistogram(lowest, highest, significant_figures)`, vectorised from hdrh's
    `get_value_from_index` and `get_highest_equivalent_value`."""
    hist = HdrHistogram(lowest, highest, significant_figures)
    index = np.arange(hist.counts_len, dtype=np.int64)
    bucket = (index >> hist.sub_bucket_half_count_magnitude) - 1
    sub_bucket = (index & (hist.sub_bucket_half_count - 1)) + hist.sub_bucket_half_count
    first = bucket < 0
    sub_bucket[first] -= hist.sub_bucket_half_count
    bucket[first] = 0
    low = sub_bucket << (bucket + hist.unit_magnitude)
    size = np.int64(1) << (bucket + hist.unit_magnitude)
    return Layout(lowest=low, highest=low + size - 1, median=low + (size >> 1), histogram=hist)


def default_layout() -> Layout:
    """The harness-wide layout: 1 us .. 60 s, 3 significant digits (recorder.new_histogram)."""
    hist = new_histogram()
    return layout_for(hist.lowest_trackable_value, hist.highest_trackable_value,
                      hist.significant_figures)


def sparse_counts(histogram: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """(non-zero indexes, their counts) of a histogram, read through a numpy view."""
    dense = counts_array(histogram)
    idx = np.flatnonzero(dense)
    return idx, dense[idx].astype(np.int64)


def recorded_values(histogram: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """(lowest equivalent value in us, count) of every non-zero bucket, without a Python loop.

    hdrh's `get_recorded_iterator` walks all 17,408 counters in Python; this reads them
    through numpy, for consumers that need a histogram's shape once per interval.
    """
    idx, cnt = sparse_counts(histogram)
    return default_layout().lowest[idx], cnt


def counts_indexes(histogram: HdrHistogram, values: np.ndarray) -> np.ndarray:
    """Counts-array index of each value: hdrh's `_counts_index_for`, vectorised.

    `values` must be integers in the histogram's range (so below 2**53, where float64
    is exact and `frexp` gives the bit length).
    """
    values = np.asarray(values, dtype=np.int64)
    bit_length = np.frexp((values | histogram.sub_bucket_mask).astype(np.float64))[1]
    bucket = bit_length.astype(np.int64) - histogram.unit_magnitude \
        - (histogram.sub_bucket_half_count_magnitude + 1)
    sub_bucket = values >> (bucket + histogram.unit_magnitude)
    return ((bucket + 1) << histogram.sub_bucket_half_count_magnitude) \
        + sub_bucket - histogram.sub_bucket_half_count


def histogram_from_values(values_us: np.ndarray) -> HdrHistogram:
    """A histogram holding `values_us` (ints within [1 us, 60 s]); equal to record_value each."""
    histogram = new_histogram()
    if len(values_us):
        values = np.asarray(values_us, dtype=np.int64)
        index = counts_indexes(histogram, values)
        counts_array(histogram)[:] += np.bincount(index, minlength=histogram.counts_len) \
            .astype(np.uint64)
        histogram.total_count = len(values)
        histogram.min_value = int(values.min())
        histogram.max_value = int(values.max())
    return histogram


def add_histogram(target: HdrHistogram, other: HdrHistogram) -> None:
    """Add `other` into `target` (same layout); unlike hdrh's `add`, keeps the min right.

    hdrh's `add` takes `min(target.get_min_value(), ...)`, which is 0 for an empty target,
    so a merged histogram would report a minimum of 0 us.
    """
    if (target.counts_len, target.unit_magnitude, target.sub_bucket_count) != \
            (other.counts_len, other.unit_magnitude, other.sub_bucket_count):
        raise ValueError("cannot add histograms with different ranges or precision")
    if other.total_count:
        counts_array(target)[:] += counts_array(other)
        target.total_count += other.total_count
        target.min_value = min(target.min_value, other.min_value)
        target.max_value = max(target.max_value, other.max_value)


def to_microseconds(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Durations rounded up to whole microseconds and clamped to the histogram range.

    Returns (values, clamped_mask). Rounding up: a 0.4 us operation took *some* time,
    so it is 1 us, never 0; HdrHistogram values are "at most" anyway.
    """
    raw = np.ceil(np.asarray(seconds, dtype=np.float64) * 1e6 - _ROUNDING_TOLERANCE_US)
    clamped = (raw < LOWEST_US) | (raw > HIGHEST_US)
    return np.clip(raw, LOWEST_US, HIGHEST_US).astype(np.int64), clamped


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
        message.update(latency=self.latency.encode().decode("ascii"),
                       service=self.service.encode().decode("ascii"),
                       errors=dict(self.errors))
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> OpInterval:
        """Inverse of `to_message`."""
        return cls(latency=HdrHistogram.decode(message["latency"]),
                   service=HdrHistogram.decode(message["service"]),
                   errors=dict(message["errors"]),
                   **{name: int(message[name]) for name in _COUNTERS})


_COUNTERS = ("count", "hits", "misses", "keys", "bytes", "clamped")


@dataclass
class Interval:
    """Everything recorded for samples that completed in [start, start + length)."""

    start: float
    length: float
    ops: dict[str, OpInterval] = field(default_factory=dict)

    def merge(self, other: Interval) -> Interval:
        """Add another worker's interval with the same start into this one; returns self."""
        if (self.start, self.length) != (other.start, other.length):
            raise ValueError(f"cannot merge interval {other.start}+{other.length}s "
                             f"into {self.start}+{self.length}s")
        for name, op in other.ops.items():
            self.ops.setdefault(name, OpInterval()).merge(op)
        return self

    def to_message(self) -> dict[str, Any]:
        """JSON-able form, for Locust worker -> master messages."""
        return {"start": self.start, "length": self.length,
                "ops": {name: op.to_message() for name, op in self.ops.items()}}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Interval:
        """Inverse of `to_message`."""
        return cls(start=float(message["start"]), length=float(message["length"]),
                   ops={name: OpInterval.from_message(op)
                        for name, op in message["ops"].items()})


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

    def __init__(self, interval_s: float = 1.0,
                 origin: tuple[float, float] | None = None) -> None:
        """`origin` is an (epoch, perf_counter) pair taken at the same instant; it maps
        perf_counter times (monotonic, precise) to wall clock. Default: captured now.
        """
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = float(interval_s)
        wall, perf = origin or (time.time(), time.perf_counter())
        self._epoch_offset = wall - perf
        self._samples: list[_Sample] = []
        self._append = self._samples.append
        self._chunks: list[_Columns] = []
        self._codes = _NameCodes()
        self._measure_from = -math.inf
        self._open_bin: int | None = None  # the interval open at the last flush
        self._close_at = math.inf  # perf time of the measured window's end

    def record(self, name: str, intended: float, start: float, end: float, hits: int,
               misses: int, keys: int, error: str | None, nbytes: int) -> None:
        """Buffer one sample (times in perf_counter seconds). The hot path: one append."""
        self._append((name, intended, start, end, hits, misses, keys, error, nbytes))

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

    def flush(self, now_perf: float, final: bool = False) -> list[Interval]:
        """Closed intervals, oldest first: those that ended by `now_perf` (all if `final`).

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
                                 self.interval_s)

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
    def from_samples(cls, batch: list[_Sample], epoch_offset: float, interval_s: float,
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

    def intervals(self, rows: np.ndarray, names: list[str], interval_s: float) -> list[Interval]:
        """Intervals (oldest first) built from the given rows, one OpInterval per name."""
        by_start: dict[int, Interval] = {}
        for group in self._groups(rows):
            first = group[0]
            k = int(self.bin[first])
            interval = by_start.setdefault(k, Interval(start=k * interval_s, length=interval_s))
            interval.ops[names[self.code[first]]] = self._op_interval(group)
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


# Buffered tuple layout and column dtypes; names (None) are coded apart, see _NameCodes.
_FIELDS = (("name", None), ("intended", np.float64), ("start", np.float64),
           ("end", np.float64), ("hits", np.int64), ("misses", np.int64),
           ("keys", np.int64), ("error", object), ("bytes", np.int64))
_ARRAYS = ("intended", "latency_s", "service_s", "bin", "code", "errors")


def bench_record_overhead(n: int = 200_000) -> dict[str, float]:
    """Cost per sample of record() + flush() against a plain list.append of the same tuple.

    Used by `bench selftest`: the recorder must stay a small multiple of an append, far
    below the cost of the cache operation being measured.
    """
    names = ("get", "get_multi", "set", "delete")
    base = time.perf_counter()
    samples = [(names[i % 4], base + i * 1e-5, base + i * 1e-5, base + i * 1e-5 + 2e-4,
                1, 0, 1, None if i % 100 else "timeout", 100) for i in range(n)]
    plain: list[tuple[Any, ...]] = []
    t0 = time.perf_counter()
    for s in samples:
        plain.append((s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]))
    t1 = time.perf_counter()
    recorder = Recorder()
    for s in samples:
        recorder.record(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8])
    t2 = time.perf_counter()
    recorder.flush(t2, final=True)
    t3 = time.perf_counter()
    append_ns, record_ns, flush_ns = ((b - a) * 1e9 / n for a, b in ((t0, t1), (t1, t2), (t2, t3)))
    return {"samples": n, "append_ns": append_ns, "record_ns": record_ns,
            "flush_ns": flush_ns, "per_sample_ns": record_ns + flush_ns,
            "ratio_to_append": (record_ns + flush_ns) / append_ns}
