"""The Locust side of a run: cache users, their pacing, and the interval plumbing.

This module is imported only inside Locust processes (through `bench/loadgen/locustfile.py`),
never by `bench run` itself: importing Locust monkey-patches the standard library for
gevent, which the orchestrating process does not want.

Who does what, per Locust process role:

- every process that runs users (local runner or worker) has one `ProcessLoad`: the
  workload, one `Recorder` shared by its users (greenlets are cooperative, so no lock),
  and a greenlet that closes intervals and ships them;
- the process that owns the run directory (local runner or master) has one `RunSink`:
  it merges the intervals of all sources by start time, writes them as they become
  complete, snapshots server counters at the start and end of the measured window, and
  finishes the run directory.

Latency never goes through Locust's per-request event (one event per cache op costs
more than the op). Locust's statistics, which feed its web UI and console, are updated
in bulk once per interval from our histograms, so the counts and rates it shows are
the real ones even though its own per-request rounding is too coarse for a cache.
"""

from __future__ import annotations

import gc
import heapq
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import gevent
import numpy as np
from locust import User, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsEntry, StatsError, bucket_response_time

from bench.loadgen import supervise
from bench.results import rundir
from bench.loadgen.runconfig import CONFIG_ENV, RunConfig
from bench.results.recorder import Interval, Recorder, recorded_values
from bench.scenario.model import Scenario
from bench.targets import open_target, parse_target, server_stats
from bench.workload.ops import Executor, Op, Steps, Workload

MSG_INTERVAL = "cachebench_interval"
MSG_DONE = "cachebench_done"
LOCAL_SOURCE = "local"
FLUSH_EVERY_S = 0.25
#: An interval is written once every source reported it, or this long after it ended.
INTERVAL_GRACE_S = 3.0
#: gevent's timers fire up to one event-loop tick (about 1 ms) late. Sleeping this much
#: less and measuring from min(intended, actual start) keeps that tick out of latency:
#: an op may start up to this early, but is never measured from a time after it started.
TIMER_SLACK_S = 0.001
ARRIVAL_BATCH = 4096
GC_YOUNG_THRESHOLD = 50_000
#: After the measured window, how long a process waits for users that never came.
IDLE_GRACE_S = 2.0
#: Time from the start event to the first op: users spawn, workers get the start time.
LOCAL_MARGIN_S = 0.3
MASTER_MARGIN_S = 1.0

log = logging.getLogger("cachebench")


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--cachebench-config", default=os.environ.get(CONFIG_ENV, ""),
                        help="cachebench run configuration (JSON; set by `bench run`)",
                        include_in_web_ui=False)
    parser.add_argument("--cachebench-workers", type=int, default=1,
                        help="set by the master: number of worker processes",
                        include_in_web_ui=False)
    parser.add_argument("--cachebench-start", type=float, default=0.0,
                        help="set by the master: epoch second at which measuring starts",
                        include_in_web_ui=False)


def _config(environment: Any) -> RunConfig:
    text = getattr(environment.parsed_options, "cachebench_config", "")
    if not text:
        raise RuntimeError("no cachebench configuration: start Locust through `bench run`")
    return RunConfig.from_json(text)


# --------------------------------------------------------------------------- pacing


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
                  gaps: Iterator[float], first: float, end: float) -> None:
    """Send ops on a schedule of intended start times until `end` (perf_counter s).

    The schedule never waits for the server: after a stall the user sends back to back
    until it has caught up, and each op's latency counts from when it was meant to
    start, so a stall shows in the tail (no coordinated omission). An op that waits
    client-side (regeneration after a miss, a lock's hold time) is parked until its
    wait is over, and its follow-up calls are due then; the schedule goes on meanwhile.
    Trace ops carry their own start (`op.at`, seconds after `first`).
    """
    record, clock, sleep = recorder.record, time.perf_counter, gevent.sleep
    parked: list[tuple[float, int, Steps]] = []
    intended, ticket = first, 0
    for op in ops:
        if op.at is not None:
            intended = first + op.at
        while parked and parked[0][0] <= intended:
            due, _, steps = heapq.heappop(parked)
            ticket = _step(steps, due, parked, ticket, record, clock, sleep)
        if intended >= end:
            break
        ticket = _step(executor.begin(op), intended, parked, ticket, record, clock, sleep)
        intended += next(gaps)
    while parked and parked[0][0] < end:
        due, _, steps = heapq.heappop(parked)
        ticket = _step(steps, due, parked, ticket, record, clock, sleep)


