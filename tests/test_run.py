"""End-to-end runs through Locust against real servers: the run directory, honest
latency under a stall, and counts that agree with the servers' own counters.

Each test runs `bench run` as a user would (through `bench.cli.main`), so Locust runs
in a child process exactly as in production.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.results.hlog import read_hlog
from helpers_exits import or_invalid

SCENARIOS = Path(__file__).parent / "scenarios"

pytestmark = pytest.mark.slow


def run_bench(target_url: str, out: Path, scenario: str, *extra: str) -> int:
    return main(["run", scenario, "--target", target_url, "--out", str(out), "--quiet",
                 *extra])


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_smoke_run_writes_the_run_directory(memcached_server: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = run_bench(memcached_server.url, out, "smoke", "--duration", "3s", "--warmup", "1s")
    assert rc in or_invalid(0)
    for name in ("run.json", "latency.hlog", "timeline.csv", "loadgen.csv", "server-stats.json",
                 "summary.json"):
        assert (out / name).is_file(), name
    info = load_json(out / "run.json")
    assert info["status"] == "completed" and info["completed"] is True
    assert info["target"]["url"] == memcached_server.url
    summary = load_json(out / "summary.json")
    assert summary["completed"] is True
    assert {"get", "set"} <= set(summary["ops"])
    total = summary["total"]
    # 2000 ops/s asked for 3 s; cache-aside sets after misses come on top of that.
    assert 0.9 * 6000 <= total["count"] <= 2 * 6000
    assert total["errors"] == 0
    for op in summary["ops"].values():
        lat, svc = op["latency_us"], op["service_us"]
        assert 1 <= lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
        assert svc["p50"] <= lat["p50"] * 1.01 + 1
    tags = {entry.tag for entry in read_hlog(out / "latency.hlog")}
    assert {"get", "get.service", "set", "set.service"} <= tags


def test_stall_shows_in_latency_not_in_service_time(memcached_server: Any,
                                                   tmp_path: Path) -> None:
    """Coordinated omission: pause the server for 1 s of a 10 s run at 1000 ops/s.

    Ops due during the pause are measured from their intended start, so about 10% of
    them wait between 0 and 1 s: p99 latency must be hundreds of ms. Service time
    counts from the actual send; only the few ops in flight at the pause see it, so
    its p99 stays at cache speed.
    """
    out = tmp_path / "run"

    def stall() -> None:
        time.sleep(5.0)
        memcached_server.pause()
        time.sleep(1.0)
        memcached_server.resume()

    staller = threading.Thread(target=stall)
    staller.start()
    try:
        rc = run_bench(memcached_server.url, out, str(SCENARIOS / "stall.yaml"),
                       "--timeout", "5s")
    finally:
        staller.join()
        memcached_server.resume()
    assert rc in or_invalid(0, 1)
    get = load_json(out / "summary.json")["ops"]["get"]
    assert get["errors"] == 0
    assert get["latency_us"]["p99"] >= 300_000, get["latency_us"]
    assert get["service_us"]["p99"] <= 50_000, get["service_us"]
    assert get["latency_us"]["max"] >= 900_000


def _delta(stats: dict[str, Any], counter: str) -> int:
    """Sum over nodes of after - before for one server counter."""
    before, after = stats["before"]["nodes"], stats["after"]["nodes"]
    return sum(int(after[node].get(counter, 0)) - int(before[node].get(counter, 0))
               for node in after)


def _sum(summary: dict[str, Any], field: str, ops: tuple[str, ...]) -> int:
    return sum(summary["ops"][op][field] or 0 for op in ops if op in summary["ops"])


READS = ("get", "get_multi")
WRITES = ("set", "add", "replace")


def _counts_run(url: str, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    out = tmp_path / "run"
    rc = run_bench(url, out, str(SCENARIOS / "counts.yaml"))
    assert rc in or_invalid(0, 1)
    summary = load_json(out / "summary.json")
    assert summary["total"]["errors"] == 0
    assert _sum(summary, "hits", READS) > 0 and _sum(summary, "misses", READS) > 0
    return summary, load_json(out / "server-stats.json")


def test_counts_agree_with_memcached(memcached_server: Any, tmp_path: Path) -> None:
    summary, stats = _counts_run(memcached_server.url, tmp_path)
    assert _delta(stats, "cmd_get") == _sum(summary, "keys", READS)
    assert _delta(stats, "get_hits") == _sum(summary, "hits", READS)
    assert _delta(stats, "get_misses") == _sum(summary, "misses", READS)
    assert _delta(stats, "cmd_set") == _sum(summary, "count", WRITES)
    deletes = _delta(stats, "delete_hits") + _delta(stats, "delete_misses")
    assert deletes == summary["ops"]["delete"]["count"]


def _check_redis_counts(summary: dict[str, Any], stats: dict[str, Any], *,
                        exact_mget: bool) -> None:
    assert _delta(stats, "keyspace_hits") == _sum(summary, "hits", READS)
    assert _delta(stats, "keyspace_misses") == _sum(summary, "misses", READS)
    assert _delta(stats, "cmdstat_get_calls") == summary["ops"]["get"]["count"]
    assert _delta(stats, "cmdstat_set_calls") == _sum(summary, "count", WRITES)
    assert _delta(stats, "cmdstat_del_calls") == summary["ops"]["delete"]["count"]
    if exact_mget:
        assert _delta(stats, "cmdstat_mget_calls") == summary["ops"]["get_multi"]["count"]


def test_counts_agree_with_redis(redis_server: Any, tmp_path: Path) -> None:
    summary, stats = _counts_run(redis_server.url, tmp_path)
    _check_redis_counts(summary, stats, exact_mget=True)


def test_counts_agree_with_redis_cluster(redis_cluster: Any, tmp_path: Path) -> None:
    """On a cluster a multi-get is split by slot into several MGETs, so only keys
    (hits + misses) are compared for it; the shared cluster is never flushed, so the
    deltas are taken over this run's window only (no other test runs concurrently)."""
    summary, stats = _counts_run(redis_cluster.url, tmp_path)
    _check_redis_counts(summary, stats, exact_mget=False)


