"""Op streams and the Executor, against real memcached and Redis servers (no mocks)."""

from __future__ import annotations

import itertools
import textwrap
from collections import Counter

import numpy as np
import pytest
from redis.crc import key_slot

from bench.scenario import keys as mwkeys
from bench.scenario.model import Scenario, load_scenario, parse_scenario
from bench.targets import open_target, parse_target, server_stats
from bench.workload.executor import Executor, Sample
from bench.workload.ops import BLOCK_OPS, Op, Workload
from bench.workload.values import PURGE_PREFIX, segment_layout

READS = ("get", "get_multi", "hget")


def scenario(text: str) -> Scenario:
    """A scenario from inline YAML (tests keep their scenarios next to their checks)."""
    return parse_scenario(textwrap.dedent(text), "inline.yaml")


def no_sleep(_: float) -> None:
    """Regeneration time is part of the op, but tests need not wait for it."""


def run_ops(target_url: str, scn: Scenario, ops: list[Op]) -> list[list[Sample]]:
    """Execute `ops` on a fresh target; one sample list per op."""
    with open_target(parse_target(target_url), timeout=1.0) as target:
        executor = Executor(target, scn, sleep=no_sleep)
        return [executor.execute(op) for op in ops]


def first_ops(scn: Scenario, count: int, seed: int = 1) -> list[Op]:
    return list(itertools.islice(Workload(scn, seed).stream(0, 1), count))


def first_of(scn: Scenario, kind: str) -> Op:
    """The first op of mix entry `kind` in the scenario's stream."""
    return next(op for op in Workload(scn).stream() if op.kind == kind)


def purge_of(read: Op) -> Op:
    """A wan_delete of the key `read` reads."""
    return Op("wan_delete", "wan_delete", read.space, read.keys[:1], 0, 0.0)


# ----------------------------------------------------------------------------- streams


@pytest.mark.parametrize("name", ["smoke", "mediawiki"])
def test_global_stream_is_the_same_for_any_number_of_streams(name: str) -> None:
    scn = load_scenario(name)
    blocks = 6
    single = first_ops(scn, blocks * BLOCK_OPS, seed=7)
    for count in (2, 3):
        workload = Workload(scn, 7)  # a fresh one, as in another process
        streams = [workload.stream(i, count) for i in range(count)]
        rebuilt: list[Op] = []
        for b in range(blocks):
            rebuilt += list(itertools.islice(streams[b % count], BLOCK_OPS))
        assert rebuilt == single


def test_different_seeds_give_different_streams() -> None:
    scn = load_scenario("smoke")
    assert first_ops(scn, 200, seed=1) != first_ops(scn, 200, seed=2)


def test_a_key_keeps_its_value_size_across_ops() -> None:
    sizes: dict[str, set[int]] = {}
    for op in first_ops(load_scenario("smoke"), 5000):
        if op.action in ("get", "set") and op.space == 0:
            sizes.setdefault(op.keys[0], set()).add(op.value_size)
    assert sizes and all(len(s) == 1 for s in sizes.values())


def test_mix_shares_follow_the_weights() -> None:
    ops = first_ops(load_scenario("smoke"), 20 * BLOCK_OPS)
    kinds = Counter(op.kind for op in ops)
    assert kinds["get"] / len(ops) == pytest.approx(0.95 * 0.80, abs=0.02)
    assert kinds["incr"] / len(ops) == pytest.approx(0.05, abs=0.01)


def test_prefill_shards_are_disjoint_and_cover_every_key() -> None:
    wl = Workload(load_scenario("smoke"))
    whole = [k for items, _ in wl.prefill_batches(batch_size=100) for k in items]
    halves = [{k for items, _ in wl.prefill_batches(s, 2, batch_size=100) for k in items}
              for s in (0, 1)]
    assert len(whole) == len(set(whole)) == 1000      # counters are not prefilled
    assert halves[0].isdisjoint(halves[1])
    assert halves[0] | halves[1] == set(whole)


def test_prefill_values_have_the_keys_sizes() -> None:
    scn = load_scenario("smoke")
    wl = Workload(scn)
    items, ttl = next(wl.prefill_batches(batch_size=50))
    sizes = wl.plans[0].sizes(np.arange(50)).tolist()
    assert [len(v) for v in items.values()] == sizes
    assert ttl in (3600.0, 86400.0)


