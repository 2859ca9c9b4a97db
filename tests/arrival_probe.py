"""Send a short open loop through the Locust side's own pacing and print when ops went.

Run by tests/test_arrivals.py in a process of its own (importing bench.loadgen.users
imports Locust, which monkey-patches the standard library for gevent):

    python tests/arrival_probe.py MEMCACHED_URL RATE USERS SECONDS

Each of USERS greenlets runs `users.run_paced` (the open loop a CacheUser runs: Poisson
gaps, precise sleeps) with its own Executor and connection, at RATE/USERS ops/s, on the
scenario peak-get. Prints JSON: for each user, the (intended start, actual send) of the
first call of every op, in perf_counter seconds.
"""

from __future__ import annotations

import json
import sys
import time

from bench.loadgen.users import run_paced  # first: Locust monkey-patches on import

import gevent  # noqa: E402
import numpy as np  # noqa: E402

from bench.scenario.model import load_scenario  # noqa: E402
from bench.targets import open_target, parse_target  # noqa: E402
from bench.workload.executor import Executor, Sample  # noqa: E402
from bench.workload.ops import Workload  # noqa: E402


class SendLog:
    """A recorder that keeps (intended start, actual send) of each op's first call."""

    def __init__(self) -> None:
        self.sends: list[tuple[float, float]] = []

    def record_sample(self, sample: Sample, origin: float) -> None:
        if not self.sends or self.sends[-1][0] != origin:
            self.sends.append((origin, sample.start))


def main(url: str, rate: float, users: int, seconds: float) -> None:
    scenario = load_scenario("peak-get")
    workload = Workload(scenario, 1)
    logs = [SendLog() for _ in range(users)]
    executors = [Executor(open_target(parse_target(url)), scenario) for _ in range(users)]
    for executor in executors:  # connect before the clock starts
        executor.execute(next(workload.stream(0, 1)))
    start = time.perf_counter() + 0.1
    greenlets = [gevent.spawn(run_paced, workload.stream(i, users), executors[i], logs[i],
                              rate / users, "poisson", np.random.default_rng([1, i]), start,
                              start + seconds) for i in range(users)]
    gevent.joinall(greenlets, raise_error=True)
    print(json.dumps([log.sends for log in logs]))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
