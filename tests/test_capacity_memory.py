"""bench capacity memory: memcached's memory accounting and LRU, checked against a real
memcached, and the sampled model against the full one."""

from __future__ import annotations

import itertools
import json
import textwrap
import time
from collections import OrderedDict

import numpy as np
import pytest
from pymemcache.client.base import Client

from bench import cluster
from bench.capacity import cachesim as cs
from bench.capacity.che import CheModel
from bench.capacity.memory import simulate
from bench.capacity.slabs import SlabClasses, item_size
from bench.capacity.stream import StreamSettings, sample_stream
from bench.cli import main
from bench.scenario.distributions import Zipf
from bench.scenario.model import parse_scenario
from bench.targets import open_target, parse_target
from bench.targets.memcached import KetamaRing
from bench.workload.executor import Executor
from bench.workload.ops import Workload

ZIPF = """\
    name: zipf-memory
    load: {{rate: 1000}}
    keyspaces:
      - name: z
        keys: {keys}
        template: "z:{{id}}"
        popularity: {{dist: zipf, alpha: {alpha}}}
        value_size: {{dist: lognormal, median: 400B, p99: 8KiB, max: 64KiB{per}}}
        ttl: {ttl}
        mix: {{get: {{weight: 95, on_miss: set}}, set: 5{more}}}
    """


def scenario(keys: int = 20_000, alpha: float = 0.9, ttl: str = "0", per: str = "",
             more: str = ""):
    return parse_scenario(textwrap.dedent(ZIPF.format(keys=keys, alpha=alpha, ttl=ttl,
                                                      per=per, more=more)))


def stream(scn, ops: int, rate: float = 10_000, nodes: tuple[str, ...] = ("a:11211",),
           **options):
    return sample_stream(scn, StreamSettings(ops=ops, warmup_ops=ops // 2, op_rate=rate,
                                             nodes=nodes, **options), SlabClasses())


# ------------------------------------------------------------------------------ accounting


def test_items_land_in_the_chunks_memcached_gives_them(memcached_server) -> None:
    """Item size (48 + 8 + key + 1 + value + 2) and the -f 1.25 -n 48 classes, read back
    from `stats slabs` of a real memcached: each value size lands in the predicted chunk."""
    client = Client((memcached_server.host, memcached_server.port))
    slabs = SlabClasses()
    expected = {}
    for value in (10, 40, 41, 500, 1_000, 5_000, 100_000, 400_000):
        key = f"cap:{value}"
        client.set(key, b"x" * value)
        ntotal = int(item_size(len(key), value))
        expected[int(slabs.sizes[slabs.class_of(ntotal)])] = key
    stats = client.stats("slabs")
    used = {int(v) for k, v in stats.items() if k.endswith(b":chunk_size")
            and stats[k.replace(b"chunk_size", b"used_chunks")] > 0}
    assert used == set(expected)


def test_slab_classes_follow_the_growth_factor() -> None:
    slabs = SlabClasses()
    assert slabs.sizes[:12].tolist() == [96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944,
                                         1184]
    assert len(slabs.sizes) == 39 and slabs.sizes[-1] == 512 * 1024
    assert len(SlabClasses(1.01, 32).sizes) == 63          # memcached's class limit
    assert slabs.class_of([2**20 + 1]).tolist() == [-1]     # above -I: refused
    assert slabs.chunks([600_000]).tolist() == [2]          # chunked item
    with pytest.raises(ValueError, match="-f"):
        SlabClasses(1.0)


# ------------------------------------------------------------------------------ the node model


def _events(keys: list[int], codes: list[int], seconds: list[float], nbytes: int = 1000,
            ttl: int = 0) -> dict[str, np.ndarray]:
    slabs = SlabClasses()
    n = len(keys)
    return dict(times=np.array(seconds, dtype=float), keys=np.array(keys),
                codes=np.array(codes), classes=np.full(n, slabs.class_of([nbytes])[0]),
                units=np.ones(n, dtype=np.int64), nbytes=np.full(n, nbytes),
                ttls=np.full(n, ttl))


