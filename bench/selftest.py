"""`bench selftest` (`make perf`): the harness measured against plain loops, as ratios.

Machines here are shared and noisy, so nothing is judged by absolute time: each number
is set beside a reference measured in the same run (A/B/A order, the reference
averaged), and the table prints the ratio. What it measures:

- gets/s of one Locust worker process (closed loop, scenario `peak-get`) against a
  plain single-connection pymemcache loop, and against memcslap (libmemcached, C) when
  it is installed;
- the CPU cost of generating an op (scenarios `peak-get`, `mediawiki`, `fb-etc`) as a
  share of the CPU one op costs a worker (generate + execute; budget: at most 5%);
- the recorder's hot path against a bare `list.append`;
- analyzing one hour of intervals (3600 x 8 ops) as a share of that hour (budget: 1%).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymemcache.client.base import Client
from rich.console import Console
from rich.table import Table

from bench import cluster
from bench.analysis import runs as analyze
from bench.results import recorder
from bench.scenario.model import load_scenario
from bench.targets import open_target, parse_target
from bench.workload.executor import Executor
from bench.workload.ops import Workload

GENERATED_OPS = 200_000
EXECUTED_OPS = 20_000


@contextmanager
def memcached_node(url: str | None) -> Iterator[str]:
    """The given memcached URL, or a node started for the measurement and stopped after."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="cachebench-selftest-") as workdir:
        server = cluster.start_memcached(0, Path(workdir), memory_mb=64)
        try:
            yield f"memcached://{server.address}"
        finally:
            server.stop()


def plain_gets_per_s(node: str, seconds: float) -> float:
    """A bare pymemcache loop of single-key gets: the ceiling of Python on one connection.
    It reads the same keys and values as `peak-get` (its prefill)."""
    host, port = node.rsplit(":", 1)
    client = Client((host, int(port)), default_noreply=False)
    keys: list[str] = []
    for items, ttl in Workload(load_scenario("peak-get"), 1).prefill_batches():
        client.set_many(items, expire=int(ttl))
        keys.extend(items)
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for key in keys:
            client.get(key)
        done += len(keys)
    client.close()
    return done / seconds


def harness_gets_per_s(url: str, seconds: float, users: int) -> float:
    """Throughput of `bench run peak-get` with one Locust process (closed loop)."""
    with tempfile.TemporaryDirectory(prefix="cachebench-selftest-run-") as tmp:
        out = Path(tmp) / "run"
        subprocess.run([sys.executable, "-m", "bench", "run", "peak-get", "--target", url,
                        "--duration", f"{seconds}s", "--warmup", "1s", "--out", str(out),
                        "--users", str(users),
                        "--quiet"], check=True, capture_output=True)
        summary = json.loads((out / "summary.json").read_text())
    return float(summary["total"]["throughput"])


def memcslap_gets_per_s(node: str, count: int = 50_000) -> float | None:
    """libmemcached's memcslap, single thread: a C reference (None when not installed)."""
    binary = shutil.which("memcslap")
    if binary is None:
        return None
    result = subprocess.run([binary, f"--servers={node}", "--test=get", "--concurrency=1",
                             f"--execute-number={count}"], capture_output=True, text=True)
    match = re.search(r"Time to get\s+(\d+) keys by\s+1 threads:\s+([\d.]+) seconds",
                      result.stdout + result.stderr)
    if not match or float(match.group(2)) <= 0:
        return None
    return int(match.group(1)) / float(match.group(2))


def generation_share(scenario_name: str, url: str, ops: int = GENERATED_OPS) -> tuple[float, float]:
    """(ns per generated op, share of a worker's CPU per op spent generating it).

    The worker's CPU per op is measured here as generation plus execution against the
    target in one loop, without Locust or the recorder (regeneration sleeps skipped), so
    the share is an upper bound of what a Locust worker at full load spends on it.
    """
    scenario = load_scenario(scenario_name)
    stream = Workload(scenario, 1).stream(0, 1)
    for _ in range(ops):  # warm: key and size tables fill as a long run's would
        next(stream)
    start = time.process_time()
    for _ in range(ops):
        next(stream)
    generate = (time.process_time() - start) / ops
    target = open_target(parse_target(url), timeout=5.0)
    executor = Executor(target, scenario, sleep=lambda seconds: None)
    executed = [next(stream) for _ in range(EXECUTED_OPS)]
    start = time.process_time()
    for op in executed:
        executor.execute(op)
    execute = (time.process_time() - start) / len(executed)
    target.close()
    return generate * 1e9, generate / (generate + execute)


def measure(url: str, seconds: float, say: Console) -> list[tuple[str, str, str]]:
    """Every measurement, as (what, value, ratio or share) rows."""
    node = parse_target(url).nodes[0]
    say.print(f"measuring against {url} ({seconds:g} s per run) ...")
    plain_a = plain_gets_per_s(node, seconds)
    one_user = harness_gets_per_s(url, seconds, users=1)
    harness = harness_gets_per_s(url, seconds, users=8)
    plain_b = plain_gets_per_s(node, seconds)
    plain = (plain_a + plain_b) / 2
    rows = [("plain pymemcache loop, 1 connection", f"{plain:,.0f} gets/s", "1.00 (reference)"),
            ("cachebench, 1 Locust process, 1 user", f"{one_user:,.0f} gets/s",
             f"{one_user / plain:.2f} of plain"),
            ("cachebench, 1 Locust process, 8 users", f"{harness:,.0f} gets/s",
             f"{harness / plain:.2f} of plain")]
    memcslap = memcslap_gets_per_s(node)
    if memcslap:
        rows.append(("memcslap (C), 1 thread", f"{memcslap:,.0f} gets/s",
                     f"{memcslap / plain:.2f} of plain"))
    for name in ("peak-get", "mediawiki", "fb-etc"):
        ns, share = generation_share(name, url)
        rows.append((f"op generation, {name}", f"{ns:,.0f} ns/op",
                     f"{share:.1%} of a worker's CPU per op (budget 5%)"))
    rec = recorder.bench_record_overhead()
    rows.append(("recorder: record + flush per sample", f"{rec['per_sample_ns']:,.0f} ns",
                 f"{rec['ratio_to_append']:.1f}x a list.append"))
    speed = analyze.bench_analyze_speed(3600, 8)
    rows.append(("analyze 1 h (3600 intervals x 8 ops)", f"{speed['analyze_s']:.1f} s",
                 f"{speed['analyze_s'] / 3600:.2%} of the hour (budget 1%)"))
    return rows


def command(args: Namespace) -> int:
    say = Console()
    with memcached_node(args.target) as url:
        rows = measure(url, args.seconds, say)
    table = Table(title="cachebench selftest (ratios measured in the same run)")
    for column in ("measurement", "value", "ratio / share"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    say.print(table)
    return 0