def _step(steps: Steps, due: float, parked: list[tuple[float, int, Steps]], ticket: int,
          record: Any, clock: Any, sleep: Any) -> int:
    """Run one step of an op at its due time, record its calls, park it if it waits."""
    wait = due - clock() - TIMER_SLACK_S
    if wait > 0:
        sleep(wait)
    done = len(steps.samples)
    pause = steps.advance()
    _record_samples(record, steps.samples[done:], due)
    if pause is not None:
        heapq.heappush(parked, (clock() + pause, ticket, steps))
        ticket += 1
    return ticket


def run_closed_loop(ops: Iterator[Any], executor: Executor, recorder: Recorder,
                    think_s: float, end: float) -> None:
    """Send the next op as soon as the previous one finished (plus think time)."""
    record, execute, clock, sleep = recorder.record, executor.execute, time.perf_counter, gevent.sleep
    for op in ops:
        if clock() >= end:
            return
        samples = execute(op)
        if samples:
            _record_samples(record, samples, samples[0][1])
        if think_s > 0:
            sleep(think_s)
        elif not samples:
            sleep(0)


def _record_samples(record: Any, samples: list[tuple], intended: float) -> None:
    """The first call of an op is measured from its intended start, follow-ups from their own."""
    for i, (name, start, end, hits, misses, keys, error, nbytes) in enumerate(samples):
        origin = min(intended, start) if i == 0 else start
        record(name, origin, start, end, hits, misses, keys, error, nbytes)


# --------------------------------------------------------------------------- users side


class ProcessLoad:
    """Per-process state of the users: workload, recorder, interval shipping."""

    current: ProcessLoad | None = None

    def __init__(self, environment: Any, cfg: RunConfig, measure_from: float) -> None:
        """`measure_from`: epoch second at which the measured window starts; load
        starts `cfg.load.warmup_s` before it."""
        self.environment = environment
        self.cfg = cfg
        self.scenario = Scenario.from_json(cfg.scenario)
        self.workload = Workload(self.scenario, cfg.load.seed)
        self.target_info = parse_target(cfg.target_url)
        self.recorder = Recorder(interval_s=cfg.interval_s)
        self.measure_start = measure_from + time.perf_counter() - time.time()
        self.load_start = self.measure_start - cfg.load.warmup_s
        self.end = self.measure_start + cfg.load.duration_s
        self.recorder.discard_before(self.measure_start)
        self.recorder.close_at(self.end)
        runner = environment.runner
        self.is_worker = isinstance(runner, WorkerRunner)
        self.worker_index = max(runner.worker_index, 0) if self.is_worker else 0
        opts = environment.parsed_options
        self.workers = max(getattr(opts, "cachebench_workers", 1), 1) if self.is_worker else 1
        self.total_users = max(int(getattr(opts, "num_users", 0) or cfg.load.users), 1)
        self._next_local_user = 0
        self._active_users = 0
        self._done = False
        self._flusher = gevent.spawn(self._flush_loop)
        # A process that got no users (more processes than users in the web UI) has
        # nothing to wait for: it still has to tell the sink it is done.
        gevent.spawn_later(max(0.0, self.end - time.perf_counter()) + IDLE_GRACE_S,
                           self._finish_if_idle)
        _quiet_garbage_collector()

    def claim_user_index(self) -> int:
        """A global user index: users interleave across workers (w, w+W, w+2W...).

        That covers 0..n-1 when every process has the same number of users (`bench run`
        checks it). With an uneven split (a user count typed into the web UI) an index
        past the end is folded back: that user repeats another's stream, so the load is
        still all sent, only the stream is no longer the same as with one process.
        """
        local = self._next_local_user
        self._next_local_user += 1
        self._active_users += 1
        index = local * self.workers + self.worker_index
        if index >= self.total_users:
            log.warning("cachebench: %d users do not split evenly over %d processes; user "
                        "%d repeats the op stream of user %d", self.total_users, self.workers,
                        index, index % self.total_users)
        return index % self.total_users

    def user_finished(self) -> None:
        """The last user to stop ends this source, once the measured window is over
        (an open-loop user stops early when its next intended start is past the end)."""
        self._active_users -= 1
        if self._active_users <= 0:
            gevent.spawn_later(max(0.0, self.end - time.perf_counter()), self.finish)

    def _finish_if_idle(self) -> None:
        if self._active_users <= 0:
            self.finish()

    def finish(self) -> None:
        """Ship every remaining interval and tell the sink this source is complete."""
        if self._done:
            return
        self._done = True
        # Let the flusher finish what it is shipping (killing it could lose an interval).
        self._flusher.join(timeout=4 * FLUSH_EVERY_S)
        self._ship(self.recorder.flush(time.perf_counter(), final=True))
        _deliver(self.environment, MSG_DONE)

    def _flush_loop(self) -> None:
        while not self._done:
            gevent.sleep(FLUSH_EVERY_S)
            if not self._done:
                self._ship(self.recorder.flush(time.perf_counter()))

    def _ship(self, intervals: list[Interval]) -> None:
        for interval in intervals:
            feed_locust_stats(self.environment.stats, interval)
            _deliver(self.environment, MSG_INTERVAL, interval)