# ----------------------------------------------------------------------------- executor


def check_samples(op: Op, samples: list[Sample]) -> None:
    """What every op's samples must satisfy, whatever the server answered."""
    assert samples, op
    for s in samples:
        assert s.error is None, (op, samples)
        assert s.end >= s.start
        if s.name in READS:
            assert s.hits + s.misses == s.keys
    if op.action == "get":
        first = samples[0]
        assert first.name == "get"
        if first.misses:
            assert [s.name for s in samples] == ["get", "set"]
        else:
            assert len(samples) == 1 and first.nbytes == op.value_size
    if op.action == "get_multi":
        first = samples[0]
        assert first.name == "get_multi" and first.keys == len(op.keys)
        assert [s.name for s in samples[1:]] == ["set"] * first.misses


@pytest.mark.parametrize("name", ["smoke", "mediawiki"])
def test_ops_on_memcached_and_server_counters_agree(name: str, memcached_server) -> None:
    scn = load_scenario(name)
    ops = first_ops(scn, 1500)
    info = parse_target(memcached_server.url)
    before = server_stats(info)[memcached_server.address]
    results = run_ops(memcached_server.url, scn, ops)
    after = server_stats(info)[memcached_server.address]
    for op, samples in zip(ops, results):
        check_samples(op, samples)
    flat = [s for samples in results for s in samples]
    delta = {k: after[k] - before[k] for k in ("get_hits", "get_misses", "cmd_set",
                                                "delete_hits", "delete_misses", "incr_misses")}
    gets = [s for s in flat if s.name in ("get", "get_multi")]
    assert delta["get_hits"] == sum(s.hits for s in gets)
    assert delta["get_misses"] == sum(s.misses for s in gets)
    assert delta["cmd_set"] == sum(1 for s in flat if s.name in ("set", "add"))
    assert delta["delete_hits"] == sum(s.hits for s in flat if s.name == "delete")
    assert delta["incr_misses"] == sum(s.misses for s in flat if s.name == "incr")


@pytest.mark.parametrize("name", ["smoke", "mediawiki"])
def test_ops_on_redis(name: str, redis_server) -> None:
    scn = load_scenario(name)
    ops = first_ops(scn, 1000)
    results = run_ops(redis_server.url, scn, ops)
    for op, samples in zip(ops, results):
        check_samples(op, samples)
    incr = [s for samples in results for s in samples if s.name == "incr"]
    assert incr and all(s.hits == 1 for s in incr)     # INCRBY creates missing keys


def test_after_prefill_gets_hit(memcached_server) -> None:
    scn = load_scenario("smoke")
    wl = Workload(scn)
    with open_target(parse_target(memcached_server.url)) as target:
        for items, ttl in wl.prefill_batches():
            target.set_many(items, ttl)
    gets = [op for op in first_ops(scn, 300) if op.action == "get"]
    results = run_ops(memcached_server.url, scn, gets)
    assert all(samples[0].hits == 1 and len(samples) == 1 for samples in results)


def test_dead_target_gives_error_samples_not_exceptions(memcached_server) -> None:
    url = memcached_server.url
    memcached_server.stop()
    scn = load_scenario("smoke")
    results = run_ops(url, scn, first_ops(scn, 50))
    for samples in results:
        assert len(samples) == 1       # the op stops at its first failed call
        assert samples[0].error == "connection"


def test_hash_ops_on_memcached_are_client_errors(memcached_server) -> None:
    scn = scenario("""
        name: hashes
        load: {rate: 10}
        keyspaces:
          - {name: h, keys: 10, mix: {hset: 1, hget: 1}}
        """)
    results = run_ops(memcached_server.url, scn, first_ops(scn, 10))
    assert {s.error for samples in results for s in samples} == {"client"}


