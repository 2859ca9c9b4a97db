"""Pacing (bench.loadgen.pacing) on a fake clock: when ops are sent, from when they count.

No Locust, no gevent, no server: the clock is virtual and only moves when the code under
test sleeps or a fake call takes its service time, so every send time and latency below
is exact (up to float rounding) and the tests take no wall-clock time. The fake sleep
wakes on time, like the timerfd sleep the users pace with, unless a test says otherwise.

The statistical tests of `arrival_gaps` use a fixed seed and reject below ALPHA, as in
tests/test_distributions.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from functools import partial

import numpy as np
import pytest
from scipy import stats

from bench.loadgen.pacing import ARRIVAL_BATCH, arrival_gaps, run_closed_loop, run_open_loop
from bench.results.loadstats import LoadMeter, send_lag
from bench.results.recorder import INTERVAL_S
from bench.workload.executor import Sample, Steps
from bench.workload.ops import Op

MS = 1e-3
SERVICE_S = 1 * MS
ALPHA = 1e-3


class FakeClock:
    """Virtual perf_counter time; `sleep` advances it (plus `late`, a timer's lateness)."""

    def __init__(self, late: float = 0.0) -> None:
        self.now, self.late = 0.0, late

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.late


class FakeExecutor:
    """Runs ops as calls that take chosen service times on the fake clock.

    Op `i` (its key is `k{i}`) sends a "get" taking `service[i]` (default SERVICE_S);
    an op with `work` then waits that long client-side (a Steps pause) and sends a
    "set". `sent` lists (name, op index, start) of every call, in send order.
    """

    def __init__(self, clock: FakeClock, service: dict[int, float] | None = None) -> None:
        self.clock, self.service = clock, service or {}
        self.sent: list[tuple[str, int, float]] = []

    def begin(self, op: Op) -> Steps:
        return Steps(partial(self._run, op))

    def execute(self, op: Op) -> list[Sample]:
        steps = self.begin(op)
        while (wait := steps.advance()) is not None:
            self.clock.sleep(wait)
        return steps.samples

    def _run(self, op: Op, samples: list[Sample]) -> Iterator[float]:
        index = int(op.keys[0][1:])
        self._call(samples, "get", index, self.service.get(index, SERVICE_S))
        if op.work:
            yield op.work
            self._call(samples, "set", index, SERVICE_S)

    def _call(self, samples: list[Sample], name: str, index: int, seconds: float) -> None:
        start = self.clock.now
        self.clock.now += seconds
        self.sent.append((name, index, start))
        samples.append(Sample(name, start, self.clock.now, 1, 0, 1, None, 0))


class ListRecorder:
    """What pacing hands the recorder, as a list of (sample, origin)."""

    def __init__(self) -> None:
        self.records: list[tuple[Sample, float]] = []

    def record_sample(self, sample: Sample, origin: float) -> None:
        self.records.append((sample, origin))

    def latencies(self) -> list[float]:
        """end - origin of every record: what the latency histogram gets."""
        return [sample.end - origin for sample, origin in self.records]


def ops(work: dict[int, float] | None = None, at: list[float] | None = None) -> Iterator[Op]:
    """An endless stream of gets `k0, k1, ...`; op i waits `work[i]` seconds client-side
    after its get; with `at`, a finite trace whose op i is due `at[i]` after the first."""
    work = work or {}
    indices = range(len(at)) if at is not None else itertools.count()
    for i in indices:
        yield Op("get", "get", 0, (f"k{i}",), 100, 0.0, work=work.get(i, 0.0),
                 at=at[i] if at is not None else None)


def open_loop(clock: FakeClock, executor: FakeExecutor, gaps: list[float], end: float,
              first: float = 0.0, stream: Iterator[Op] | None = None) -> ListRecorder:
    """run_open_loop on the fake clock, gaps repeated; returns what it recorded."""
    recorder = ListRecorder()
    run_open_loop(stream or ops(), executor, recorder, itertools.cycle(gaps), first, end,
                  clock=clock, sleep=clock.sleep)
    return recorder


def test_intended_starts_follow_the_gaps() -> None:
    clock = FakeClock()
    executor = FakeExecutor(clock)
    gaps = [10 * MS, 25 * MS, 5 * MS, 40 * MS]
    recorder = open_loop(clock, executor, gaps, end=1.0 + 0.3, first=1.0)
    intended = 1.0 + np.concatenate(([0.0], np.cumsum(gaps * 4)))
    intended = intended[intended < 1.3]
    assert [origin for _, origin in recorder.records] == pytest.approx(intended.tolist())
    assert [start for _, _, start in executor.sent] == pytest.approx(intended.tolist())
    assert recorder.latencies() == pytest.approx([SERVICE_S] * len(intended))


def test_trace_ops_start_at_their_own_time_after_the_first() -> None:
    clock = FakeClock()
    executor = FakeExecutor(clock)
    at = [0.0, 0.0, 0.002, 0.5, 0.51]
    recorder = open_loop(clock, executor, [1.0], end=10.0, first=2.0, stream=ops(at=at))
    # the second op is due with the first, so it goes as soon as the first is done
    assert [start for _, _, start in executor.sent] == pytest.approx([2.0, 2.001, 2.002, 2.5, 2.51])
    assert [origin for _, origin in recorder.records] == pytest.approx([2.0 + a for a in at])


def test_an_op_woken_early_is_measured_from_when_it_started() -> None:
    """A sleep that returns EARLY wakes the op before its intended start: its latency
    then counts from its actual start, never from a time after it started."""
    early = 0.5 * MS
    clock = FakeClock(late=-early)
    executor = FakeExecutor(clock)
    recorder = open_loop(clock, executor, [10 * MS], end=0.035)
    starts = [start for _, _, start in executor.sent]
    assert starts == pytest.approx([0.0, 0.01 - early, 0.02 - early, 0.03 - early])
    assert [origin for _, origin in recorder.records] == pytest.approx(starts)


def test_a_stall_is_caught_up_without_skipping_sends() -> None:
    """Op 5 takes 55 ms on a 10 ms schedule. Every op is still sent, in order; the ones
    queued behind the stall go back to back and carry the wait in their latency (counted
    from their intended start), until the schedule is caught up; service time stays 1 ms."""
    clock = FakeClock()
    executor = FakeExecutor(clock, service={5: 55 * MS})
    recorder = open_loop(clock, executor, [10 * MS], end=0.195)
    assert [index for _, index, _ in executor.sent] == list(range(20))
    assert [origin for _, origin in recorder.records] == pytest.approx(
        [i * 10 * MS for i in range(20)])
    behind = [55 * MS - k * 9 * MS for k in range(1, 6)]  # 46, 37, 28, 19, 10 ms
    assert recorder.latencies() == pytest.approx(
        [SERVICE_S] * 5 + [55 * MS] + behind + [SERVICE_S] * 9)
    starts = [start for _, _, start in executor.sent]
    assert starts[6:11] == pytest.approx([0.105, 0.106, 0.107, 0.108, 0.109])  # back to back
    assert [s.end - s.start for s, _ in recorder.records[6:]] == pytest.approx([SERVICE_S] * 14)


def test_parked_ops_resume_at_their_due_time_while_the_schedule_goes_on() -> None:
    """Op 2 regenerates for 25 ms after its get: ops 3 and 4 go on schedule meanwhile, and
    its set goes when the wait is over (21 + 25 = 46 ms), measured from its own start."""
    clock = FakeClock()
    executor = FakeExecutor(clock)
    recorder = open_loop(clock, executor, [10 * MS], end=0.075, stream=ops(work={2: 25 * MS}))
    assert [(name, index) for name, index, _ in executor.sent] == [
        ("get", 0), ("get", 1), ("get", 2), ("get", 3), ("get", 4), ("set", 2), ("get", 5),
        ("get", 6), ("get", 7)]
    assert [start for _, _, start in executor.sent] == pytest.approx(
        [0.0, 0.01, 0.02, 0.03, 0.04, 0.046, 0.05, 0.06, 0.07])
    assert [origin for _, origin in recorder.records] == pytest.approx(
        [0.0, 0.01, 0.02, 0.03, 0.04, 0.046, 0.05, 0.06, 0.07])
    assert recorder.latencies() == pytest.approx([SERVICE_S] * 9)


def test_nothing_due_at_or_after_the_end_is_sent() -> None:
    """Neither an op whose intended start is at or after `end` (op 5, at 50 ms) nor a
    parked op's follow-up due then (op 3's set, at 46 ms); parked ops due before the end
    are finished, whether the schedule reaches them (op 1) or not (op 4, at 43 ms)."""
    clock = FakeClock()
    executor = FakeExecutor(clock)
    open_loop(clock, executor, [10 * MS], end=0.045,
              stream=ops(work={1: 5 * MS, 3: 15 * MS, 4: 2 * MS}))
    assert [(name, index) for name, index, _ in executor.sent] == [
        ("get", 0), ("get", 1), ("set", 1), ("get", 2), ("get", 3), ("get", 4), ("set", 4)]
    assert max(start for _, _, start in executor.sent) < 0.045


def test_closed_loop_sends_back_to_back_with_think_time() -> None:
    """Each op goes when the previous one is over plus the think time, and counts from
    its send; no op is sent once the clock has reached `end`."""
    for think_s, expected in ((5 * MS, [0.0, 0.007, 0.014, 0.021, 0.028]),
                              (0.0, [i * 2 * MS for i in range(15)])):
        clock = FakeClock(late=0.0)
        executor = FakeExecutor(clock, service=dict.fromkeys(range(100), 2 * MS))
        recorder = ListRecorder()
        run_closed_loop(ops(), executor, recorder, think_s, 0.029, clock=clock,
                        sleep=clock.sleep)
        starts = [start for _, _, start in executor.sent]
        assert starts == pytest.approx(expected)
        assert [origin for _, origin in recorder.records] == pytest.approx(starts)
        assert recorder.latencies() == pytest.approx([2 * MS] * len(expected))


def test_closed_loop_sleeps_through_an_op_s_wait() -> None:
    """An op's client-side wait delays the next op (closed loop has no schedule to keep)."""
    clock = FakeClock(late=0.0)
    executor = FakeExecutor(clock)
    run_closed_loop(ops(work={0: 10 * MS}), executor, ListRecorder(), 0.0, 0.0135,
                    clock=clock, sleep=clock.sleep)
    assert [(name, start) for name, _, start in executor.sent] == [
        ("get", 0.0), ("set", pytest.approx(0.011)), ("get", pytest.approx(0.012)),
        ("get", pytest.approx(0.013))]


def test_poisson_gaps_are_exponential_with_the_asked_mean() -> None:
    """H0 (KS): the gaps of a 250 ops/s Poisson arrival process are exponential with mean
    4 ms, over several refills of the batch; the test has the power to reject a mean 5 %
    off, so it would see a wrong rate."""
    rng = np.random.default_rng(20240521)
    gaps = np.array(list(itertools.islice(arrival_gaps(250.0, "poisson", rng),
                                          5 * ARRIVAL_BATCH)))
    assert stats.kstest(gaps, stats.expon(scale=0.004).cdf).pvalue > ALPHA
    assert stats.kstest(gaps, stats.expon(scale=0.0042).cdf).pvalue < ALPHA


def test_uniform_gaps_are_constant() -> None:
    rng = np.random.default_rng(1)
    gaps = list(itertools.islice(arrival_gaps(250.0, "uniform", rng), 2 * ARRIVAL_BATCH + 1))
    assert gaps == [pytest.approx(0.004, rel=1e-12)] * len(gaps)


# --------------------------------------------------------------- what the meter is told


class ListMeter(LoadMeter):
    """A LoadMeter that keeps the (intended, sent, ready) of the sends it is told of."""

    def __init__(self) -> None:
        super().__init__(INTERVAL_S)
        self.sends: list[tuple[float, float, float]] = []
        self.record_send = self.sends.append

    def column(self, i: int) -> list[float]:
        return [send[i] for send in self.sends]

    def lags(self) -> list[float]:
        return send_lag(*np.array(self.sends).T).tolist()


class GaugedExecutor(FakeExecutor):
    """A FakeExecutor that notes the meter's (parked, in flight) during each call."""

    def __init__(self, clock: FakeClock, meter: LoadMeter) -> None:
        super().__init__(clock)
        self.meter, self.gauges = meter, []

    def _call(self, samples: list[Sample], name: str, index: int, seconds: float) -> None:
        self.gauges.append((self.meter.parked, self.meter.in_flight))
        super()._call(samples, name, index, seconds)


def metered_open_loop(clock: FakeClock, executor: FakeExecutor, gaps: list[float], end: float,
                      stream: Iterator[Op] | None = None,
                      meter: ListMeter | None = None) -> ListMeter:
    meter = meter or ListMeter()
    run_open_loop(stream or ops(), executor, ListRecorder(), itertools.cycle(gaps), 0.0, end,
                  clock=clock, sleep=clock.sleep, meter=meter)
    return meter


def test_a_late_timer_is_send_lag() -> None:
    """Timers that wake 3 ms late (there is no early-start slack to cover any of it):
    every op goes out 3 ms after it was due, while its user was free: the harness's lag."""
    clock = FakeClock(late=3 * MS)
    meter = metered_open_loop(clock, FakeExecutor(clock), [10 * MS], end=0.045)
    assert meter.column(0) == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])
    assert meter.column(1) == pytest.approx([0.0, 0.013, 0.023, 0.033, 0.043])
    assert meter.lags() == pytest.approx([0.0] + [3 * MS] * 4)


