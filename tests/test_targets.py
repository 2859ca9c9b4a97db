"""bench.targets against real memcached, Redis, Redis Cluster and nutcracker.

Counters are read back from the servers themselves, so these tests also pin down what
the harness's own counts must agree with.
"""

from __future__ import annotations

import random
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import yaml
from pymemcache.client.base import Client

from bench import cluster
from bench.errors import InputError
from bench.targets import (Target, UnsupportedOperation, error_kind, open_target, parse_target,
                           server_stats, server_versions)
from bench.targets.base import redact_raw, split_node
from bench.targets.memcached import KetamaRing, MemcachedTarget

TARGETS = ["memcached_server", "memcached_pool", "redis_server", "redis_cluster"]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Each kind of target in turn, opened as one Locust user would."""
    server = request.getfixturevalue(request.param)
    with open_target(parse_target(server.url)) as opened:
        yield opened


def _delta(before: dict, after: dict, counter: str) -> int:
    """How much `counter` grew on one node between two server_stats snapshots (Redis
    lists a command's cmdstat only once it has been called: absent means 0)."""
    return after[counter] - before.get(counter, 0)


def _total_delta(before: dict, after: dict, counter: str) -> int:
    """How much `counter` grew summed over all nodes."""
    return sum(_delta(before[node], after[node], counter) for node in after)


def _holders(nodes: list[str], key: str) -> list[str]:
    """The memcached nodes that hold `key`, asked one by one with single-node targets."""
    found = []
    for node in nodes:
        with open_target(parse_target(f"memcached://{node}")) as single:
            if single.get(key) is not None:
                found.append(node)
    return found


def _raises(call: Callable[[], object]) -> BaseException:
    """The exception `call` raises (the test fails if it returns)."""
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


# --------------------------------------------------------------------------- URLs

@pytest.mark.parametrize("url, kind, nodes, db, username, password, options, redacted", [
    ("memcached://127.0.0.1:11211", "memcached", ["127.0.0.1:11211"], 0, None, None, {},
     "memcached://127.0.0.1:11211"),
    ("memcached://mc1.eqiad.wmnet:11211,10.0.0.2:11212?timeout=250ms", "memcached",
     ["mc1.eqiad.wmnet:11211", "10.0.0.2:11212"], 0, None, None, {"timeout": 0.25},
     "memcached://mc1.eqiad.wmnet:11211,10.0.0.2:11212?timeout=250ms"),
    ("redis://127.0.0.1:6379/3", "redis", ["127.0.0.1:6379"], 3, None, None, {},
     "redis://127.0.0.1:6379/3"),
    ("redis://sessions:p%40ss:w0rd@rdb1:6380/0", "redis", ["rdb1:6380"], 0, "sessions",
     "p@ss:w0rd", {}, "redis://sessions:***@rdb1:6380/0"),
    ("redis://:hunter2@127.0.0.1:6379", "redis", ["127.0.0.1:6379"], 0, None, "hunter2", {},
     "redis://:***@127.0.0.1:6379"),
    ("redis://127.0.0.1:6379/", "redis", ["127.0.0.1:6379"], 0, None, None, {},
     "redis://127.0.0.1:6379"),
    ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "redis-cluster",
     ["127.0.0.1:7000", "127.0.0.1:7001"], 0, None, None, {},
     "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"),
])
def test_parse_target_accepts(url, kind, nodes, db, username, password, options, redacted):
    info = parse_target(url)
    assert (info.kind, info.nodes, info.db, info.username, info.password, info.options,
            info.redacted) == (kind, nodes, db, username, password, options, redacted)


