"""The precise sleep open-loop users pace with (bench/loadgen/timers.py), on a real gevent hub.

No absolute timing is asserted: the timerfd sleep is compared with gevent's own sleep
in the same test, alternated, and checked never to wake before its time.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pytest

gevent = pytest.importorskip("gevent")

from bench.loadgen.timers import TimerfdSleep, precise_sleep  # noqa: E402

WAITS = 200


def _lateness(sleep, seconds: float) -> float:
    due = time.perf_counter() + seconds
    sleep(seconds)
    return time.perf_counter() - due


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux's")
def test_timerfd_sleep_is_never_early_and_much_closer_than_gevent_sleep() -> None:
    """Random waits of 0.2-2 ms, alternated between the two sleeps: the timerfd one never
    returns before its due time, and its median lateness is under half gevent's (whose
    timers have the event loop's 1 ms granularity)."""
    sleep = precise_sleep()
    assert isinstance(sleep, TimerfdSleep)
    rng = np.random.default_rng(5)
    late: dict[str, list[float]] = {"timerfd": [], "gevent": []}
    try:
        for seconds in rng.uniform(0.0002, 0.002, WAITS).tolist():
            late["timerfd"].append(_lateness(sleep, seconds))
            late["gevent"].append(_lateness(gevent.sleep, seconds))
    finally:
        sleep.close()
    assert min(late["timerfd"]) >= 0
    assert statistics.median(late["timerfd"]) < statistics.median(late["gevent"]) / 2

