"""Start and stop the Locust process tree from `bench run` and `bench worker`.

Why this is more than `subprocess.Popen`: Locust must never outlive the `bench` that
started it, or it goes on sending the full load unsupervised, re-parented to init.

- Locust runs in its own session, hence its own process group: a terminal's Ctrl-C
  reaches `bench` only, and `bench` decides how Locust stops.
- The kernel sends Locust SIGTERM when `bench` dies, even by kill -9
  (`PR_SET_PDEATHSIG`). Locust's own SIGTERM handling then stops the users and finishes
  the run directory. Processes that Locust forks (`--processes`) are not covered by
  that; each Locust process also watches its parent (`bench.loadgen.supervise`).
- `bench` itself turns SIGTERM and SIGHUP into `Terminated`, as Python turns SIGINT into
  KeyboardInterrupt, so that both end in `stop`: SIGTERM to the Locust master, a short
  grace period for it to finish the run directory, then SIGKILL to whatever is left of
  its process group.

This module runs in the orchestrating process and never imports Locust.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

#: How long the Locust master gets to stop its users and finish the run directory
#: after SIGTERM before its whole process group is killed.
STOP_GRACE_S = 1.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_POLL_S = 0.02


class Terminated(Exception):
    """`bench` got SIGTERM or SIGHUP (the SIGINT counterpart is KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up here in the parent: the child between fork and exec must
    not load libraries (another thread of the parent may hold the loader's lock)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the supervise watchdog still applies
        return None


_PRCTL = _prctl()


def _die_with_parent(parent: int) -> None:
    """In the child between fork and exec: SIGTERM when the parent dies. If the parent
    died before prctl took effect, the child is already orphaned: it stops at once."""
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def start(argv: list[str], env: dict[str, str], output: Path | None = None) -> subprocess.Popen:
    """Start Locust in a new session tied to this process; its output goes to `output`
    (the terminal when None)."""
    tie = partial(_die_with_parent, os.getpid())
    if output is None:
        return subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=tie)
    with open(output, "w") as out:  # the child keeps its own copy
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=tie)


@contextmanager
def terminate_raises() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `Terminated` (main thread only: signal
    handlers cannot be set elsewhere, e.g. runs driven from a thread pool in tests)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, raise_terminated) for sig in (signal.SIGTERM,
                                                                        signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def running(proc: subprocess.Popen) -> bool:
    """Whether the Locust master still runs. Its exit is noticed without reaping it, so
    its pid, which is also its process group's id, cannot be reused before `reap`."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:  # already reaped
        return False


def reap(proc: subprocess.Popen) -> int:
    """Kill what is left of Locust's process group (forked workers), reap the master and
    return its exit code."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty already
    return proc.wait()


def stop(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM to the Locust master, up to `grace_s` for it to finish the run directory,
    then `reap`. A second Ctrl-C during the grace period ends it at once (and the
    KeyboardInterrupt goes on up, after the reap)."""
    try:
        if running(proc):
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while running(proc) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
    finally:
        code = reap(proc)
    return code
