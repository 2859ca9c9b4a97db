"""Faults in a scenario (bench.faults) during real runs on servers the harness started:
a stall with and without a gutter pool (mcrouter-style routing), a memcached node
killed and restarted, a Redis Cluster master killed with a replica to take over.

Each run is `bench run` as a user types it, against a local cluster recorded in a state
directory (what `bench cluster up` writes), named by $CACHEBENCH_CLUSTER_STATE.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import cluster
from bench.cli import main
from bench.errors import EXIT_BAD_INPUT
from bench.scenario.model import load_scenario
from helpers_exits import or_invalid

TKO = 3
USERS = 4


def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           servers: list[cluster.LocalServer]) -> Path:
    """A cluster state naming `servers`, as `bench cluster up` would leave it."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    cluster.ClusterState(state_dir=state_dir, servers=servers, urls={},
                         started=datetime.now(timezone.utc).isoformat()).save()
    monkeypatch.setenv(cluster.STATE_ENV, str(state_dir))
    return state_dir


def _scenario(tmp_path: Path, faults: list[dict[str, Any]], duration: str = "8s",
              **keyspace: Any) -> Path:
    data = {"name": "faults", "seed": 3,
            "load": {"mode": "open", "rate": 600, "arrival": "uniform", "users": USERS,
                     "duration": duration, "warmup": "0s", "prefill": True},
            "keyspaces": [{"name": "items", "keys": 300, "template": "cbtest:faults:{id}",
                           "popularity": {"dist": "uniform"},
                           "value_size": {"dist": "fixed", "size": "100B"}, "ttl": "0s",
                           "mix": {"get": {"weight": 1, "on_miss": "set"}}, **keyspace}],
            "faults": faults}
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(url: str, scenario: Path, out: Path, *extra: str) -> int:
    return main(["run", str(scenario), "--target", url, "--out", str(out), "--quiet",
                 *(extra or ["--no-report"])])


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _timeline(out: Path) -> list[dict[str, str]]:
    lines = (out / "timeline.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def _delta(stats: dict[str, Any], counter: str, nodes: list[str]) -> int:
    before, after = stats["before"]["nodes"], stats["after"]["nodes"]
    return sum(int(after[n].get(counter, 0)) - int(before[n].get(counter, 0)) for n in nodes)


def test_faults_refused_on_servers_the_harness_did_not_start(
        memcached_server: cluster.LocalServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = _scenario(tmp_path, [{"kind": "stall", "node": 1, "at": "1s",
                                     "duration": "1s"}])
    monkeypatch.setenv(cluster.STATE_ENV, str(tmp_path / "no-cluster"))
    assert _run(memcached_server.url, scenario, tmp_path / "run") == EXIT_BAD_INPUT
    _state(tmp_path, monkeypatch, [])          # a cluster, but not this server
    assert _run(memcached_server.url, scenario, tmp_path / "run2") == EXIT_BAD_INPUT
    assert not (tmp_path / "run" / "run.json").exists()


def test_bad_fault_node_is_exit_2(memcached_server: cluster.LocalServer, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _state(tmp_path, monkeypatch, [memcached_server])
    scenario = _scenario(tmp_path, [{"kind": "kill", "node": 2, "at": "1s"}])
    assert _run(memcached_server.url, scenario, tmp_path / "run") == EXIT_BAD_INPUT
    assert "faults[0].node: expected a node from 1 to 1, got 2" in capsys.readouterr().err


@pytest.fixture
def pool_and_gutter(tmp_path: Path) -> Any:
    pool = cluster.start_memcached_pool(3, tmp_path)
    gutter = cluster.start_memcached(0, tmp_path, name="gutter-1")
    yield pool, gutter
    cluster.stop_servers([*pool.servers, gutter])


def _stall_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: cluster.ServerGroup,
               query: str) -> tuple[Path, dict[str, Any]]:
    _state(tmp_path, monkeypatch, pool.servers)
    scenario = _scenario(tmp_path, [{"kind": "stall", "node": 2, "at": "2s",
                                     "duration": "4s"}])
    out = tmp_path / "run"
    assert _run(f"{pool.url}?timeout=100ms&tko={TKO}{query}", scenario, out) in or_invalid(0, 1)
    return out, _load(out / "summary.json")


@pytest.mark.slow
def test_stall_with_gutter_tko_then_gutter_hits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                pool_and_gutter: Any) -> None:
    pool, gutter = pool_and_gutter
    out, summary = _stall_run(tmp_path, monkeypatch, pool,
                              f"&probe=30s&gutter={gutter.address}")
    window, = _load(out / "run.json")["faults"]
    assert window["kind"] == "stall" and window["address"] == pool.nodes[1]
    assert 3.9 <= window["to"] - window["from"] <= 4.5
    phases = summary["phases"]
    assert phases["before"]["errors"] == 0 and phases["after"]["errors"] == 0
    # TKO after TKO timeouts in a row (a few more when users wait on the node at once:
    # test_routing checks the exact count), then no error at all: the gutter serves the
    # stalled node's keys from the next interval on.
    timeouts = summary["total"]["errors_by_kind"]["timeout"]
    assert TKO <= timeouts <= TKO * USERS
    assert summary["total"]["errors"] == timeouts
    late = [row for row in _timeline(out) if float(row["start"]) >= window["from"] + 1]
    assert late and sum(int(row["errors"]) for row in late) == 0
    assert phases["timing"]["first_error_s"] is not None and phases["timing"]["tko_s"] <= 2
    assert summary["gutter"]["gutter"]["hits"] > 0
    # Counts against the servers' own: every lookup is a get on the main pool or the
    # gutter; the stalled node may still count the gets that timed out.
    stats = _load(out / "server-stats.json")
    get = summary["ops"]["get"]
    served = _delta(stats, "get_hits", [*pool.nodes, gutter.address]) \
        + _delta(stats, "get_misses", [*pool.nodes, gutter.address])
    assert get["hits"] + get["misses"] <= served <= get["hits"] + get["misses"] + timeouts
    assert summary["gutter"]["gutter"]["hits"] == _delta(stats, "get_hits", [gutter.address])


@pytest.mark.slow
def test_stall_without_gutter_keys_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              pool_and_gutter: Any) -> None:
    pool, _ = pool_and_gutter
    out, summary = _stall_run(tmp_path, monkeypatch, pool, "&probe=1s")
    during = summary["phases"]["during"]
    kinds = during["errors_by_kind"]
    # TKO, then a probe timing out each second of the stall...
    assert TKO <= kinds["timeout"] <= TKO * USERS + 4
    # ...while the stalled node's keys (about a third) fail at once, without waiting.
    assert kinds["connection"] > 0.2 * during["count"]
    # A probe finds the node back within a second of the stall's end.
    last = _timeline(out)[-1]
    assert int(last["count"]) > 0 and int(last["errors"]) == 0
    assert summary["phases"]["timing"]["p99_recovered_s"] is not None
    assert "gutter" not in summary