def test_a_failing_server_is_counted_as_errors_and_the_run_is_still_written(
        memcached_server: Any, tmp_path: Path) -> None:
    """Stop the server about 3 s after `bench run` starts (Locust's start-up and the
    aligned start of the window take 1-2 s of that) in a 5 s run: the run goes on, every
    op after that is a connection error, the run directory is complete, and the error
    budget fails it."""
    out = tmp_path / "run"
    killer = threading.Timer(3.0, memcached_server.stop)
    killer.start()
    try:
        rc = run_bench(memcached_server.url, out, str(SCENARIOS / "stall.yaml"),
                       "--duration", "5s", "--no-prefill", "--slo",
                       str(Path(__file__).parents[1] / "slos" / "default.yaml"))
    finally:
        killer.cancel()
    assert rc in or_invalid(1)
    info = load_json(out / "run.json")
    assert info["status"] == "completed"
    summary = load_json(out / "summary.json")
    assert summary["slo"]["passed"] is False  # the error budget, whatever the validity
    get = summary["ops"]["get"]
    assert get["errors_by_kind"].get("connection", 0) > 1000
    assert get["count"] - get["errors"] > 500  # the ops before the stop went through
    stats = load_json(out / "server-stats.json")
    assert all("error" in node for node in stats["after"]["nodes"].values())


@pytest.mark.parametrize("flags, field", [
    (["--users", "3", "--processes", "2"], "--users"),
    (["--processes", "0"], "--processes"),
    (["--seed", "-1"], "--seed"),
    (["--timeout", "0s"], "--timeout"),
    (["--duration", "0s"], "--duration"),
])
def test_bad_run_flags_are_one_line_and_exit_2(memcached_server: Any, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              flags: list[str], field: str) -> None:
    rc = run_bench(memcached_server.url, tmp_path / "run", "smoke", *flags)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("bench: ") and field in err and "Traceback" not in err


def test_several_processes_send_the_whole_load(memcached_server: Any, tmp_path: Path) -> None:
    """Two Locust worker processes with two users each: every user has its own op stream
    (none past the end, none lost), so the whole asked rate is sent and measured."""
    out = tmp_path / "run"
    rc = run_bench(memcached_server.url, out, str(SCENARIOS / "stall.yaml"),
                   "--processes", "2", "--users", "4", "--duration", "4s")
    assert rc in or_invalid(0, 1)
    assert load_json(out / "run.json")["status"] == "completed"
    get = load_json(out / "summary.json")["ops"]["get"]
    assert 0.95 * 4000 <= get["count"] <= 1.05 * 4000  # 1000 ops/s for 4 s, uniform arrivals
    assert get["errors"] == 0
    assert "Traceback" not in (out / "locust.log").read_text()


@pytest.mark.parametrize("proxy", ["nutcracker_memcached", "nutcracker_redis"])
def test_runs_through_nutcracker(proxy: str, request: pytest.FixtureRequest,
                                 tmp_path: Path) -> None:
    """twemproxy in front of a pool, in either protocol: the run goes through the proxy
    without errors; the proxy has no stats command, which is recorded, not fatal."""
    group = request.getfixturevalue(proxy)
    out = tmp_path / "run"
    rc = run_bench(group.url, out, str(SCENARIOS / "counts.yaml"), "--duration", "2s")
    assert rc in or_invalid(0, 1)
    summary = load_json(out / "summary.json")
    assert summary["total"]["count"] >= 2500 and summary["total"]["errors"] == 0
    assert _sum(summary, "hits", READS) > 0
    stats = load_json(out / "server-stats.json")
    assert all("error" in node for node in stats["after"]["nodes"].values())