@pytest.mark.parametrize("url, problem", [
    ("", "expected memcached://host:port[,host:port...] or redis://"),
    ("http://127.0.0.1:80", "or redis+cluster://"),
    ("memcached://127.0.0.1", "'127.0.0.1' is not host:port"),
    ("memcached://127.0.0.1:0", "port 1-65535"),
    ("memcached://127.0.0.1:70000", "port 1-65535"),
    ("memcached://127.0.0.1:1,", "'' is not host:port"),
    ("memcached://127.0.0.1:1,127.0.0.1:1", "listed twice"),
    ("memcached://user:pw@127.0.0.1:1", "no user or password"),
    ("memcached://127.0.0.1:1/0", "no /path"),
    ("redis://127.0.0.1:1,127.0.0.1:2", "use redis+cluster://"),
    ("redis://127.0.0.1:1/db0", "database after / is a number"),
    ("redis://sessions@127.0.0.1:1", "user:password@"),
    ("redis://127.0.0.1:1?timout=1s", "unknown option 'timout'; known: timeout"),
    ("redis://127.0.0.1:1?timeout=soon", "expected a duration"),
    ("redis://127.0.0.1:1?timeout=0", "a duration > 0"),
    ("redis+cluster://127.0.0.1:1/0", "no /path"),
])
def test_parse_target_refuses_with_what_was_expected(url, problem):
    with pytest.raises(InputError) as caught:
        parse_target(url)
    message = str(caught.value)
    assert message.startswith("target: expected ")
    assert problem in message
    assert repr(redact_raw(url)) in message


def test_password_never_shows():
    info = parse_target("redis://app:hunter2@127.0.0.1:6379/1")
    assert "hunter2" not in info.redacted and "hunter2" not in repr(info)
    with pytest.raises(InputError) as caught:   # no port: refused, still redacted
        parse_target("redis://app:hunter2@127.0.0.1")
    assert "hunter2" not in str(caught.value) and "app:***@" in str(caught.value)


# --------------------------------------------------------------------------- operations

def test_set_get_delete(target, key_prefix):
    key = key_prefix + "page"
    assert target.get(key) is None
    target.set(key, b"v1", 0)
    target.set(key, b"\x00binary\r\n", 30)
    assert target.get(key) == b"\x00binary\r\n"
    assert target.delete(key) is True
    assert target.get(key) is None
    assert target.delete(key) is False


def test_add_and_replace_say_whether_they_stored(target, key_prefix):
    lock, page = key_prefix + "lock", key_prefix + "page"
    assert target.add(lock, b"owner-1", 30.5) is True
    assert target.add(lock, b"owner-2", 30.5) is False
    assert target.get(lock) == b"owner-1"
    assert target.replace(page, b"v", 0) is False
    assert target.get(page) is None
    target.set(page, b"v1", 0)
    assert target.replace(page, b"v2", 30) is True
    assert target.get(page) == b"v2"


def test_incr_and_decr(target, key_prefix):
    counter, missing = key_prefix + "counter", key_prefix + "missing"
    target.set(counter, b"10", 0)
    assert target.incr(counter, 5) == 15
    assert target.decr(counter, 3) == 12
    assert target.get(counter) == b"12"
    if target.kind == "memcached":   # memcached does not create the key
        assert target.incr(missing, 2) is None and target.decr(missing, 2) is None
        assert target.get(missing) is None
    else:                            # INCRBY/DECRBY create it from 0
        assert target.incr(missing, 2) == 2 and target.decr(missing, 5) == -3


def test_touch_says_whether_the_key_exists(target, key_prefix):
    key = key_prefix + "k"
    assert target.touch(key, 60) is False
    target.set(key, b"v", 10)
    assert target.touch(key, 60) is True
    assert target.touch(key, 0) is True     # "no expiry", and the key stays
    assert target.get(key) == b"v"


def test_get_multi_returns_found_keys_only(target, key_prefix):
    keys = [f"{key_prefix}WANCache:{i}|#|{suffix}" for i in range(4) for suffix in "vt"]
    stored = {key: key.encode() for key in keys[::2]}
    for key, value in stored.items():
        target.set(key, value, 0)
    assert target.get_multi(keys + [key_prefix + "never-set"]) == stored


def test_set_many_stores_every_key(target, key_prefix):
    items = {f"{key_prefix}prefill:{i}": bytes([i]) * (i + 1) for i in range(60)}
    target.set_many(items, 120)
    assert target.get_multi(list(items)) == items


def test_hashes_on_redis_only(target, key_prefix):
    key = key_prefix + "session"
    if target.kind == "memcached":
        error = _raises(lambda: target.hset(key, {"user": b"1"}, 0))
        assert isinstance(error, UnsupportedOperation) and isinstance(error, InputError)
        assert error_kind(error) == "client"
        assert isinstance(_raises(lambda: target.hget(key, "user")), UnsupportedOperation)
        return
    target.hset(key, {"user": b"1", "token": b"abc"}, 0)
    target.hset(key, {"token": b"def"}, 30)
    assert (target.hget(key, "user"), target.hget(key, "token")) == (b"1", b"def")
    assert target.hget(key, "nope") is None and target.hget(key + "x", "user") is None