def _quiet_garbage_collector() -> None:
    """Keep the cyclic GC from pausing the event loop for tens of milliseconds.

    Everything alive after set-up (Locust, gevent, numpy, the workload's tables) is
    moved out of the collector's sight with `gc.freeze()`, so a full collection only
    scans what the run allocates since; the young generation is collected less often
    (the hot path allocates a tuple or two per op, almost never a cycle).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 50)


def _deliver(environment: Any, kind: str, interval: Interval | None = None,
             aborted: str | None = None) -> None:
    """Send to the master (encoded), or hand straight to this process's own sink.
    MSG_DONE may carry why this source could not run (`aborted`)."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        data = interval.to_message() if interval is not None else {"aborted": aborted}
        runner.send_message(kind, data)
    elif RunSink.current is not None:
        RunSink.current.receive(kind, interval, LOCAL_SOURCE, aborted)


def feed_locust_stats(stats: Any, interval: Interval) -> None:
    """Add one interval to Locust's statistics in bulk (what its UI and console show)."""
    second = int(interval.start)
    for name, op in interval.ops.items():
        if op.count == 0:
            continue
        entry = StatsEntry(stats, name, "cache")
        entry.start_time = interval.start
        entry.last_request_timestamp = interval.start + interval.length
        entry.num_requests = op.count
        entry.num_reqs_per_sec[second] = op.count
        entry.num_failures = op.error_count
        if op.error_count:
            entry.num_fail_per_sec[second] = op.error_count
        entry.total_content_length = op.bytes
        values_us, counts = recorded_values(op.latency)
        values_ms = values_us / 1000.0
        entry.min_response_time = float(values_ms[0])
        entry.max_response_time = op.latency.get_max_value() / 1000.0
        entry.total_response_time = float(values_ms @ counts)
        for ms, count in zip(values_ms.tolist(), counts.tolist()):
            bucket = bucket_response_time(ms)
            entry.response_times[bucket] = entry.response_times.get(bucket, 0) + count
        stats.get(name, "cache").extend(entry)
        stats.total.extend(entry)
        for kind, count in op.errors.items():
            message = f"{kind} error"
            key = StatsError.create_key("cache", name, message)
            stats.errors.setdefault(key, StatsError("cache", name, message)).occurrences += count