def test_hash_ops_on_redis(redis_server) -> None:
    scn = scenario("""
        name: hashes
        load: {rate: 10}
        keyspaces:
          - {name: h, keys: 4, hash_fields: 2, value_size: 50B, mix: {hset: 1, hget: 1}}
        """)
    ops = first_ops(scn, 200)
    flat = [s for samples in run_ops(redis_server.url, scn, ops) for s in samples]
    assert {s.name for s in flat} == {"hset", "hget"} and not any(s.error for s in flat)
    assert sum(s.hits for s in flat if s.name == "hget") > 0
    assert all(s.nbytes == 50 for s in flat if s.hits)


# ----------------------------------------------------------------------------- patterns

WAN = """
    name: wan
    load: {rate: 10}
    keyspaces:
      - name: pages
        keys: 10
        template: "{wiki}:page-props:{id}"
        vars: {wiki: [enwiki]}
        value_size: 300B
        wan: {check_keys: ["{wiki}:page-touched:{id}"]}
        mix:
          wan_get: {weight: 9, regen: 5ms}
          wan_delete: 1
    """


def names(samples: list[Sample]) -> list[str]:
    return [s.name for s in samples]


def test_wan_get_follows_get_with_set_callback(memcached_server) -> None:
    scn = scenario(WAN)
    read = first_of(scn, "wan_get")
    purge = purge_of(read)
    key_id = read.keys[0].split(":")[-1].split("|")[0]
    assert read.keys == (f"cb:WANCache:enwiki:page-props:{key_id}|#|v",
                         f"cb:WANCache:enwiki:page-touched:{key_id}|#|t")
    first, second, _, after_purge, interim_hit = run_ops(
        memcached_server.url, scn, [read, read, purge, read, read])
    # cold: value and check key missing -> init check key, mutex, regenerate, set, unlock
    assert names(first) == ["get_multi", "add", "add", "set", "delete"]
    assert (first[0].hits, first[0].misses) == (0, 2)
    assert first[3].nbytes == 300
    assert names(second) == ["get_multi"] and second[0].hits == 2
    # tombstoned: the mutex is taken, the value is not overwritten: an interim value is
    # written; with the mutex free again the next read does the same
    assert names(after_purge) == ["get_multi", "add", "set", "delete"]
    assert names(interim_hit) == ["get_multi", "add", "set", "delete"]
    with open_target(parse_target(memcached_server.url)) as target:
        assert target.get(read.keys[0]).startswith(PURGE_PREFIX)
        assert len(target.get(read.keys[0][:-1] + "i")) == 300


def test_wan_get_without_the_mutex_returns_interim_value(memcached_server) -> None:
    scn = scenario(WAN)
    read = first_of(scn, "wan_get")
    purge = purge_of(read)
    mutex = read.keys[0][:-1] + "m"
    with open_target(parse_target(memcached_server.url)) as target:
        target.set(mutex, b"1", 10)          # another request is regenerating
        results = run_ops(memcached_server.url, scn, [purge, read, read])
    # first read: lock busy, no interim yet -> regenerate and write the interim value;
    # second read: lock busy, interim present -> use it
    assert names(results[1]) == ["get_multi", "add", "add", "get", "set"]
    assert names(results[2]) == ["get_multi", "add", "get"] and results[2][2].hits == 1


def test_segmented_values_round_trip(memcached_server) -> None:
    scn = scenario("""
        name: big
        load: {rate: 10}
        keyspaces:
          - name: pc
            keys: 3
            template: "{wiki}:pcache:{id}"
            value_size: 2MiB
            segmentation: true
            mix: {get: {weight: 1, on_miss: set}}
        """)
    op = first_of(scn, "get")
    cold, warm = run_ops(memcached_server.url, scn, [op, op])
    assert names(cold) == ["get", "set", "set", "set", "set"]      # 3 segments, then main
    assert sum(s.nbytes for s in cold[1:4]) == 2 * 1024 * 1024
    assert names(warm) == ["get", "get_multi"]
    assert (warm[1].keys, warm[1].hits, warm[1].nbytes) == (3, 3, 2 * 1024 * 1024)


def test_segment_layout_uses_mediawiki_segment_keys() -> None:
    items = segment_layout("cb:", "cb:enwiki:pcache:1", b"x" * (mwkeys.SEGMENTATION_SIZE + 1))
    keys = list(items)
    assert len(keys) == 3 and keys[-1] == "cb:enwiki:pcache:1"
    assert all(k.startswith("cb:global:segment:") for k in keys[:2])
    assert [len(items[k]) for k in keys[:2]] == [mwkeys.SEGMENTATION_SIZE, 1]