# --------------------------------------------------------------------------- TTLs as sent

def _memcached_ttl(node: str, key: str) -> int:
    """Seconds left on `key` as memcached reports them (meta get `t`; -1 = no expiry)."""
    client = Client(split_node(node), timeout=2)
    try:
        reply = client.raw_command(f"mg {key} t", "\r\n").decode()
    finally:
        client.close()
    return int(re.fullmatch(r"HD t(-?\d+)", reply).group(1))


def test_memcached_ttls_round_up_and_go_absolute_after_30_days(memcached_server):
    node = memcached_server.address
    with open_target(parse_target(memcached_server.url)) as target:
        target.set("whole", b"v", 100)
        target.add("fraction", b"v", 100.2)    # rounded up to 101, never down to 100
        target.set("forever", b"v", 0)
        target.set("long", b"v", 40 * 86400)   # sent relative, memcached would read 1970
        target.set("touched", b"v", 5)
        target.touch("touched", 1000)
        # read in this order, a tick of memcached's clock in between can only widen the gap
        assert _memcached_ttl(node, "fraction") - _memcached_ttl(node, "whole") >= 1
        assert _memcached_ttl(node, "forever") == -1
        assert target.get("long") == b"v"
        assert 40 * 86400 - 5 <= _memcached_ttl(node, "long") <= 40 * 86400
        assert 995 <= _memcached_ttl(node, "touched") <= 1000


def test_redis_sends_ex_for_whole_seconds_and_px_for_fractions_and_locks(redis_server):
    admin = redis.Redis(redis_server.host, redis_server.port)
    admin.config_set("slowlog-log-slower-than", 0)   # log every command with its arguments
    admin.slowlog_reset()
    with open_target(parse_target(redis_server.url)) as target:
        target.set("page", b"v", 7)
        target.set("page", b"v", 1.5)
        target.set("page", b"v", 0)
        target.add("lock", b"v", 3)
        target.replace("page", b"v", 2)
        target.touch("page", 0.25)
        target.touch("page", 0)   # had a TTL: PERSIST says so
        target.touch("page", 0)   # has none: PERSIST says 0, EXISTS tells whether it exists
        target.incr("n", 2)
        target.decr("n", 1)
        target.hset("h", {"f": b"1"}, 30)
    sent = [entry["command"].decode() for entry in reversed(admin.slowlog_get(100))]
    expected = ["SET page v EX 7", "SET page v PX 1500", "SET page v", "SET lock v NX PX 3000",
                "SET page v XX EX 2", "PEXPIRE page 250", "PERSIST page", "PERSIST page",
                "EXISTS page",
                "INCRBY n 2", "DECRBY n 1", "HSET h f 1", "EXPIRE h 30"]
    assert [command for command in sent if command.split()[0] in
            {"SET", "PEXPIRE", "EXPIRE", "PERSIST", "EXISTS", "INCRBY", "DECRBY", "HSET"}
            ] == expected
    admin.close()


# --------------------------------------------------------------------------- pool hashing

