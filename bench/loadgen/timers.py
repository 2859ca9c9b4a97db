"""Precise sleeps for gevent greenlets: an open-loop op goes when it is due, not a tick later.

Why: gevent's timers are libev timers, and libev sleeps in `epoll_wait`, whose timeout
has 1 ms granularity, so `gevent.sleep(0.5 ms)` wakes about 0.6 ms late at p50 and up
to a millisecond and more at the tail. Pacing used to start every op 1 ms early to hide
that, which moved the sends onto the loop's ticks: several users woke on the same tick
and queued behind each other, and the arrivals were no longer the asked process.

How: each user owns a Linux timerfd on CLOCK_MONOTONIC (the clock of `time.perf_counter`
on Linux), armed with the absolute due time. The greenlet waits for the timerfd to become
readable like for a socket: the kernel's high-resolution timer makes it readable on time,
epoll returns at once, and the other greenlets run meanwhile, no spinning. Arming costs
one `timerfd_settime` (ctypes) per wait; re-arming clears an expiry that was not read, so
nothing is read back. Where there is no timerfd (not Linux) or perf_counter is another
clock, `precise_sleep` falls back to `gevent.sleep`, whose lateness then shows as send lag.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

import gevent
from gevent.socket import wait

CLOCK_MONOTONIC = 1
TFD_CLOEXEC = 0o2000000
TFD_NONBLOCK = 0o4000
TFD_TIMER_ABSTIME = 1
_READ = 1   # libev's EV_READ


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerfdSleep:
    """`sleep(seconds)` for one greenlet at a time, exact to the kernel timer's precision.

    One per user: two greenlets waiting on one timerfd would be a gevent error.
    """

    def __init__(self, libc: ctypes.CDLL) -> None:
        self._settime = libc.timerfd_settime
        self._fd = libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        self._watcher = gevent.get_hub().loop.io(self._fd, _READ)

    def __call__(self, seconds: float) -> None:
        """Return `seconds` from now (at once for 0 or less, without yielding)."""
        if seconds <= 0:
            return
        due = time.perf_counter() + seconds
        whole = int(due)
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = whole, int((due - whole) * 1e9)
        if self._settime(self._fd, TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        wait(self._watcher)

    def close(self) -> None:
        self._watcher.close()
        os.close(self._fd)


class _GeventSleep:
    """The fallback: gevent's own timer (about 1 ms late)."""

    def __call__(self, seconds: float) -> None:
        gevent.sleep(max(seconds, 0.0))

    def close(self) -> None:
        pass


def precise_sleep() -> TimerfdSleep | _GeventSleep:
    """A new precise sleep for one greenlet (close it when the greenlet is done)."""
    clock = time.get_clock_info("perf_counter").implementation
    if not sys.platform.startswith("linux") or "CLOCK_MONOTONIC" not in clock:
        return _GeventSleep()
    try:
        return TimerfdSleep(ctypes.PyDLL(None, use_errno=True))
    except (OSError, AttributeError):   # no libc symbol, or the kernel refuses timerfds
        return _GeventSleep()
