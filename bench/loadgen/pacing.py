"""Pacing: when a user sends each op, and from when its latency counts.

The coordinated-omission core of the harness, kept apart from Locust so that it can be
tested alone: this module imports neither Locust nor gevent. The clock and the sleep
are injected (`clock`: perf_counter seconds, `sleep`: yield for so many seconds);
`users.CacheUser` passes `time.perf_counter` and a precise sleep (`timers.py`; gevent's
own for the closed loop), tests a fake clock whose sleep advances virtual time
(tests/test_pacing.py).

Open loop sends on a schedule of intended start times and measures each op from its
intended start, so a stalled server shows in the tail; closed loop sends the next op
when the previous one is over. Both hand the executor's Samples to the recorder as they
are (`Recorder.record_sample`), each with the time its latency counts from.

Both also tell the process's LoadMeter what the harness itself did (the validity
verdict's figures): every op's first send (`record_send`: when it was due, when it went
out, when its user was ready to send it) and, as counters, the ops parked and the calls
in flight. Send lag counts from the later of due and ready (`loadstats.send_lag`): a
user still busy with a slow call when the next op is due is the server's doing, which
that op's latency from its intended start already shows.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator

import numpy as np

from bench.results.loadstats import LoadMeter
from bench.results.recorder import INTERVAL_S, Recorder
from bench.workload.executor import Executor, Sample, Steps
from bench.workload.ops import Op

ARRIVAL_BATCH = 4096

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Record = Callable[[Sample, float], None]


def arrival_gaps(rate_per_user: float, arrival: str, rng: np.random.Generator) -> Iterator[float]:
    """Seconds between intended starts: exponential (Poisson process) or constant."""
    mean = 1.0 / rate_per_user
    while True:
        if arrival == "poisson":
            batch = rng.exponential(mean, ARRIVAL_BATCH)
        else:
            batch = np.full(ARRIVAL_BATCH, mean)
        yield from batch.tolist()


def run_open_loop(ops: Iterator[Op], executor: Executor, recorder: Recorder,
                  gaps: Iterator[float], first: float, end: float, *,
                  clock: Clock, sleep: Sleep, meter: LoadMeter | None = None) -> None:
    """Send ops on a schedule of intended start times until `end` (`clock` seconds).

    The schedule never waits for the server: after a stall the user sends back to back
    until it has caught up, and each op's latency counts from when it was meant to
    start, so a stall shows in the tail (no coordinated omission). An op that waits
    client-side (regeneration after a miss, a lock's hold time) is parked until its
    wait is over, and its follow-up calls are due then; the schedule goes on meanwhile.
    Trace ops carry their own start (`op.at`, seconds after `first`). Nothing due at or
    after `end` is sent: neither the next op nor a parked op's follow-up.
    """
    record = recorder.record_sample
    meter = meter if meter is not None else LoadMeter(INTERVAL_S)
    parked: list[tuple[float, int, Steps]] = []
    intended, ticket = first, 0
    for op in ops:
        if op.at is not None:
            intended = first + op.at
        if intended >= end:
            break
        while parked and parked[0][0] <= intended:
            due, _, steps = heapq.heappop(parked)
            meter.parked -= 1
            ticket = _step(steps, due, parked, ticket, record, clock, sleep, meter)
        ticket = _step(executor.begin(op), intended, parked, ticket, record, clock, sleep, meter)
        intended += next(gaps)
    while parked and parked[0][0] < end:
        due, _, steps = heapq.heappop(parked)
        meter.parked -= 1
        ticket = _step(steps, due, parked, ticket, record, clock, sleep, meter)
    meter.parked -= len(parked)  # follow-ups due after the end are never sent


def _step(steps: Steps, due: float, parked: list[tuple[float, int, Steps]], ticket: int,
          record: Record, clock: Clock, sleep: Sleep, meter: LoadMeter) -> int:
    """Run one step of an op at its due time, record its calls, park it if it waits.

    `sleep` must wake on time (users.py passes a timerfd sleep, bench/loadgen/timers.py):
    an op is neither sent early, which would change the arrival process, nor late, which
    would put the timer's lateness into its latency.
    """
    ready = clock()
    wait = due - ready
    if wait > 0:
        sleep(wait)
    done = len(steps.samples)
    meter.in_flight += 1
    pause = steps.advance()
    meter.in_flight -= 1
    _record_samples(record, steps.samples[done:], due)
    if not done and steps.samples:  # the op's first call: its send against the schedule
        meter.record_send((due, steps.samples[0].start, ready))
    if pause is not None:
        heapq.heappush(parked, (clock() + pause, ticket, steps))
        meter.parked += 1
        ticket += 1
    return ticket


def run_closed_loop(ops: Iterator[Op], executor: Executor, recorder: Recorder,
                    think_s: float, end: float, *, clock: Clock, sleep: Sleep,
                    meter: LoadMeter | None = None) -> None:
    """Send the next op as soon as the previous one finished (plus think time); every
    call counts from its own send (there is no schedule to be late for)."""
    record, execute = recorder.record_sample, executor.execute
    meter = meter if meter is not None else LoadMeter(INTERVAL_S)
    for op in ops:
        if clock() >= end:
            return
        meter.in_flight += 1
        samples = execute(op)
        meter.in_flight -= 1
        for sample in samples:
            record(sample, sample.start)
        if samples:
            meter.record_send((samples[0].start, samples[0].start, math.nan))  # no schedule
        if think_s > 0:
            sleep(think_s)
        elif not samples:
            sleep(0)


def _record_samples(record: Record, samples: list[Sample], intended: float) -> None:
    """The first call of an op is measured from its intended start, follow-ups from their own."""
    for i, sample in enumerate(samples):
        record(sample, min(intended, sample.start) if i == 0 else sample.start)
