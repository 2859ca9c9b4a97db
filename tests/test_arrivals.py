"""Open-loop sends on a real event loop follow the asked arrival process.

Pacing's unit tests (test_pacing.py) run on a fake clock. These run the Locust side's
own open loop (`users.run_paced`: Poisson gaps, timerfd sleeps) against a real memcached
in a process of its own (tests/arrival_probe.py), and test when the ops were really sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "arrival_probe.py"
ALPHA = 1e-3
RATE, USERS, SECONDS = 400.0, 4, 10.0
TICK_S = 1e-3


def _sends(url: str) -> list[np.ndarray]:
    """Per user, the perf_counter times at which its ops were sent."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(PROBE), url, str(RATE), str(USERS), str(SECONDS)],
                          env=env, capture_output=True, text=True, check=True, timeout=60)
    return [np.array([sent for _, sent in user]) for user in json.loads(done.stdout)]


@pytest.mark.slow
def test_sent_gaps_are_exponential_with_the_asked_mean(memcached_server) -> None:
    """H0 (Kolmogorov-Smirnov against a fully specified exponential): each user's gaps
    between actual sends come from its Poisson process, exponential with mean
    USERS / RATE = 10 ms. KS bounds the largest distance between the empirical CDF of
    ~4,000 gaps and that exponential's, so it checks the shape and the scale (the rate)
    at once. Its power against what pacing did before (sends moved onto gevent's 1 ms
    event-loop ticks) is checked on the same sends moved onto such ticks: rejected."""
    sends = _sends(memcached_server.url)
    expected = stats.expon(scale=USERS / RATE).cdf
    gaps = np.concatenate([np.diff(user) for user in sends])
    assert len(gaps) > 0.9 * RATE * SECONDS
    assert stats.kstest(gaps, expected).pvalue > ALPHA
    on_ticks = np.concatenate([np.diff(np.ceil(user / TICK_S)) * TICK_S for user in sends])
    assert stats.kstest(on_ticks, expected).pvalue < ALPHA
