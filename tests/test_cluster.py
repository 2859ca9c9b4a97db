"""bench.cluster and the server fixtures, against the real memcached, redis and nutcracker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pymemcache.client.base import Client
from redis.cluster import RedisCluster

from bench import cluster
from bench.cli import main
from bench.errors import InputError, TargetError


def _mc(address: str) -> Client:
    """A pymemcache client for one `host:port`; sets wait for the reply, so another
    connection reads them afterwards (pymemcache's default noreply races)."""
    host, port = address.rsplit(":", 1)
    return Client((host, int(port)), timeout=2, connect_timeout=2, default_noreply=False)


def _holders(addresses: list[str], key: str) -> list[str]:
    """The memcached nodes among `addresses` that hold `key`."""
    found = []
    for address in addresses:
        client = _mc(address)
        if client.get(key) is not None:
            found.append(address)
        client.close()
    return found


def _cli(*argv: str) -> int:
    return main(["cluster", *argv])


# --------------------------------------------------------------------------- fixtures

def test_memcached_server_answers_and_pauses(memcached_server):
    client = _mc(memcached_server.address)
    client.set("k", b"v")
    assert client.get("k") == b"v"
    assert memcached_server.url == f"memcached://127.0.0.1:{memcached_server.port}"
    assert memcached_server.nodes == [memcached_server.address]
    memcached_server.pause()
    try:
        assert memcached_server.health() == "not answering"
    finally:
        memcached_server.resume()
    assert memcached_server.health() == "answering"
    client.close()


def test_redis_server_has_no_persistence(redis_server):
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    assert client.set("k", b"v") and client.get("k") == b"v"
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("appendonly") == {"appendonly": "no"}
    assert redis_server.url == f"redis://{redis_server.address}"
    client.close()


def test_memcached_pool_nodes_are_independent(memcached_pool, key_prefix):
    assert len(set(memcached_pool.nodes)) == 3
    assert memcached_pool.url == "memcached://" + ",".join(memcached_pool.nodes)
    first = memcached_pool.nodes[0]
    client = _mc(first)
    client.set(key_prefix + "x", b"1")
    client.close()
    assert _holders(memcached_pool.nodes, key_prefix + "x") == [first]


def test_nutcracker_forwards_to_one_backend(nutcracker_memcached, key_prefix):
    proxy = _mc(nutcracker_memcached.nodes[0])
    backends = [s.address for s in nutcracker_memcached.servers if s.kind == "memcached"]
    keys = [f"{key_prefix}page:{i}:rev" for i in range(200)]
    for key in keys:
        proxy.set(key, key.encode())
    assert all(proxy.get(key) == key.encode() for key in keys)
    proxy.close()
    holders = [_holders(backends, key) for key in keys]
    assert all(len(h) == 1 for h in holders)
    assert {h[0] for h in holders} == set(backends)


def test_redis_cluster_spreads_slots(redis_cluster, key_prefix):
    host, port = redis_cluster.url.removeprefix("redis+cluster://").split(":")
    client = RedisCluster(host=host, port=int(port))
    keys = [f"{key_prefix}{i}" for i in range(30)]
    for key in keys:
        client.set(key, key)
    assert [client.get(key) for key in keys] == [key.encode() for key in keys]
    owners = {client.get_node_from_key(key).port for key in keys}
    assert len(owners) == 3
    client.close()


# --------------------------------------------------------------------------- launching

def test_explicit_port_in_use_fails_cleanly(memcached_server, tmp_path):
    with pytest.raises(TargetError, match="in use"):
        cluster.start_memcached(memcached_server.port, tmp_path, name="second")


def test_port_lost_to_another_process_is_retried(memcached_server, tmp_path, monkeypatch):
    ports = iter([memcached_server.port])
    real_free_port = cluster.free_port
    monkeypatch.setattr(cluster, "free_port", lambda: next(ports, None) or real_free_port())
    server = cluster.start_memcached(0, tmp_path, name="retried")
    try:
        assert server.port != memcached_server.port and server.health() == "answering"
    finally:
        server.stop()
    assert server.health() == "dead"


# --------------------------------------------------------------------------- bench cluster

@pytest.fixture
def fleet_dir(tmp_path) -> Iterator[Path]:
    """A state dir for `bench cluster up` whose servers are stopped after the test, even
    when it fails half-way (they are detached daemons: nothing else would stop them)."""
    state_dir = tmp_path / "fleet"
    yield state_dir
    cluster.cluster_down(state_dir)


def test_up_status_down(fleet_dir, capsys, key_prefix):
    state_dir = str(fleet_dir)
    assert _cli("up", "--state-dir", state_dir, "--memory", "32MiB") == 0
    state = json.loads((fleet_dir / "state.json").read_text())
    servers = {s["name"]: s for s in state["servers"]}
    assert {s["kind"] for s in servers.values()} == {"memcached", "redis", "redis-cluster",
                                                     "nutcracker"}
    assert len(servers) == 3 + 1 + 3 + 1
    assert all(os.getsid(s["pid"]) == s["pid"] for s in servers.values())  # outlive `up`
    argv = servers["memcached-1"]["argv"]
    assert argv[argv.index("-m") + 1] == "32"
    urls = {name: cluster.resolve_local(f"local:{name}", state_dir)
            for name in cluster.LOCAL_TARGETS}
    assert urls == state["urls"]

    pool = urls["memcached"].removeprefix("memcached://").split(",")
    client = _mc(pool[0])
    client.set(key_prefix + "a", b"1")
    assert client.get(key_prefix + "a") == b"1"
    client.close()

    proxy = _mc(urls["nutcracker"].removeprefix("memcached://"))
    proxy.set(key_prefix + "p", b"2")
    assert proxy.get(key_prefix + "p") == b"2"
    proxy.close()
    assert len(_holders(pool, key_prefix + "p")) == 1

    host, port = urls["redis-cluster"].removeprefix("redis+cluster://").split(":")
    rc = RedisCluster(host=host, port=int(port))
    for i in range(10):
        rc.set(f"{key_prefix}{i}", i)
    assert len({rc.get_node_from_key(f"{key_prefix}{i}").port for i in range(10)}) > 1
    rc.close()

    capsys.readouterr()
    assert _cli("status", "--state-dir", state_dir, "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert {s["health"] for s in status["servers"]} == {"answering"}

    assert _cli("up", "--state-dir", state_dir) == 0  # already up: nothing restarted
    assert "already running" in capsys.readouterr().out
    assert json.loads((fleet_dir / "state.json").read_text()) == state

    pids = [s["pid"] for s in state["servers"]]
    assert _cli("down", "--state-dir", state_dir) == 0
    assert not any(cluster.pid_alive(pid) for pid in pids)
    assert not (fleet_dir / "state.json").exists()
    assert _cli("status", "--state-dir", state_dir) == 2
    assert "no local cluster is running" in capsys.readouterr().err
    assert _cli("down", "--state-dir", state_dir) == 0  # idempotent


def test_stale_state_is_replaced(fleet_dir, capsys):
    state_dir = str(fleet_dir)
    assert _cli("up", "--state-dir", state_dir, "--memcached-nodes", "1",
                "--memory", "16MiB") == 0
    before = cluster.ClusterState.load(fleet_dir)
    victim = before.servers[0]
    os.kill(victim.pid, signal.SIGKILL)
    while cluster.pid_alive(victim.pid):  # SIGKILL is delivered asynchronously
        time.sleep(0.01)
    capsys.readouterr()
    assert _cli("status", "--state-dir", state_dir, "--json") == 3
    health = {s["name"]: s["health"] for s in json.loads(capsys.readouterr().out)["servers"]}
    assert health[victim.name] == "dead" and health["redis"] == "answering"

    assert _cli("up", "--state-dir", state_dir, "--memcached-nodes", "1") == 0
    assert "stale" in capsys.readouterr().out
    after = cluster.ClusterState.load(fleet_dir)
    assert not any(cluster.pid_alive(s.pid) for s in before.servers)
    assert all(s.health() == "answering" for s in after.servers)
    assert _cli("down", "--state-dir", state_dir) == 0


def test_up_with_a_gutter_pool(fleet_dir):
    """`bench cluster up --gutter N`: N more memcached nodes and local:memcached-wmf, the
    pool behind mcrouter-style routing with them as its gutter; without it, that target
    says how to get one."""
    assert _cli("up", "--state-dir", str(fleet_dir), "--memcached-nodes", "1",
                "--memory", "16MiB") == 0
    with pytest.raises(InputError, match="bench cluster up --gutter 1"):
        cluster.resolve_local("local:memcached-wmf", fleet_dir)
    assert _cli("down", "--state-dir", str(fleet_dir)) == 0
    assert _cli("up", "--state-dir", str(fleet_dir), "--memcached-nodes", "1",
                "--memory", "16MiB", "--gutter", "1") == 0
    state = cluster.ClusterState.load(fleet_dir)
    gutter, = [server for server in state.servers if server.name.startswith("gutter-")]
    assert gutter.health() == "answering"
    assert cluster.resolve_local("local:memcached-wmf", fleet_dir) == \
        f"{state.urls['memcached']}?preset=wmf&gutter={gutter.address}"


def test_down_leaves_a_reused_pid_alone(tmp_path):
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        fake = cluster.LocalServer(name="memcached-1", kind="memcached", protocol="memcached",
                                   port=1, pid=stranger.pid, log="x.log",
                                   argv=["/usr/bin/memcached"])
        cluster.ClusterState(tmp_path, [fake], {"memcached": fake.url}, "then").save()
        assert cluster.cluster_down(tmp_path) == {"memcached-1": "foreign"}
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_failed_up_stops_what_it_started(tmp_path, fleet_dir, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("memcached", "redis-server", "nutcracker"):
        (bin_dir / name).symlink_to(cluster.find_binaries(name)[name])
    fake_cli = bin_dir / "redis-cli"
    fake_cli.write_text("#!/bin/sh\necho 'ERR cluster create refused' >&2\nexit 1\n")
    fake_cli.chmod(0o755)
    spawned: list[int] = []
    real_spawn = cluster._spawn

    def recording_spawn(argv: list[str], log: Path) -> int:
        spawned.append(real_spawn(argv, log))
        return spawned[-1]

    monkeypatch.setattr(cluster, "_spawn", recording_spawn)
    monkeypatch.setenv("PATH", str(bin_dir))

    assert _cli("up", "--state-dir", str(fleet_dir), "--memory", "16MiB") == 3
    assert "cluster create refused" in capsys.readouterr().err
    assert len(spawned) == 3 + 1 + 3
    assert not any(cluster.pid_alive(pid) for pid in spawned)
    assert not (fleet_dir / "state.json").exists()


# --------------------------------------------------------------------------- bad input

def test_missing_binaries_name_the_packages(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert _cli("up", "--state-dir", str(tmp_path / "state")) == 2
    err = capsys.readouterr().err
    assert "apt-get install memcached redis-server redis-tools nutcracker" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "state.json").exists()


@pytest.mark.parametrize("argv, field", [
    (["--memory", "lots"], "--memory"),
    (["--memory", "10KiB"], "--memory"),
    (["--redis-cluster-masters", "2"], "--redis-cluster-masters"),
    (["--memcached-nodes", "0"], "--memcached-nodes"),
    (["--gutter", "-1"], "--gutter"),
    (["--replicas", "-1"], "--replicas"),
])
def test_bad_up_flags_exit_2(tmp_path, capsys, argv, field):
    assert _cli("up", "--state-dir", str(tmp_path), *argv) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "state.json").exists()


def test_resolve_local_errors(tmp_path):
    with pytest.raises(InputError, match="local:redis-cluster"):
        cluster.resolve_local("local:mysql", tmp_path)
    with pytest.raises(InputError, match="bench cluster up --state-dir"):
        cluster.resolve_local("local:redis", tmp_path)


def test_unreadable_state_is_input_error(tmp_path, capsys):
    Path(tmp_path, "state.json").write_text("{not json")
    assert _cli("status", "--state-dir", str(tmp_path)) == 2
    assert "state.json" in capsys.readouterr().err