def test_a_key_fetched_twice_survives_a_scan_that_flushes_a_plain_lru() -> None:
    """memcached's segmented LRU: an ACTIVE key moves to WARM and outlives a flood of
    one-time keys; the same flood evicts it from a plain LRU of the same size."""
    slabs = SlabClasses()
    per_page = int(slabs.per_page[slabs.class_of([1000])[0]])
    filled, flood = list(range(1, per_page)), list(range(per_page, 4 * per_page))
    keys = filled + [0, 0, 0] + flood + [0]
    codes = [cs.SET] * len(filled) + [cs.SET, cs.LOOKUP, cs.LOOKUP] + [cs.SET] * len(flood) \
        + [cs.LOOKUP]
    node = cs.MemcachedNode(slabs, 2**20)
    result = node.run(**_events(keys, codes, [0.0] * len(keys)))
    assert result.outcomes[-1] == 1 and result.evictions.sum() > 0
    lru: OrderedDict[int, None] = OrderedDict()
    for key in keys[:-1]:
        lru[key] = None
        lru.move_to_end(key)
        if len(lru) > per_page:
            lru.popitem(last=False)
    assert 0 not in lru


def test_ttl_expiry_turns_hits_into_misses() -> None:
    """An item set with a 2 s TTL is found at 1 s and gone at 3 s (memcached exptime)."""
    node = cs.MemcachedNode(SlabClasses(), 64 * 2**20)
    result = node.run(**_events([7, 7, 7], [cs.SET, cs.LOOKUP, cs.LOOKUP], [0.0, 1.0, 3.0],
                                ttl=2))
    assert result.outcomes.tolist() == [-1, 1, 0] and result.expired == 1


def test_a_class_gets_its_first_page_beyond_the_limit() -> None:
    """As slabs.c does: with -m 1 the second class in use still gets a page."""
    slabs = SlabClasses()
    node = cs.MemcachedNode(slabs, 2**20)
    events = _events([1, 2], [cs.SET, cs.SET], [0.0, 0.0])
    events["classes"] = np.array([3, 10])
    result = node.run(**events)
    assert result.pages[[3, 10]].tolist() == [1, 1]


# ------------------------------------------------------------------------------ against memcached


def _measured_hit_ratio(scn, memory_mb: int, ops: int, warmup: int, workdir
                        ) -> tuple[float, float]:
    """Hit ratio of gets after the warm-up on a fresh memcached -m memory_mb, from the
    server's counters, and the op rate the loop achieved."""
    server = cluster.start_memcached(0, workdir, memory_mb=memory_mb, name=f"m{memory_mb}")
    try:
        target = open_target(parse_target(server.url))
        workload = Workload(scn)
        for items, ttl in workload.prefill_batches():
            target.set_many(items, ttl)
        executor = Executor(target, scn)
        client = Client((server.host, server.port))
        started = time.perf_counter()
        for i, op in enumerate(itertools.islice(workload.stream(0, 1), ops)):
            if i == warmup:
                before = client.stats()
            executor.execute(op)
        elapsed = time.perf_counter() - started
        after = client.stats()
        hits = after[b"get_hits"] - before[b"get_hits"]
        misses = after[b"get_misses"] - before[b"get_misses"]
        return hits / (hits + misses), ops / elapsed
    finally:
        server.stop()


@pytest.mark.slow
def test_simulation_predicts_a_real_memcached_within_3_points(tmp_path) -> None:
    """A Zipf scenario (prefilled, cache-aside gets, some sets, lognormal values over
    30 slab classes) on a real memcached at three -m sizes with the hit ratio well
    below 100%: the simulated hit ratio after the warm-up is within 3 points."""
    scn = scenario(keys=200_000, alpha=0.9)
    ops, warmup = 150_000, 75_000
    for memory_mb in (32, 64, 128):
        measured, rate = _measured_hit_ratio(scn, memory_mb, ops, warmup, tmp_path)
        assert 0.5 < measured < 0.9
        model = sample_stream(scn, StreamSettings(ops=ops, warmup_ops=warmup, op_rate=rate,
                                                  sample_rate=1.0), SlabClasses())
        predicted = simulate(model, memory_mb * 2**20).hit_ratio
        assert predicted == pytest.approx(measured, abs=0.03), memory_mb


# ------------------------------------------------------------------------------ sampling, Che