class CacheUser(User):
    """One Locust user = one cache client with its own deterministic op stream."""

    def on_start(self) -> None:
        load = ProcessLoad.current
        if load is None:
            raise StopUser()
        self.load = load
        self.index = load.claim_user_index()
        self.target = open_target(load.target_info, timeout=load.cfg.timeout_s)
        self.executor = Executor(self.target, load.scenario)
        self.ops = load.workload.stream(self.index, load.total_users)

    @task
    def drive(self) -> None:
        """Run this user's share of the load until the measured window ends."""
        load, cfg = self.load, self.load.cfg
        if cfg.load.mode == "open":
            rate_per_user = float(cfg.load.rate) / load.total_users
            rng = np.random.default_rng([cfg.load.seed, 7919, self.index])
            gaps = arrival_gaps(rate_per_user, cfg.load.arrival, rng)
            # + TIMER_SLACK_S: an op may start that much early, never before the load does
            first = load.load_start + TIMER_SLACK_S + rng.uniform(0, 1.0 / rate_per_user)
            run_open_loop(self.ops, self.executor, load.recorder, gaps, first, load.end)
        else:
            gevent.sleep(max(0.0, load.load_start - time.perf_counter()))
            run_closed_loop(self.ops, self.executor, load.recorder, cfg.load.think_s, load.end)
        raise StopUser()

    def on_stop(self) -> None:
        if getattr(self, "target", None) is not None:
            self.target.close()
        if getattr(self, "load", None) is not None:
            self.load.user_finished()


# --------------------------------------------------------------------------- run-directory side


class RunSink:
    """Merges intervals from every source and writes the run directory as they complete."""

    current: RunSink | None = None

    def __init__(self, environment: Any, cfg: RunConfig, sources: int,
                 measure_from: float) -> None:
        self.environment = environment
        self.cfg = cfg
        self.sources = sources
        self.target_info = parse_target(cfg.target_url)
        self.stats_before: dict[str, Any] = {}
        if cfg.load.warmup_s > 0:  # as close to the window's start as load allows
            gevent.spawn_later(max(0.0, measure_from - time.time()), self._snapshot_before)
        else:  # before the first op: the deltas then cover exactly the measured ops
            self._snapshot_before()
        self.writer = rundir.RunWriter(cfg.run_dir, cfg.run_info, time.time())
        self.measured_from = measure_from
        self.pending: dict[float, tuple[Interval, set[str]]] = {}
        self.done: set[str] = set()
        self.finished = False
        self._ticker = gevent.spawn(self._tick_loop)
        supervise.guard(environment, self)

    def _snapshot_before(self) -> None:
        """Server counters at the start of the measured window (after warm-up), so their
        deltas cover the same commands as the harness's counts."""
        self.stats_before = rundir.stats_snapshot(server_stats(self.target_info), time.time())

    def receive(self, kind: str, interval: Interval | None, source: str,
                aborted: str | None = None) -> None:
        """An interval (MSG_INTERVAL) or the end of a source's measurements (MSG_DONE;
        `aborted` says why a source could not run at all, which aborts the run)."""
        if self.finished:
            return
        if kind == MSG_DONE and aborted:
            self.finish("aborted", reason=f"{source}: {aborted}")
        elif kind == MSG_INTERVAL and interval is not None:
            self._add(interval, source)
        elif kind == MSG_DONE:
            self.done.add(source)
            if len(self.done) >= self.sources:
                self.finish(*supervise.end_status(self.measured_from + self.cfg.load.duration_s))

    def _add(self, interval: Interval, source: str) -> None:
        merged, seen = self.pending.get(interval.start, (None, set()))
        if merged is None:
            merged = interval
        else:
            merged.merge(interval)
        seen.add(source)
        self.pending[interval.start] = (merged, seen)

    def _write_due(self, everything: bool = False) -> None:
        now = time.time()
        for start in sorted(self.pending):
            interval, seen = self.pending[start]
            complete = len(seen | self.done) >= self.sources
            overdue = now > start + interval.length + INTERVAL_GRACE_S
            if not (everything or complete or overdue):
                break
            self.writer.write_interval(interval)
            del self.pending[start]

    def _tick_loop(self) -> None:
        while not self.finished:
            gevent.sleep(0.5)
            self._write_due()

    def finish(self, status: str, reason: str | None = None) -> None:
        """Write what is left, the server counters after, and close the run directory."""
        if self.finished:
            return
        self.finished = True
        self._write_due(everything=True)
        after = rundir.stats_snapshot(server_stats(self.target_info), time.time())
        self.writer.write_server_stats(self.stats_before, after, self.target_info.kind)
        measured_to = min(time.time(), self.measured_from + self.cfg.load.duration_s)
        self.writer.info["measured"] = {"from": self.measured_from,
                                        "to": max(measured_to, self.measured_from)}
        self.writer.finish(status, reason=reason)
        log.info("cachebench: run directory %s %s", self.cfg.run_dir, status)
        if not self.cfg.ui:
            gevent.spawn_later(0.1, self.environment.runner.quit)


