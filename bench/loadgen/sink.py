"""The run-directory side of a run: one RunSink merges every source's intervals and writes them.

It lives in the process that owns the run directory (the local runner, or the master
of a distributed run). Each source (the local users, or one Locust worker) ships its
closed intervals (MSG_INTERVAL) and finally says it is done (MSG_DONE, possibly with why
it could not run). Intervals with the same start are merged by adding histograms, and an
interval is written once every source has reported it, or INTERVAL_GRACE_S after it
ended; server counters are snapshotted at the start and the end of the measured window,
which `measure_start` puts on an interval boundary.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import gevent

from bench.loadgen import supervise
from bench.loadgen.runconfig import RunConfig
from bench.results import rundir
from bench.results.recorder import Interval
from bench.targets import parse_target, server_stats

MSG_INTERVAL = "cachebench_interval"
MSG_DONE = "cachebench_done"
#: The source name of the users in the sink's own process (workers go by their node id).
LOCAL_SOURCE = "local"
#: An interval is written once every source reported it, or this long after it ended.
INTERVAL_GRACE_S = 3.0

log = logging.getLogger("cachebench")


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
        # Known from the start (`measured` only at the end): `bench run` times faults by it.
        self.writer = rundir.RunWriter(cfg.run_dir, cfg.run_info, time.time(), cfg.interval_s,
                                       measure_from=measure_from)
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
            if len(self.done) >= self.sources:  # completed, or stopped before the end
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
        self.writer.set_measured(self.measured_from, max(measured_to, self.measured_from))
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