def test_sampled_simulation_is_within_a_point_of_the_full_one() -> None:
    """SHARDS at rate ~0.25 (hottest keys counted apart) against every key simulated,
    at sizes with several pages per class in use."""
    scn = scenario(keys=50_000, alpha=0.99, more=", delete: 2")
    full = stream(scn, 400_000, sample_rate=1.0)
    sampled = stream(scn, 400_000, budget=100_000)
    assert 0.1 < sampled.sample_rate < 0.5 and len(sampled.hot)
    for memory_mb in (32, 48):
        exact, estimate = simulate(full, memory_mb * 2**20), simulate(sampled, memory_mb * 2**20)
        assert exact.hit_ratio < 0.97
        assert estimate.hit_ratio == pytest.approx(exact.hit_ratio, abs=0.01)
        assert 0 < estimate.error < 0.01 and exact.error == 0


def test_che_approximates_a_plain_lru_under_irm() -> None:
    """Che's formula against an LRU of 2000 equal items fed Zipf(0.8) draws."""
    n, capacity = 50_000, 2_000
    zipf = Zipf(n, 0.8)
    draws = zipf.sample(np.random.default_rng(3), 400_000).tolist()
    lru: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for i, key in enumerate(draws):
        if key in lru:
            lru.move_to_end(key)
            hits += i >= 200_000
        else:
            lru[key] = None
            if len(lru) > capacity:
                lru.popitem(last=False)
    p = zipf.probability(np.arange(n))
    che = CheModel(p, p, np.ones(n), np.ones(n))
    assert che.hit_ratio(capacity) == pytest.approx(hits / 200_000, abs=0.01)
    assert che.memory_for(che.hit_ratio(capacity)) == pytest.approx(capacity, rel=0.01)


# ------------------------------------------------------------------------------ stream


def test_keys_go_to_nodes_by_the_ketama_ring_with_their_stored_sizes() -> None:
    """The memory model stores each key's own (per-key) size, also for `per: request`
    distributions, on the node the memcached target's ring picks."""
    scn = scenario(keys=3_000, per=", per: request")
    nodes = ("h1:11211", "h2:11211", "h3:11211")
    model = stream(scn, 20_000, nodes=nodes, sample_rate=1.0)
    plan = Workload(scn).plans[0]
    ring = KetamaRing(list(nodes))
    first = np.unique(np.concatenate([e.keys for e in model.events]))[:200]
    for n, events in enumerate(model.events):
        assert all(model.keys.node[k] == n for k in events.keys[:50].tolist())
    indices = np.arange(3_000)
    keys = plan.keys_for(indices)
    by_key = {k: (nodes.index(ring.node_for(k)), int(item_size(len(k), s)))
              for k, s in zip(keys, plan.sizes(indices).tolist())}
    assert sorted(by_key.values()) == sorted(zip(model.keys.node.tolist(),
                                                 model.keys.nbytes.tolist()))
    assert len(first) == 200


def test_short_ttls_lower_the_hit_ratio() -> None:
    scn_long, scn_short = scenario(keys=5_000), scenario(keys=5_000, ttl="1s")
    long_ = simulate(stream(scn_long, 100_000, rate=5_000, sample_rate=1.0), 64 * 2**20)
    short = simulate(stream(scn_short, 100_000, rate=5_000, sample_rate=1.0), 64 * 2**20)
    assert short.hit_ratio < long_.hit_ratio - 0.2


# ------------------------------------------------------------------------------ the command


def test_memory_command_prints_the_answer_and_writes_json(tmp_path, capsys) -> None:
    assert main(["capacity", "memory", "smoke", "--nodes", "2", "--ops", "200000",
                 "--target-hit-ratio", "90%", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "hit ratio against memory per node" in printed and "slab classes" in printed
    data = json.loads((tmp_path / "memory.json").read_text())
    assert data["nodes"] == ["cache1:11211", "cache2:11211"] and data["curve"]
    assert data["target_hit_ratio"] == 0.9


@pytest.mark.parametrize("argv, message", [
    (["--target-hit-ratio", "150%"], "--target-hit-ratio: expected a fraction"),
    (["--target", "redis://127.0.0.1:6379"], "--target: the memory model is memcached's"),
    (["--memory", "1KiB"], "--memory: expected sizes of at least 1MiB"),
    (["--sample-rate", "2"], "--sample-rate: expected a fraction"),
])
def test_memory_command_bad_flags_exit_2(argv, message, capsys) -> None:
    assert main(["capacity", "memory", "smoke", "--ops", "10000", "--quiet", *argv]) == 2
    assert message in capsys.readouterr().err
