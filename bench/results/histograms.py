"""Histogram maths, in one place: build, add, encode, and read percentiles.

Everything that knows how an HdrHistogram lays out its counts lives here, so the
recorder (which builds them), the run directory (which encodes them) and the analyzer
(which adds them and reads percentiles) cannot drift apart.

Why numpy: hdrh's `record_value`, `add` and percentile iterators are pure Python loops
over 17,408 counters. The functions here read and write the counts through a numpy view
instead, and give the same numbers as hdrh: each is checked against hdrh in the tests.

Percentiles follow hdrh exactly (`get_value_at_percentile`: the first counts index where
the cumulative count reaches `int(p * total / 100 + 0.5)`, reported as that bucket's
highest equivalent value), and are always computed from added counts, never averaged.
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from hdrh.codec import HdrCookieException, HdrLengthException
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3
# Float noise in (end - start) * 1e6 is far below 1 ns; without this tolerance an exact
# 100 us difference computed as 100.0000000001 would round up to 101 us.
_ROUNDING_TOLERANCE_US = 1e-3


def new_histogram() -> HdrHistogram:
    """An empty histogram with the harness-wide range: 1 us .. 60 s, 3 significant digits.

    hdrh's histogram and its encoder refer to each other. That cycle is made weak here,
    so a histogram is freed as soon as nothing uses it: the Locust processes collect
    cycles rarely (loadgen.users._quiet_garbage_collector), and each interval's
    histograms (about 140 KB each, two per op) piled up until a full collection, growing
    RSS by megabytes a second.
    """
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    histogram.encoder.histogram = weakref.proxy(histogram)
    return histogram


def counts_array(histogram: HdrHistogram) -> np.ndarray:
    """A writable numpy view (uint64, no copy) of the histogram's counts.

    Lets the recorder fill and the analyzer read histograms without Python loops.
    """
    return np.ctypeslib.as_array(histogram.counts)


def encode_histogram(histogram: HdrHistogram) -> str:
    """The histogram as HdrHistogram's compressed base64 text (hlog lines, wire messages)."""
    return histogram.encode().decode("ascii")


_DECODE_ERRORS = (ValueError, TypeError, zlib.error, HdrCookieException, HdrLengthException)


def decode_histogram(text: str) -> HdrHistogram:
    """Inverse of `encode_histogram`; ValueError for text that is not a histogram, whatever
    hdrh's codec raises, so callers name the file or message it came from."""
    try:
        return HdrHistogram.decode(text)
    except _DECODE_ERRORS as exc:
        raise ValueError(f"undecodable histogram: {exc or type(exc).__name__}") from None


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
    """The harness-wide layout: 1 us .. 60 s, 3 significant digits (new_histogram).
    Cached: the first call costs milliseconds of numpy, later ones nothing."""
    return layout_for(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


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


def add_sparse(pieces: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Add sparse histograms (same layout): union of indexes, counts summed, ascending."""
    if len(pieces) == 1:
        return pieces[0]
    idx = np.concatenate([p[0] for p in pieces])
    cnt = np.concatenate([p[1] for p in pieces])
    unique, inverse = np.unique(idx, return_inverse=True)
    return unique, np.bincount(inverse, weights=cnt).round().astype(np.int64)


def to_microseconds(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Durations rounded up to whole microseconds and clamped to the histogram range.

    Returns (values, clamped_mask). Rounding up: a 0.4 us operation took *some* time,
    so it is 1 us, never 0; HdrHistogram values are "at most" anyway.
    """
    raw = np.ceil(np.asarray(seconds, dtype=np.float64) * 1e6 - _ROUNDING_TOLERANCE_US)
    clamped = (raw < LOWEST_US) | (raw > HIGHEST_US)
    return np.clip(raw, LOWEST_US, HIGHEST_US).astype(np.int64), clamped


# The percentiles summary.json reports for every op, and their keys there.
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
PERCENTILE_KEYS = ("p50", "p90", "p99", "p99.9", "p99.99")


def _targets(totals: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """hdrh's target count per (segment, percentile): max(int(p * total / 100 + 0.5), 1)."""
    p = np.minimum(np.asarray(percentiles, dtype=np.float64), 100.0)
    raw = np.floor(p[None, :] * totals[:, None].astype(np.float64) / 100 + 0.5)
    return np.maximum(raw.astype(np.int64), 1)


def segment_percentiles(offsets: np.ndarray, idx: np.ndarray, cnt: np.ndarray,
                        percentiles: Sequence[float], layout: Layout) -> np.ndarray:
    """Percentiles (0..100) of every segment of a CSR set of sparse histograms, in us.

    Segment s holds indexes idx[offsets[s]:offsets[s+1]] (ascending) with counts cnt[...].
    Returns an array (segments x percentiles); NaN for an empty segment. Vectorised: one
    cumulative sum over all segments and one searchsorted, no Python loop per segment.
    """
    cum = np.cumsum(cnt, dtype=np.int64)
    base = np.concatenate(([0], cum))[offsets[:-1]]
    totals = np.concatenate(([0], cum))[offsets[1:]] - base
    wanted = base[:, None] + _targets(totals, percentiles)
    position = np.searchsorted(cum, wanted.ravel(), side="left").reshape(wanted.shape)
    position = np.minimum(position, max(len(idx) - 1, 0))
    values = layout.highest[idx[position]].astype(np.float64) if len(idx) else \
        np.zeros(wanted.shape)
    zero = np.asarray(percentiles) == 0
    if zero.any() and len(idx):  # hdrh reports the lowest equivalent value at p0
        values[:, zero] = layout.lowest[idx[position[:, zero]]]
    values[totals == 0] = np.nan
    return values


def percentiles_from_counts(counts: np.ndarray, percentiles: Sequence[float],
                            layout: Layout | None = None) -> np.ndarray:
    """Percentiles (0..100) of a dense counts array in us, equal to hdrh's
    `get_value_at_percentile` (highest equivalent value); NaN where the array is empty."""
    layout = layout or default_layout()
    idx = np.flatnonzero(counts)
    cnt = np.asarray(counts)[idx].astype(np.int64)
    return segment_percentiles(np.array([0, len(idx)]), idx, cnt, percentiles, layout)[0]


def latency_stats(counts: np.ndarray, layout: Layout) -> dict[str, float | None]:
    """p50 ... p99.99, max and mean of a dense counts array, as summary.json has them."""
    total = int(counts.sum())
    if not total:
        return dict.fromkeys((*PERCENTILE_KEYS, "max", "mean"))
    values = percentiles_from_counts(counts, PERCENTILES, layout)
    stats: dict[str, float | None] = {k: int(v) for k, v in zip(PERCENTILE_KEYS, values)}
    nonzero = np.flatnonzero(counts)
    stats["max"] = int(layout.highest[nonzero[-1]])
    stats["mean"] = float(np.dot(counts[nonzero].astype(np.float64),
                                 layout.median[nonzero]) / total)
    return stats

