"""The Locust side of a run: cache users, their process's state, and Locust's hooks.

This module is imported only inside Locust processes (through `bench/loadgen/locustfile.py`),
never by `bench run` itself: importing Locust monkey-patches the standard library for
gevent, which the orchestrating process does not want.

Who does what, per Locust process role:

- every process that runs users (local runner or worker) has one `ProcessLoad`: the
  workload, one `Recorder` and one `LoadMeter` shared by its users (greenlets are
  cooperative, so no lock), a greenlet that closes intervals and ships them, and a
  watchdog greenlet that measures how late the event loop wakes it and the process's
  CPU (the load figures of the validity verdict, `bench.results.loadstats`);
- the process that owns the run directory (local runner or master) has one `RunSink`
  (`sink.py`): it merges the intervals of all sources by start time, writes them as they
  become complete, snapshots server counters at the start and end of the measured window,
  and finishes the run directory.

When each user sends its ops is `pacing.py`'s job (no Locust in it, so it is unit-tested
alone); this module runs it on gevent's clock.

Latency never goes through Locust's per-request event (one event per cache op costs
more than the op). Locust's statistics, which feed its web UI and console, are updated
in bulk once per interval from our histograms, so the counts and rates it shows are
the real ones even though its own per-request rounding is too coarse for a cache.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import numpy as np
from locust import User, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsEntry, StatsError, bucket_response_time

from bench.loadgen.pacing import arrival_gaps, run_closed_loop, run_open_loop
from bench.loadgen.runconfig import CONFIG_ENV, RunConfig
from bench.loadgen.sink import LOCAL_SOURCE, MSG_DONE, MSG_INTERVAL, RunSink, measure_start
from bench.loadgen.timers import precise_sleep
from bench.results.histograms import default_layout, recorded_values
from bench.results.loadstats import LoadMeter
from bench.results.recorder import Interval, Recorder, with_load
from bench.scenario.model import Scenario
from bench.targets import open_target, parse_target
from bench.workload.executor import Executor
from bench.workload.ops import Op, Workload

FLUSH_EVERY_S = 0.25
#: The watchdog sleeps this long; how much later it wakes is the event loop's blocking.
WATCHDOG_PERIOD_S = 0.010
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
        origin = (time.time(), time.perf_counter())
        self.recorder = Recorder(interval_s=cfg.interval_s, origin=origin)
        self.meter = LoadMeter(interval_s=cfg.interval_s, origin=origin)
        self.measure_start = measure_from + time.perf_counter() - time.time()
        self.load_start = self.measure_start - cfg.load.warmup_s
        self.end = self.measure_start + cfg.load.duration_s
        self.recorder.discard_before(self.measure_start)
        self.recorder.close_at(self.end)
        self.meter.window(self.measure_start, self.end)
        runner = environment.runner
        self.is_worker = isinstance(runner, WorkerRunner)
        # The name the sink knows this process by (Locust messages carry the client id).
        self.source = runner.client_id if self.is_worker else LOCAL_SOURCE
        self.worker_index = max(runner.worker_index, 0) if self.is_worker else 0
        opts = environment.parsed_options
        self.workers = max(getattr(opts, "cachebench_workers", 1), 1) if self.is_worker else 1
        self.total_users = max(int(getattr(opts, "num_users", 0) or cfg.load.users), 1)
        self._next_local_user = 0
        self._active_users = 0
        self._done = False
        self._flusher = gevent.spawn(self._flush_loop)
        self._watchdog = gevent.spawn(self._watch_loop)
        # A process that got no users (more processes than users in the web UI) has
        # nothing to wait for: it still has to tell the sink it is done.
        gevent.spawn_later(max(0.0, self.end - time.perf_counter()) + IDLE_GRACE_S,
                           self._finish_if_idle)
        default_layout()  # built now, not in the first measured interval's stats
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
        self._watchdog.kill()
        self._ship(time.perf_counter(), final=True)
        _deliver(self.environment, MSG_DONE)

    def _flush_loop(self) -> None:
        """Ship intervals as they close, yielding to the users between ops' histograms
        (an interval's ops at once held the loop for up to 15 ms with 6 ops, measured)."""
        while not self._done:
            gevent.sleep(FLUSH_EVERY_S)
            if not self._done:
                self._ship(time.perf_counter(), pause=_let_users_run)

    def _watch_loop(self) -> None:
        """Sleep WATCHDOG_PERIOD_S at a time and tell the meter how late each wake-up
        was (a greenlet that kept the loop busy, a GC pause) and the CPU used so far."""
        while not self._done:
            asleep = time.perf_counter()
            gevent.sleep(WATCHDOG_PERIOD_S)
            now, cpu = time.perf_counter(), os.times()
            self.meter.sample(now, now - asleep - WATCHDOG_PERIOD_S, cpu.user, cpu.system)

    def _ship(self, now: float, final: bool = False,
              pause: Callable[[], None] | None = None) -> None:
        """Close what ended by `now` in the recorder and the meter, and send it; `pause`
        (Recorder.flush's) lets due users run between the ops of a closed interval."""
        intervals = with_load(self.recorder.flush(now, final, pause=pause),
                              self.meter.flush(now, final),
                              self.source, self.cfg.interval_s)
        for interval in intervals:
            feed_locust_stats(self.environment.stats, interval, pause=_let_users_run)
            _deliver(self.environment, MSG_INTERVAL, interval)


def _let_users_run() -> None:
    """Yield to every greenlet that is ready (users whose ops are due), then come back."""
    gevent.sleep(0)


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


def feed_locust_stats(stats: Any, interval: Interval,
                      pause: Callable[[], None] | None = None) -> None:
    """Add one interval to Locust's statistics in bulk (what its UI and console show);
    `pause()` after each op."""
    second = int(interval.start)
    for name, op in interval.ops.items():
        if pause is not None:
            pause()
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


def run_paced(ops: Iterator[Op], executor: Executor, recorder: Recorder, rate_per_user: float,
              arrival: str, rng: np.random.Generator, start: float, end: float,
              meter: LoadMeter | None = None) -> None:
    """One user's open loop on this process's clock (perf_counter seconds): intended
    starts from a random phase after `start`, at `rate_per_user` (Poisson or uniform),
    until `end`; each op is sent when it is due, by a precise sleep (timers.py)."""
    gaps = arrival_gaps(rate_per_user, arrival, rng)
    first = start + rng.uniform(0, 1.0 / rate_per_user)
    sleep = precise_sleep()
    try:
        run_open_loop(ops, executor, recorder, gaps, first, end, clock=time.perf_counter,
                      sleep=sleep, meter=meter)
    finally:
        sleep.close()


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
            run_paced(self.ops, self.executor, load.recorder,
                      float(cfg.load.rate) / load.total_users, cfg.load.arrival,
                      np.random.default_rng([cfg.load.seed, 7919, self.index]),
                      load.load_start, load.end, load.meter)
        else:
            gevent.sleep(max(0.0, load.load_start - time.perf_counter()))
            run_closed_loop(self.ops, self.executor, load.recorder, cfg.load.think_s, load.end,
                            clock=time.perf_counter, sleep=gevent.sleep, meter=load.meter)
        raise StopUser()

    def on_stop(self) -> None:
        if getattr(self, "target", None) is not None:
            self.target.close()
        if getattr(self, "load", None) is not None:
            self.load.user_finished()


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