def test_ring_is_fixed_across_processes_and_versions():
    """Values computed once; a change here re-maps every key of a running fleet."""
    ring = KetamaRing(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11212"])
    assert {key: ring.node_for(key) for key in ["enwiki:page:1", "enwiki:page:2", "a", "c", "g"]
            } == {"enwiki:page:1": "10.0.0.3:11212", "enwiki:page:2": "10.0.0.2:11211",
                  "a": "10.0.0.2:11211", "c": "10.0.0.1:11211", "g": "10.0.0.3:11212"}


def test_ring_is_the_same_in_two_clients(memcached_pool):
    info = parse_target(memcached_pool.url)
    keys = [f"k{i}" for i in range(200)]
    with open_target(info) as first, open_target(info) as second:
        assert [first.node_for(k) for k in keys] == [second.node_for(k) for k in keys]


def test_hash_stop_keeps_sister_keys_together():
    ring = KetamaRing([f"127.0.0.1:{port}" for port in (11211, 11212, 11213, 11214)])
    rng = random.Random(7)
    bases = [f"WANCache:{rng.getrandbits(64):x}:{rng.random()}" for _ in range(500)]
    assert all(ring.node_for(f"{base}|#|v") == ring.node_for(f"{base}|#|t") for base in bases)
    assert len({ring.node_for(base + "|#|v") for base in bases}) == 4


def test_pool_puts_each_key_on_its_node_and_uses_every_node(memcached_pool, key_prefix):
    nodes = memcached_pool.nodes
    keys = [f"{key_prefix}{i}" for i in range(90)]
    with open_target(parse_target(memcached_pool.url)) as pool:
        pool.set_many({key: b"v" for key in keys[:45]}, 60)
        for key in keys[45:]:
            pool.set(key, b"v", 60)
        where = {key: _holders(nodes, key) for key in keys}
        assert all(where[key] == [pool.node_for(key)] for key in keys)
        pool.set(key_prefix + "x|#|v", b"value", 60)
        pool.set(key_prefix + "x|#|t", b"tombstone", 60)
        assert _holders(nodes, key_prefix + "x|#|v") == _holders(nodes, key_prefix + "x|#|t")
    per_node = [sum(where[key] == [node] for key in keys) for node in nodes]
    assert min(per_node) >= 10, per_node


@pytest.fixture
def nutcracker_md5(memcached_pool, tmp_path) -> Iterator[str]:
    """nutcracker with `distribution: ketama, hash: md5` in front of the pool's nodes."""
    port, stats_port = cluster.free_port(), cluster.free_port()
    conf = tmp_path / "nutcracker.yml"
    conf.write_text(yaml.safe_dump({"pool": {
        "listen": f"127.0.0.1:{port}", "hash": "md5", "distribution": "ketama",
        "auto_eject_hosts": False, "servers": [f"{node}:1" for node in memcached_pool.nodes]}}))
    binary = cluster.find_binaries("nutcracker")["nutcracker"]
    proxy = subprocess.Popen([binary, "-c", str(conf), "-s", str(stats_port), "-a", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proxy)
        yield f"memcached://127.0.0.1:{port}"
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen, attempts: int = 200) -> None:
    """Until `port` accepts connections (or the process died)."""
    for _ in range(attempts):
        if process.poll() is not None:
            raise AssertionError(f"nutcracker exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nutcracker not listening on {port}")


def test_ring_is_twemproxys_ketama_md5(nutcracker_md5, memcached_pool, key_prefix):
    keys = [f"{key_prefix}tw:{i}" for i in range(100)]
    with open_target(parse_target(nutcracker_md5)) as proxy:
        for key in keys:
            proxy.set(key, b"via-proxy", 60)
    with open_target(parse_target(memcached_pool.url)) as pool:
        assert len(pool.get_multi(keys)) == len(keys)   # every key where our ring looks


# --------------------------------------------------------------------------- nutcracker

def test_operations_through_nutcracker(nutcracker_memcached, key_prefix):
    info = parse_target(nutcracker_memcached.url)
    key = key_prefix + "k"
    with open_target(info) as proxy:
        proxy.set(key, b"v", 60)
        assert proxy.get(key) == b"v"
        assert proxy.get_multi([key, key + "-missing"]) == {key: b"v"}
        assert proxy.add(key, b"w", 60) is False
        assert proxy.delete(key) is True and proxy.get(key) is None
    stats = server_stats(info)
    assert list(stats) == info.nodes and list(stats[info.nodes[0]]) == ["error"]


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("url", ["memcached://127.0.0.1:{port}", "redis://127.0.0.1:{port}",
                                 "redis+cluster://127.0.0.1:{port}"])
def test_refused_connection_is_a_connection_error(url):
    info = parse_target(url.format(port=cluster.free_port()))
    with open_target(info) as target:
        assert error_kind(_raises(lambda: target.get("k"))) == "connection"
        assert error_kind(_raises(lambda: target.set("k", b"v", 0))) == "connection"
    assert list(server_stats(info)[info.nodes[0]]) == ["error"]
    assert server_versions(info)[info.nodes[0]].startswith("error: ")


def test_dead_pool_node_is_an_error_never_a_miss(memcached_pool, key_prefix):
    dead = f"127.0.0.1:{cluster.free_port()}"
    info = parse_target(memcached_pool.url + "," + dead)
    with open_target(info) as pool:
        keys = [f"{key_prefix}{i}" for i in range(60)]
        on_dead = [key for key in keys if pool.node_for(key) == dead]
        alive = [key for key in keys if pool.node_for(key) != dead]
        assert on_dead and alive
        for _ in range(3):   # keeps failing: the node is never dropped from the ring
            assert error_kind(_raises(lambda: pool.get(on_dead[0]))) == "connection"
        pool.set(alive[0], b"v", 60)
        assert pool.get(alive[0]) == b"v"
        assert error_kind(_raises(lambda: pool.get_multi(keys))) == "connection"
    stats = server_stats(info)
    assert list(stats[dead]) == ["error"] and "cmd_get" in stats[memcached_pool.nodes[0]]


def _wait_stopped(pid: int, attempts: int = 400) -> None:
    """Until every thread of `pid` is stopped: SIGSTOP is delivered asynchronously, and a
    thread still running on another core could answer one more request."""
    for _ in range(attempts):
        states = [Path(task, "stat").read_text().rpartition(")")[2].split()[0]
                  for task in Path(f"/proc/{pid}/task").iterdir()]
        if all(state == "T" for state in states):
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not stop")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fixture", ["memcached_server", "redis_server"])
def test_stalled_server_times_out_then_is_used_again(request, fixture):
    server = request.getfixturevalue(fixture)
    info = parse_target(server.url + "?timeout=300ms")   # the URL's timeout wins
    with open_target(info, timeout=60) as target:
        target.set("k", b"v", 0)
        server.pause()
        try:
            _wait_stopped(server.pid)
            assert error_kind(_raises(lambda: target.get("k"))) == "timeout"
            assert error_kind(_raises(lambda: target.get("k"))) == "timeout"
        finally:
            server.resume()
        assert target.get("k") == b"v"


