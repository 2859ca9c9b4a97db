"""Recorder: batch-built histograms equal hdrh's own, binning, counters, wire messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.results.histograms import (HIGHEST_US, add_histogram, counts_array,
                                      histogram_from_values, new_histogram, to_microseconds)
from bench.results.recorder import Interval, OpInterval, Recorder
from bench.selftest import bench_record_overhead

ORIGIN = (1000.0, 0.0)  # epoch = perf_counter + 1000


def reference_histogram(values: list[int]):
    """What hdrh builds one record_value at a time: the behaviour batching must match."""
    histogram = new_histogram()
    for value in values:
        assert histogram.record_value(int(value))
    return histogram


def assert_same_histogram(actual, expected) -> None:
    """Same counts, total, min, max and wire encoding."""
    assert np.array_equal(counts_array(actual), counts_array(expected))
    assert (actual.total_count, actual.get_min_value(), actual.get_max_value()) == \
        (expected.total_count, expected.get_min_value(), expected.get_max_value())
    assert actual.encode() == expected.encode()


def test_batch_histogram_equals_record_value_for_many_random_values() -> None:
    rng = np.random.default_rng(7)
    edges = [1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 1 << 20, HIGHEST_US - 1, HIGHEST_US]
    values = np.concatenate([np.exp(rng.uniform(0, np.log(HIGHEST_US), 20_000)).astype(np.int64)
                             .clip(1, HIGHEST_US), edges])
    batch = histogram_from_values(values)
    assert_same_histogram(batch, reference_histogram(values.tolist()))
    assert (batch.total_count, batch.min_value, batch.max_value) == \
        (len(values), 1, HIGHEST_US)
    decoded = type(batch).decode(batch.encode())
    assert np.array_equal(counts_array(decoded), counts_array(batch))
    assert decoded.get_value_at_percentile(99.9) == batch.get_value_at_percentile(99.9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=HIGHEST_US), min_size=1, max_size=50))
def test_batch_histogram_equals_record_value_property(values: list[int]) -> None:
    assert_same_histogram(histogram_from_values(np.array(values)), reference_histogram(values))


def test_empty_histogram_from_no_values() -> None:
    assert_same_histogram(histogram_from_values(np.array([], dtype=np.int64)), new_histogram())


def test_microseconds_round_up_and_clamp() -> None:
    seconds = np.array([0.4e-6, 100e-6, 100.5e-6, 0.0, -1e-3, 60.0, 61.0])
    values, clamped = to_microseconds(seconds)
    assert values.tolist() == [1, 100, 101, 1, 1, HIGHEST_US, HIGHEST_US]
    assert clamped.tolist() == [False, False, False, True, True, False, True]


def test_add_histogram_keeps_the_real_minimum() -> None:
    total = new_histogram()
    add_histogram(total, histogram_from_values(np.array([500, 900])))
    add_histogram(total, new_histogram())
    add_histogram(total, histogram_from_values(np.array([300])))
    assert_same_histogram(total, reference_histogram([500, 900, 300]))
    assert total.get_min_value() == 300


def op_numbers(op: OpInterval) -> dict:
    """An OpInterval's counters, and its histograms as encodings, for exact comparison."""
    return {**op.to_message(), "min": op.latency.get_min_value()}


def test_flush_bins_by_completion_second_and_keeps_open_intervals() -> None:
    rec = Recorder(origin=ORIGIN)
    rec.record("get", 0.10, 0.15, 0.20, 1, 0, 1, None, 100)    # epoch 1000.2
    rec.record("get", 0.80, 0.90, 1.01, 0, 1, 1, "timeout", 0)  # completes in 1001
    rec.record("set", 0.50, 0.50, 0.90, 0, 0, 1, None, 300)    # 1000
    rec.record("get", 1.50, 1.60, 2.10, 2, 1, 3, None, 50)     # 1002: still open at 2.0
    closed = rec.flush(2.0)
    assert [(iv.start, iv.length, sorted(iv.ops)) for iv in closed] == \
        [(1000.0, 1.0, ["get", "set"]), (1001.0, 1.0, ["get"])]
    get = closed[0].ops["get"]
    assert (get.count, get.hits, get.misses, get.keys, get.errors, get.bytes, get.clamped) == \
        (1, 1, 0, 1, {}, 100, 0)
    assert_same_histogram(get.latency, histogram_from_values(np.array([100_000])))
    assert_same_histogram(get.service, histogram_from_values(np.array([50_000])))
    late = closed[1].ops["get"]
    assert (late.count, late.misses, late.errors, late.bytes) == (1, 1, {"timeout": 1}, 0)
    assert_same_histogram(late.latency, histogram_from_values(np.array([210_000])))
    assert rec.flush(2.0) == []
    final = rec.flush(2.0, final=True)
    assert [(iv.start, iv.ops["get"].count, iv.ops["get"].keys) for iv in final] == [(1002.0, 1, 3)]