def test_waiting_for_a_slow_server_is_not_send_lag() -> None:
    """Op 5 takes 55 ms (the server stalls): the ops queued behind it go out late, but
    each as soon as its user is free, so none has send lag; all are still counted."""
    clock = FakeClock()
    meter = metered_open_loop(clock, FakeExecutor(clock, service={5: 55 * MS}), [10 * MS],
                              end=0.195)
    assert len(meter.sends) == 20
    assert max(sent - intended for intended, sent, _ in meter.sends) >= 45 * MS
    assert meter.lags() == pytest.approx([0.0] * 20)


def test_parked_ops_and_calls_in_flight_are_counted_and_given_back() -> None:
    """Op 2 regenerates for 25 ms: ops 3 and 4 are sent while it is parked. Op 6's
    follow-up would be due after the end and is never sent. Each call is the only one in
    flight, and the counters are back at zero when the loop ends."""
    clock, meter = FakeClock(), ListMeter()
    executor = GaugedExecutor(clock, meter)
    metered_open_loop(clock, executor, [10 * MS], end=0.075,
                      stream=ops(work={2: 25 * MS, 6: 50 * MS}), meter=meter)
    assert [(name, index) for name, index, _ in executor.sent][:6] == [
        ("get", 0), ("get", 1), ("get", 2), ("get", 3), ("get", 4), ("set", 2)]
    assert executor.gauges == [(0, 1), (0, 1), (0, 1), (1, 1), (1, 1), (0, 1), (0, 1),
                               (0, 1), (1, 1)]
    assert len(meter.sends) == 8  # first calls only: the set is a follow-up
    assert (meter.parked, meter.in_flight) == (0, 0)


def test_closed_loop_counts_its_sends_without_a_schedule() -> None:
    clock = FakeClock(late=0.0)
    meter = ListMeter()
    run_closed_loop(ops(), FakeExecutor(clock), ListRecorder(), 0.0, 0.0045, clock=clock,
                    sleep=clock.sleep, meter=meter)
    assert meter.column(0) == meter.column(1) == pytest.approx([0.0, 0.001, 0.002, 0.003,
                                                                0.004])
    assert all(np.isnan(lag) for lag in meter.lags()) and meter.in_flight == 0