def measure_start(cfg: RunConfig, margin_s: float) -> float:
    """Epoch second at which measuring starts: on an interval boundary, at least the
    warm-up plus `margin_s` from now (the time users need to be spawned everywhere).

    Intervals are wall-clock seconds; a window that starts and ends on their boundaries
    has no partial first or last interval, whose few samples would count as much as a
    full interval in per-interval statistics (bench compare's rank test). The master
    decides it for all workers (hosts are assumed NTP-synchronised).
    """
    earliest = time.time() + margin_s + cfg.load.warmup_s
    return float(math.ceil(earliest / cfg.interval_s) * cfg.interval_s)


# --------------------------------------------------------------------------- Locust hooks


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(MSG_INTERVAL, lambda msg, **kw: _from_worker(msg))
        runner.register_message(MSG_DONE, lambda msg, **kw: _from_worker(msg))


def _from_worker(msg: Any) -> None:
    if RunSink.current is not None:
        interval = Interval.from_message(msg.data) if msg.type == MSG_INTERVAL else None
        aborted = msg.data.get("aborted") if msg.type == MSG_DONE else None
        RunSink.current.receive(msg.type, interval, msg.node_id, aborted)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    """Set up this process's part of the run; a setup failure aborts the whole run."""
    try:
        _start_process(environment, _config(environment))
    except Exception as exc:  # noqa: BLE001  (reported in run.json and the log, then quit)
        log.error("cachebench: cannot start the run: %s", exc, exc_info=True)
        if isinstance(environment.runner, WorkerRunner):
            _deliver(environment, MSG_DONE, aborted=str(exc))
        elif RunSink.current is not None:
            RunSink.current.finish("aborted", reason=str(exc))
        gevent.spawn_later(0.1, environment.runner.quit)


def _start_process(environment: Any, cfg: RunConfig) -> None:
    runner, options = environment.runner, environment.parsed_options
    if RunSink.current is not None:  # a second Start in the web UI
        raise RuntimeError(f"{cfg.run_dir} already holds this run's test; run `bench run` "
                           "again for another")
    if isinstance(runner, MasterRunner):
        # Forwarded to the workers with the spawn message that follows this event.
        options.cachebench_workers = runner.worker_count
        options.cachebench_start = measure_start(cfg, MASTER_MARGIN_S)
        RunSink.current = RunSink(environment, cfg, runner.worker_count, options.cachebench_start)
    elif isinstance(runner, WorkerRunner):
        ProcessLoad.current = ProcessLoad(environment, cfg, options.cachebench_start)
    else:
        start = measure_start(cfg, LOCAL_MARGIN_S)
        RunSink.current = RunSink(environment, cfg, 1, start)
        ProcessLoad.current = ProcessLoad(environment, cfg, start)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    """A stop before the end (UI button, Ctrl-C): still ship and write what was measured."""
    if ProcessLoad.current is not None:
        ProcessLoad.current.finish()


@events.quitting.add_listener
def _on_quitting(environment: Any, **_: Any) -> None:
    sink = RunSink.current
    if sink is not None and not sink.finished:
        sink.finish("interrupted")
    # Errors are results here, not a reason for Locust to fail the process.
    environment.process_exit_code = 0