def test_redis_reconnects_after_the_server_drops_the_connection(redis_server):
    admin = redis.Redis(redis_server.host, redis_server.port)
    with open_target(parse_target(redis_server.url)) as target:
        target.set("k", b"v", 0)
        for client in admin.client_list():
            if client["name"] == "cachebench":
                admin.client_kill_filter(_id=client["id"])
        assert error_kind(_raises(lambda: target.get("k"))) == "connection"
        assert target.get("k") == b"v"
    admin.close()


def test_invalid_memcached_keys_are_refused_before_sending(memcached_server):
    info = parse_target(memcached_server.url)
    before = server_stats(info)[memcached_server.address]
    with open_target(info) as target:
        for key in ["with space", "x" * 251, "ctrl\x01char", "", "ünicode", "new\nline"]:
            error = _raises(lambda: target.get(key))
            assert error_kind(error) == "client" and "1-250 printable ASCII" in str(error)
        assert error_kind(_raises(lambda: target.get_multi(["ok", "not ok"]))) == "client"
        target.get("x" * 250)   # the longest valid key
    after = server_stats(info)[memcached_server.address]
    assert _delta(before, after, "cmd_get") == 1


def test_memcached_refusals_are_client_errors(memcached_server):
    with open_target(parse_target(memcached_server.url)) as target:
        too_large = _raises(lambda: target.set("big", b"x" * (2 << 20), 0))
        target.set("text", b"abc", 0)
        not_a_number = _raises(lambda: target.incr("text", 1))
        assert (error_kind(too_large), error_kind(not_a_number)) == ("client", "client")
        assert target.get("text") == b"abc"   # and the connection is still usable


def test_redis_refusals_are_server_errors(redis_server):
    admin = redis.Redis(redis_server.host, redis_server.port)
    with open_target(parse_target(redis_server.url)) as target:
        target.set("text", b"abc", 0)
        assert error_kind(_raises(lambda: target.incr("text", 1))) == "server"
        admin.config_set("maxmemory", 1)   # noeviction: every write is refused with OOM
        try:
            assert error_kind(_raises(lambda: target.set("k", b"v", 0))) == "server"
        finally:
            admin.config_set("maxmemory", 0)
        assert target.get("text") == b"abc"
    admin.close()


def test_error_kind_fallbacks():
    assert error_kind(socket.timeout("timed out")) == "timeout"
    assert error_kind(ConnectionResetError()) == "connection"
    assert error_kind(ValueError("bug")) == "other"
    try:
        try:
            raise ConnectionRefusedError()
        except OSError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as wrapped:
        assert error_kind(wrapped) == "connection"


# --------------------------------------------------------------------------- clients