@pytest.mark.slow
def test_memcached_node_killed_and_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            pool_and_gutter: Any) -> None:
    """Users reconnect to the restarted node (empty: misses, then sets); the errors while
    it is down are counted by kind; the run completes and writes every file."""
    pool, _ = pool_and_gutter
    state_dir = _state(tmp_path, monkeypatch, pool.servers)
    scenario = _scenario(tmp_path, [{"kind": "kill", "node": 3, "at": "2s"},
                                    {"kind": "restart", "node": 3, "at": "4s"}])
    out = tmp_path / "run"
    rc = _run(pool.url, scenario, out, "--report")
    restarted = cluster.ClusterState.load(state_dir).servers[2]
    pool.servers[2] = restarted        # the fixture stops the new process
    assert rc in or_invalid(0, 1)
    for name in ("run.json", "latency.hlog", "timeline.csv", "server-stats.json",
                 "summary.json"):
        assert (out / name).is_file(), name
    info = _load(out / "run.json")
    assert info["status"] == "completed"
    kill, restart = info["faults"]
    assert (kill["kind"], restart["kind"]) == ("kill", "restart")
    assert kill["to"] == pytest.approx(restart["to"], abs=0.2)   # back once restarted
    assert restarted.alive() and restarted.port == pool.servers[2].port
    summary = _load(out / "summary.json")
    during = summary["phases"]["during"]["errors_by_kind"]
    assert during["connection"] > 0 and summary["total"]["errors"] == sum(
        summary["total"]["errors_by_kind"].values())
    assert summary["phases"]["after"]["errors"] == 0
    rows = [row for row in _timeline(out) if float(row["start"]) >= restart["to"] + 1]
    assert rows and sum(int(row["hits"]) for row in rows) > 0
    report = (out / "report.html").read_text()
    assert "Faults and failover" in report and "<td>kill</td>" in report


def test_mw_shard_stall_scenario() -> None:
    """The Wikimedia scenario: the WMF-routed local pool, one shard stalled longer than
    TKO takes (10 x 250 ms) and longer than the gutter TTL (60 s) plus a probe (60 s)."""
    scenario = load_scenario("mw-shard-stall")
    assert scenario.target == "local:memcached-wmf"
    stall, = scenario.faults
    assert stall.kind == "stall" and stall.duration > 60 + 10 * 0.25
    assert stall.at + stall.duration < scenario.load.duration


@pytest.mark.slow
def test_redis_cluster_survives_a_master_death(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    group = cluster.start_redis_cluster(3, tmp_path / "cluster", replicas=1)
    try:
        _state(tmp_path, monkeypatch, group.servers)
        scenario = _scenario(tmp_path, [{"kind": "kill", "node": 1, "at": "2s"}],
                             duration="20s")
        out = tmp_path / "run"
        assert _run(group.url, scenario, out) in or_invalid(0, 1)
        info, summary = _load(out / "run.json"), _load(out / "summary.json")
        assert info["status"] == "completed" and info["faults"][0]["kind"] == "kill"
        errors = summary["total"]["errors_by_kind"]
        assert summary["total"]["errors"] > 0 and sum(errors.values()) == \
            summary["total"]["errors"]
        # The replica took over (cluster-node-timeout 5 s): the last seconds are clean.
        last = [row for row in _timeline(out)
                if float(row["start"]) >= info["measured"]["to"] - 3]
        assert last and all(int(row["errors"]) == 0 for row in last)
    finally:
        group.stop()
