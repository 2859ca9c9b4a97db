"""Inside the Locust processes: a run never goes on unsupervised, and never looks complete
when it was not.

Imported only inside Locust processes (by `bench.loadgen.users`). Three guards:

- every Locust process watches its parent: when it changes (the parent died and the
  process was re-parented), the process stops itself the way SIGTERM stops Locust.
  `bench` ties the Locust master to itself with PR_SET_PDEATHSIG (`bench.loadgen.launch`),
  but the workers Locust forks for `--processes` have the master as parent, and a master
  killed outright would leave them sending load;
- the process that owns the run directory checks, when every source has reported done,
  whether the measured window was over (`end_status`): sources also report done when
  Locust stops early (Ctrl-C, SIGTERM, the web UI's stop), and such a run is
  "interrupted", not "completed";
- the master watches its workers (`guard`): a worker that Locust marks missing (no
  heartbeat) or that disappears before it reported done makes the run incomplete, and
  it is aborted at once with the worker named, instead of waiting out Locust's time
  limit with half the load. On quitting before the end, the master (or local runner)
  first stops the users so that every source ships what it measured.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Protocol

import gevent
from locust import events
from locust.runners import STATE_MISSING, MasterRunner

PARENT_POLL_S = 0.2
WORKER_POLL_S = 0.5
#: A source that reports done this close to the end of the measured window completed it
#: (clocks of worker hosts are assumed NTP-synchronised, not identical).
END_TOLERANCE_S = 0.5
#: On quitting early: how long to wait for the sources' last intervals.
WIND_DOWN_S = 1.0

log = logging.getLogger("cachebench")


class Sink(Protocol):
    """What the guards need of the run-directory side (`RunSink`)."""

    done: set[str]
    finished: bool

    def finish(self, status: str, reason: str | None = None) -> None: ...


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    gevent.spawn(_watch_parent, os.getppid())


def _watch_parent(parent: int) -> None:
    """Stop this process (as SIGTERM would) once its parent is gone. In the master that
    may be a second SIGTERM after the parent-death signal's; Locust's handler copes, and
    a worker whose test is over (state stopped, waiting for the next one) must go too."""
    while os.getppid() == parent:
        gevent.sleep(PARENT_POLL_S)
    log.warning("cachebench: parent process %d is gone; stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)


def end_status(measured_until: float) -> tuple[str, str | None]:
    """(status, reason) of a run whose sources all reported done now; `measured_until`
    is the epoch second at which the measured window ends."""
    left = measured_until - time.time()
    if left <= END_TOLERANCE_S:
        return "completed", None
    return "interrupted", f"stopped {left:.1f} s before the end of the measured window"


def guard(environment: Any, sink: Sink) -> None:
    """Start the guards of the process that owns the run directory (master or local)."""
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        gevent.spawn(_watch_workers, runner, sink, [c.id for c in runner.clients.all])
    # Registered after bench.loadgen.users' own quitting hook, which finishes the run
    # as "interrupted": Locust fires `quitting` in reverse order, so this runs first.
    environment.events.quitting.add_listener(lambda **_: _wind_down(runner, sink))


def _watch_workers(runner: Any, sink: Sink, workers: list[str]) -> None:
    """Abort the run when a worker is lost before it reported done."""
    while not sink.finished:
        gevent.sleep(WORKER_POLL_S)
        states = {client.id: client.state for client in runner.clients.all}
        lost = [w for w in workers if w not in sink.done
                and states.get(w, STATE_MISSING) == STATE_MISSING]
        if lost and not sink.finished:
            log.error("cachebench: load process %s lost", ", ".join(lost))
            sink.finish("aborted", reason=f"load process {', '.join(lost)} was lost (no "
                                          "heartbeat, or it exited) before the run ended; "
                                          "the run is incomplete")


def _wind_down(runner: Any, sink: Sink) -> None:
    """Quitting before the run finished: stop the users, so that every source ships its
    last intervals and reports done, and give that up to WIND_DOWN_S."""
    if sink.finished:
        return
    gevent.spawn(runner.stop)  # a master's stop blocks until its workers stopped
    deadline = time.monotonic() + WIND_DOWN_S
    while not sink.finished and time.monotonic() < deadline:
        gevent.sleep(0.05)