def test_each_open_target_is_its_own_connection(redis_server):
    admin = redis.Redis(redis_server.host, redis_server.port)
    info = parse_target(redis_server.url)
    with open_target(info) as first, open_target(info) as second:
        assert [c for c in admin.client_list() if c["name"] == "cachebench"] == []   # lazy
        first.get("a")
        second.get("a")
        first.get("b")
        assert len([c for c in admin.client_list() if c["name"] == "cachebench"]) == 2
    assert redis.utils.HIREDIS_AVAILABLE
    admin.close()


def test_single_memcached_node_needs_no_ring(memcached_server):
    target = open_target(parse_target(memcached_server.url))
    assert isinstance(target, MemcachedTarget)
    assert target.node_for("anything") == memcached_server.address
    target.close()


# --------------------------------------------------------------------------- server counters

def test_memcached_counters_match_the_calls(memcached_server):
    info = parse_target(memcached_server.url)
    before = server_stats(info)[memcached_server.address]
    with open_target(info) as target:
        target.set_many({f"k{i}": b"v" for i in range(10)}, 0)
        for i in range(15):            # 10 hits, 5 misses
            target.get(f"k{i}")
        target.get_multi(["k0", "k1", "k2", "k3", "m1", "m2"])   # counted per key: 4 + 2
    after = server_stats(info)[memcached_server.address]
    assert {counter: _delta(before, after, counter)
            for counter in ("cmd_get", "get_hits", "get_misses", "cmd_set")} == {
        "cmd_get": 21, "get_hits": 14, "get_misses": 7, "cmd_set": 10}
    assert isinstance(after["rusage_user"], float) and "version" not in after


def test_pool_counters_add_up_over_the_nodes(memcached_pool, key_prefix):
    info = parse_target(memcached_pool.url)
    before = server_stats(info)
    keys = [f"{key_prefix}{i}" for i in range(30)]
    with open_target(info) as pool:
        pool.set_many({key: b"v" for key in keys[:20]}, 60)
        assert len(pool.get_multi(keys)) == 20
    after = server_stats(info)
    assert sorted(after) == sorted(memcached_pool.nodes)
    assert (_total_delta(before, after, "cmd_get"), _total_delta(before, after, "get_hits"),
            _total_delta(before, after, "cmd_set")) == (30, 20, 20)


def test_redis_counters_match_the_calls(redis_server):
    info = parse_target(redis_server.url)
    with open_target(info) as target:
        target.set_many({f"k{i}": b"v" for i in range(10)}, 0)
        before = server_stats(info)[redis_server.address]
        for i in range(15):
            target.get(f"k{i}")
        target.get_multi(["k0", "k1", "m1"])
    after = server_stats(info)[redis_server.address]
    assert {counter: _delta(before, after, counter) for counter in
            ("keyspace_hits", "keyspace_misses", "cmdstat_get_calls", "cmdstat_mget_calls")} == {
        "keyspace_hits": 12, "keyspace_misses": 6, "cmdstat_get_calls": 15,
        "cmdstat_mget_calls": 1}
    assert after["db0_keys"] == 10 and "used_memory" in after


def test_cluster_stats_cover_every_master(redis_cluster, key_prefix):
    info = parse_target(redis_cluster.url)   # names one node; the others are discovered
    before = server_stats(info)
    assert sorted(before) == sorted(redis_cluster.nodes)
    with open_target(info) as target:
        keys = [f"{key_prefix}{i}" for i in range(30)]
        target.set_many({key: b"v" for key in keys[:12]}, 60)
        for key in keys:
            target.get(key)
    after = server_stats(info)
    assert (_total_delta(before, after, "keyspace_hits"),
            _total_delta(before, after, "keyspace_misses")) == (12, 18)
    assert all(_delta(before[node], after[node], "cmdstat_get_calls") > 0 for node in after)


def test_server_versions(memcached_pool, redis_server, redis_cluster):
    for url, count, pattern in [(memcached_pool.url, 3, r"1\.\d+\.\d+"),
                                (redis_server.url, 1, r"\d+\.\d+\.\d+"),
                                (redis_cluster.url, 3, r"\d+\.\d+\.\d+")]:
        versions = server_versions(parse_target(url))
        assert len(versions) == count
        assert all(re.fullmatch(pattern, version) for version in versions.values()), versions