def test_errors_and_clamped_samples_are_counted_not_dropped() -> None:
    rec = Recorder(origin=ORIGIN)
    rec.record("get", 0.0, 0.0, 0.5, 0, 0, 1, "timeout", 0)
    rec.record("get", 0.0, 0.1, 0.5, 0, 0, 1, "server", 0)
    rec.record("get", -70.0, 0.2, 0.5, 1, 0, 1, None, 10)  # 70.5 s: beyond the range
    (interval,) = rec.flush(0.0, final=True)
    op = interval.ops["get"]
    assert (op.count, op.errors, op.error_count, op.clamped) == \
        (3, {"timeout": 1, "server": 1}, 2, 1)
    assert_same_histogram(op.latency, histogram_from_values(np.array([500_000, 500_000,
                                                                      HIGHEST_US])))
    assert_same_histogram(op.service, histogram_from_values(np.array([500_000, 400_000,
                                                                      300_000])))


def test_discard_before_drops_warmup_samples_already_buffered() -> None:
    rec = Recorder(origin=ORIGIN)
    rec.record("get", 0.10, 0.10, 0.20, 1, 0, 1, None, 1)
    rec.record("get", 0.30, 0.30, 0.40, 1, 0, 1, None, 2)
    rec.discard_before(0.25)
    rec.record("get", 0.24, 0.30, 0.50, 1, 0, 1, None, 4)
    (interval,) = rec.flush(5.0)
    assert (interval.ops["get"].count, interval.ops["get"].bytes) == (1, 2)


def test_sample_recorded_after_its_interval_closed_comes_out_later() -> None:
    rec = Recorder(origin=ORIGIN)
    rec.record("get", 0.1, 0.1, 0.2, 1, 0, 1, None, 0)
    assert [iv.start for iv in rec.flush(1.1)] == [1000.0]
    rec.record("get", 0.9, 0.9, 0.95, 1, 0, 1, None, 0)
    assert rec.flush(1.2) == []  # no interval ended since the last flush: not looked at
    assert [(iv.start, iv.ops["get"].count) for iv in rec.flush(2.1)] == [(1000.0, 1)]


def test_other_interval_lengths() -> None:
    rec = Recorder(interval_s=0.5, origin=ORIGIN)
    for end in (0.2, 0.7, 0.8, 1.3):
        rec.record("get", end - 0.1, end - 0.1, end, 1, 0, 1, None, 0)
    closed = rec.flush(1.0)
    assert [(iv.start, iv.length, iv.ops["get"].count) for iv in closed] == \
        [(1000.0, 0.5, 1), (1000.5, 0.5, 2)]
    assert [iv.start for iv in rec.flush(1.0, final=True)] == [1001.0]


def two_worker_intervals() -> tuple[Interval, Interval]:
    """The same wall-clock second seen by two workers, with one op only on the second."""
    first, second = Recorder(origin=ORIGIN), Recorder(origin=(1000.0, 50.0))
    first.record("get", 0.1, 0.1, 0.3, 1, 0, 1, None, 10)
    second.record("get", 50.2, 50.2, 50.25, 0, 1, 1, "timeout", 0)
    second.record("delete", 50.3, 50.3, 50.4, 0, 0, 1, None, 0)
    return first.flush(0.0, final=True)[0], second.flush(0.0, final=True)[0]


def test_message_round_trip_through_json() -> None:
    interval = two_worker_intervals()[1]
    message = json.loads(json.dumps(interval.to_message()))
    back = Interval.from_message(message)
    assert (back.start, back.length, list(back.ops)) == (1000.0, 1.0, ["get", "delete"])
    for name, op in interval.ops.items():
        assert op_numbers(back.ops[name]) == op_numbers(op)


def test_merge_adds_histograms_and_counters() -> None:
    first, second = two_worker_intervals()
    merged = Interval(first.start, first.length).merge(first).merge(second)
    get = merged.ops["get"]
    assert (get.count, get.hits, get.misses, get.errors, get.bytes) == \
        (2, 1, 1, {"timeout": 1}, 10)
    assert_same_histogram(get.latency, histogram_from_values(np.array([200_000, 50_000])))
    assert merged.ops["delete"].count == 1
    assert second.ops["get"].count == 1  # merging never changes its argument
    with pytest.raises(ValueError, match="cannot merge"):
        merged.merge(Interval(1001.0, 1.0))


def test_bench_record_overhead_reports_costs_per_sample() -> None:
    result = bench_record_overhead(2_000)
    assert result["samples"] == 2_000
    assert set(result) == {"samples", "append_ns", "record_ns", "flush_ns", "per_sample_ns",
                           "ratio_to_append"}
    assert result["per_sample_ns"] == result["record_ns"] + result["flush_ns"]


def test_samples_completing_after_the_window_count_in_its_last_interval() -> None:
    """An op in flight at the end of the measured window completes after it; it counts in
    the window's last interval rather than opening a sliver of a new one."""
    rec = Recorder(origin=ORIGIN)
    rec.close_at(2.0)
    rec.record("get", 1.90, 1.90, 1.95, 1, 0, 1, None, 0)
    rec.record("get", 1.99, 1.99, 2.30, 1, 0, 1, None, 0)  # completes after the end
    closed = rec.flush(3.0, final=True)
    assert [(iv.start, iv.ops["get"].count) for iv in closed] == [(1001.0, 2)]