def test_compression_shrinks_stored_sizes() -> None:
    base = """
        name: z
        load: {rate: 10}
        keyspaces:
          - name: a
            keys: 1000
            value_size: {dist: uniform, min: 100, max: 5000}
            %s
            mix: {set: 1}
        """
    plain = Workload(scenario(base % "")).plans[0].sizes(np.arange(1000))
    squeezed = Workload(scenario(base % "compression: {threshold: 1500B, ratio: 50%}")) \
        .plans[0].sizes(np.arange(1000))
    big = plain >= 1500
    assert np.array_equal(squeezed[~big], plain[~big])
    assert np.array_equal(squeezed[big], np.ceil(plain[big] * 0.5))


LOCKS = """
    name: locks
    load: {rate: 10}
    keyspaces:
      - name: lock
        keys: 100
        ttl: 2s
        prefill: false
        mix: {redlock: {weight: 1, instances: 3, hold: 1ms}}
      - name: rate
        keys: 100
        ttl: 60s
        values: counter
        prefill: false
        mix: {ratelimit: 1}
    """


def test_redlock_keys_land_on_three_cluster_masters(redis_cluster) -> None:
    scn = scenario(LOCKS)
    op = next(op for op in first_ops(scn, 100) if op.action == "redlock")
    thirds = {key_slot(k.encode()) * 3 // 16384 for k in op.keys}
    assert thirds == {0, 1, 2}
    [samples] = run_ops(redis_cluster.url, scn, [op])
    assert names(samples) == ["add"] * 3 + ["delete"] * 3
    assert not any(s.error for s in samples)


def test_redlock_without_majority_releases_what_it_took(redis_server) -> None:
    scn = scenario(LOCKS)
    op = next(op for op in first_ops(scn, 100) if op.action == "redlock")
    with open_target(parse_target(redis_server.url)) as target:
        for key in op.keys[:2]:
            target.set(key, b"other", 10)
        [samples] = run_ops(redis_server.url, scn, [op])
        assert names(samples) == ["add", "add", "add", "delete"]
        assert target.get(op.keys[0]) == b"other" and target.get(op.keys[2]) is None


@pytest.mark.parametrize("server, second", [("memcached_server", ["incr", "add"]),
                                            ("redis_server", ["incr", "touch"])])
def test_ratelimit_starts_a_window(server: str, second: list[str], request) -> None:
    url = request.getfixturevalue(server).url
    scn = scenario(LOCKS)
    op = next(op for op in first_ops(scn, 100) if op.action == "ratelimit")
    first, again = run_ops(url, scn, [op, op])
    assert names(first) == second
    assert names(again) == ["incr"] and again[0].hits == 1


@pytest.mark.parametrize("popularity", ["sequential", "{dist: latest, alpha: 1.2}",
                                        "{dist: hotspot, hot_fraction: 10%, hot_share: 90%}",
                                        "{dist: scrambled_zipf, alpha: 0.9}"])
def test_every_popularity_gives_the_same_global_stream(popularity: str) -> None:
    scn = scenario(f"""
        name: pop
        load: {{rate: 10}}
        keyspaces:
          - name: a
            keys: 5000
            popularity: {popularity}
            mix: {{get: 90%, set: 10%}}
          - name: b
            keys: 10
            mix: {{get: 1}}
        """)
    single = first_ops(scn, 4 * BLOCK_OPS)
    three = [Workload(scn).stream(i, 3) for i in range(3)]
    rebuilt = [op for b in range(4) for op in itertools.islice(three[b % 3], BLOCK_OPS)]
    assert rebuilt == single


def test_sequential_popularity_scans_the_keys_in_order() -> None:
    scn = scenario("""
        name: scan
        load: {rate: 10}
        keyspaces:
          - {name: a, keys: 100000, template: "{wiki}:scan:{id}", popularity: sequential,
             mix: {get: 1}}
        """)
    ids = [int(op.keys[0].rsplit(":", 1)[1]) for op in first_ops(scn, 3 * BLOCK_OPS)]
    assert ids == list(range(3 * BLOCK_OPS))
