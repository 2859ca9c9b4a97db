"""`python -m bench.rss` (`make perf`): does the load generator's memory stay flat?

A long run must not grow the Locust process: a leak of a few MB a minute turns an
hour-long run into swapping, and its latencies into the machine's, not the cache's.
This runs `bench run mediawiki` (open loop, no prefill, no report) against a memcached
started for it, samples the RSS of every Locust process of the run every few seconds,
and prints the RSS after warm-up, at the end, and the growth over the second half of
the measured window (where every cache a process keeps, such as rendered keys, has
long filled): "flat" when that growth is under FLAT_MB.

The figures are the machine's own (RSS does not depend on its speed the way latency
does), and the verdict compares the run with itself, start against end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import cluster

FLAT_MB = 8.0
SAMPLE_EVERY_S = 5.0
SCENARIO = "mediawiki"


def rss_mb(pid: int) -> float:
    """Summed RSS (MiB) of `pid`'s descendants: the Locust master and any workers."""
    total = 0
    for child in psutil.Process(pid).children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def sample_run(url: str, seconds: float, warmup: float, out: Path) -> list[tuple[float, float]]:
    """(seconds since start, RSS MiB) while `bench run` runs; the run's exit status
    must be a completed run's (0 or 1: the SLO is not what is measured here)."""
    argv = [sys.executable, "-m", "bench", "run", SCENARIO, "--target", url,
            "--duration", f"{seconds:g}s", "--warmup", f"{warmup:g}s", "--no-prefill",
            "--no-report", "--quiet", "--out", str(out)]
    run = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start, samples = time.monotonic(), []
    while run.poll() is None:
        with_rss = rss_mb(run.pid) if psutil.pid_exists(run.pid) else 0.0
        if with_rss:
            samples.append((time.monotonic() - start, with_rss))
        time.sleep(SAMPLE_EVERY_S)
    if run.returncode not in (0, 1):
        raise SystemExit(f"bench run failed ({run.returncode}): {run.stderr.read()}")
    return samples


def report(samples: list[tuple[float, float]], seconds: float, warmup: float) -> bool:
    """Print the figures; True when RSS is flat over the second half of the window."""
    startup = samples[0][0] if samples else 0.0
    window = [(t, mb) for t, mb in samples if t >= startup + warmup]
    if len(window) < 4:
        raise SystemExit("too few samples: run longer (--seconds)")
    half = [(t, mb) for t, mb in window if t >= window[0][0] + seconds / 2]
    growth = half[-1][1] - half[0][1]
    print(f"{SCENARIO}, {seconds:g} s measured after {warmup:g} s of warm-up, RSS of the "
          f"Locust processes sampled every {SAMPLE_EVERY_S:g} s:")
    print(f"  after warm-up      {window[0][1]:8.1f} MiB")
    print(f"  half-way           {half[0][1]:8.1f} MiB")
    print(f"  end                {window[-1][1]:8.1f} MiB")
    print(f"  peak               {max(mb for _, mb in window):8.1f} MiB")
    tenths = [min(window, key=lambda sample: abs(sample[0] - window[0][0] - seconds * i / 10))
              for i in range(11)]
    print("  every tenth        " + " ".join(f"{mb:.0f}" for _, mb in tenths) + " MiB")
    print(f"  second-half growth {growth:+8.1f} MiB "
          f"({growth / max(half[-1][0] - half[0][0], 1) * 60:+.2f} MiB/min)")
    flat = growth < FLAT_MB
    print(f"  {'flat' if flat else 'GROWING'} (second-half growth < {FLAT_MB:g} MiB)")
    return flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rss", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="measured time of the run (default 300; 3600 for an hour)")
    parser.add_argument("--warmup", type=float, default=30.0, help="warm-up (default 30)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cachebench-rss-") as workdir:
        server = cluster.start_memcached(0, Path(workdir), memory_mb=512)
        try:
            samples = sample_run(server.url, args.seconds, args.warmup,
                                 Path(workdir) / "run")
        finally:
            server.stop()
    return 0 if report(samples, args.seconds, args.warmup) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
