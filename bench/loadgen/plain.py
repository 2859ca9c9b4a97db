"""Plain gevent client loops, no harness: the references `bench selftest` measures against.

What a hand-written load script would do on one Locust-like process: one greenlet per
connection, each with its own plain client (pymemcache `Client(no_delay=True)`, or
`redis.Redis`, which parses with hiredis when it is installed), reading the keys of
scenario `peak-get` (written here first) in a uniformly random order, as peak-get reads
them (a drawn-in-advance sequence: the loop costs one list index per get). Two shapes:

- closed loop (no `--rate`): every greenlet sends the next get as soon as the last one
  answered; the result is gets/s, the ceiling to hold cachebench's closed loop against;
- paced (`--rate R`): each greenlet sends on a Poisson schedule of R/connections gets/s,
  waiting with `gevent.sleep` until each send is due, and times every get around the
  call (send to reply). That time is the noise floor: what a plain client measures on
  this machine at this load, the figure cachebench's latency and service time should
  come close to. It also reports each get's latency from its intended start, as
  cachebench measures it: that one carries gevent's timer lateness (about 1 ms), and
  how a busy machine delays sends.

Run as a module, in a process of its own (gevent monkey-patches the standard library,
which `bench selftest` does not want): `python -m bench.loadgen.plain memcached
127.0.0.1:11211 --connections 8 --seconds 5 [--rate 1000]`. It prints one JSON object:
gets, seconds, throughput, and (paced) `service_us` and `latency_us` percentiles computed
with the same histogram maths as summary.json, with the histograms themselves
(`service_histogram`, `latency_histogram`, encoded as in latency.hlog) so that several
runs can be pooled.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402  (after monkey-patching, like every gevent program)
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402
from pymemcache.client.base import Client  # noqa: E402

from bench.results.histograms import (counts_array, default_layout,  # noqa: E402
                                      encode_histogram, histogram_from_values, latency_stats,
                                      to_microseconds)
from bench.scenario.model import load_scenario  # noqa: E402
from bench.targets.base import split_node  # noqa: E402
from bench.workload.ops import Workload  # noqa: E402

Get = Callable[[str], object]
#: The scenario whose keys the loops read (its prefill writes them, all hits).
SCENARIO = "peak-get"
KEY_SEQUENCE = 1 << 16


def connect(kind: str, node: str) -> tuple[Get, Callable[[dict[str, bytes]], None]]:
    """(get, set_many) of a new plain client on one connection."""
    host, port = split_node(node)
    if kind == "memcached":
        client = Client((host, port), no_delay=True, default_noreply=False)
        return client.get, client.set_many
    single = redis.Redis(host, port, single_connection_client=True)
    return single.get, single.mset


def prefill(kind: str, node: str) -> list[str]:
    """Write the scenario's keys (without TTL, like its prefill) and return them."""
    _, set_many = connect(kind, node)
    keys: list[str] = []
    for items, _ttl in Workload(load_scenario(SCENARIO), 1).prefill_batches():
        set_many(items)
        keys.extend(items)
    return keys


def key_sequence(keys: list[str], seed: int) -> list[str]:
    """KEY_SEQUENCE keys drawn uniformly (with replacement), read cyclically by a loop."""
    return random.Random(seed).choices(keys, k=KEY_SEQUENCE)


def closed_loop(get: Get, keys: list[str], end: float) -> int:
    """Gets of `keys` (cyclically) back to back until `end`; returns how many were answered."""
    done, n = 0, len(keys)
    while time.perf_counter() < end:
        get(keys[done % n])
        done += 1
    return done


def paced_loop(get: Get, keys: list[str], rate: float, end: float,
               seed: int) -> list[tuple[float, float]]:
    """Poisson-paced gets until `end`; returns each get's (seconds from send to reply,
    seconds from its intended start to reply)."""
    rng = random.Random(seed)
    times: list[tuple[float, float]] = []
    due = time.perf_counter() + rng.expovariate(rate)
    i = 0
    while due < end:
        wait = due - time.perf_counter()
        if wait > 0:
            gevent.sleep(wait)
        start = time.perf_counter()
        get(keys[i % len(keys)])
        done = time.perf_counter()
        times.append((done - start, done - due))
        i += 1
        due += rng.expovariate(rate)
    return times


def run(kind: str, node: str, connections: int, seconds: float,
        rate: float | None) -> dict[str, object]:
    """Both shapes of the module docstring; the result as printed."""
    keys = prefill(kind, node)
    gets = [connect(kind, node)[0] for _ in range(connections)]
    for get in gets:  # connect before the clock starts
        get(keys[0])
    orders = [key_sequence(keys, KEY_SEQUENCE + i) for i in range(connections)]
    began = time.perf_counter()
    end = began + seconds
    if rate is None:
        jobs = [gevent.spawn(closed_loop, get, order, end) for get, order in zip(gets, orders)]
    else:
        jobs = [gevent.spawn(paced_loop, get, order, rate / connections, end, i)
                for i, (get, order) in enumerate(zip(gets, orders))]
    gevent.joinall(jobs, raise_error=True)
    elapsed = time.perf_counter() - began
    result: dict[str, object] = {"kind": kind, "connections": connections, "seconds": elapsed}
    if rate is None:
        result["gets"] = sum(job.value for job in jobs)
    else:
        times = [t for job in jobs for t in job.value]
        result["gets"] = len(times)
        for index, name in enumerate(("service", "latency")):
            histogram = histogram_from_values(to_microseconds([t[index] for t in times])[0])
            result[f"{name}_us"] = latency_stats(counts_array(histogram), default_layout())
            result[f"{name}_histogram"] = encode_histogram(histogram)
    result["throughput"] = result["gets"] / elapsed
    return result


USAGE = ("usage: python -m bench.loadgen.plain {memcached,redis} HOST:PORT "
         "[--connections N] [--seconds S] [--rate R]")


def parse(argv: list[str]) -> tuple[str, str, int, float, float | None]:
    """(kind, node, connections, seconds, rate or None) from this module's command line.
    Parsed by hand: argparse is for bench/cli.py alone (the import-linter contracts), and
    `bench selftest` is this module's only caller."""
    if len(argv) < 2 or argv[0] not in ("memcached", "redis") or len(argv) % 2:
        raise SystemExit(USAGE)
    options = {"--connections": "1", "--seconds": "5", "--rate": None}
    for flag, value in zip(argv[2::2], argv[3::2]):
        if flag not in options:
            raise SystemExit(f"{USAGE}\nunknown option {flag}")
        options[flag] = value
    try:
        rate = options["--rate"]
        return (argv[0], argv[1], int(options["--connections"] or 1),
                float(options["--seconds"] or 5), float(rate) if rate else None)
    except ValueError as err:
        raise SystemExit(f"{USAGE}\n{err}") from None


def main() -> None:
    print(json.dumps(run(*parse(sys.argv[1:]))))


if __name__ == "__main__":
    main()
