"""The scenario's op stream as the memory model sees it: key events, sampled, per node.

Why not `Workload.stream`: the model needs only which key each op touches, what it
does to it, its size and TTL, for tens of millions of ops; building Op tuples and key
strings for each would take minutes. This module draws the same distributions
through the key spaces' own samplers (`SpacePlan`: popularity, mix, TTLs, batch sizes,
the stored per-key sizes), vectorised over a million ops at a time, and keeps only:

- SHARDS spatial sampling (Waldspurger et al., FAST 2015): a key is simulated when a
  hash of it falls below the rate R, and the simulated cache gets R times the memory,
  so a sample of the keys sees the cache as the whole key space would. R is chosen so
  that about `budget` events remain (`rate` given: that one); with R = 1 everything is
  simulated.
- The hottest keys apart: under Zipf a handful of keys carry whole percents of the
  requests, so whether the hash happens to sample them would swing both the result and
  the work. With R < 1, keys expected to carry more than a thousandth of the budget are
  not simulated: they are counted resident (their chunks pinned in their node), hit as
  often as their mix lets them be present (deletes remove them), and the model checks
  afterwards that the cache's eviction age leaves them resident.

Keys go to nodes by the memcached target's ketama ring (`KetamaRing`, the client's own
consistent hashing), so skew between nodes comes out as it would on a real pool.
Times are op positions over the op rate, which is what TTLs and memcached's
second-granular LRU ages are measured against.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from bench.capacity import cachesim as cs
from bench.capacity.slabs import SlabClasses, item_size
from bench.errors import InputError
from bench.scenario import keys as mwkeys
from bench.scenario.distributions import Latest, Sequential, hashed_uniform
from bench.scenario.model import KeySpace, MixEntry, Scenario
from bench.targets.memcached import KetamaRing
from bench.vocabulary import entry_op
from bench.workload.ops import BLOCK_OPS, DEFAULT_BATCH, SpacePlan, Workload

#: Ops drawn per vectorised step (stateful popularities move every STATEFUL_OPS).
CHUNK_OPS = 1 << 20
STATEFUL_OPS = 16 * BLOCK_OPS
#: Events simulated per node pass when the sampling rate is chosen automatically.
DEFAULT_BUDGET = 1_000_000
#: ... but never fewer sampled keys than this (SHARDS needs a few thousand at least).
MIN_SAMPLED_KEYS = 20_000
#: A key expected to carry this share of the budget is counted apart as hot.
HOT_SHARE_OF_BUDGET = 1e-3
HOT_CANDIDATES = 1 << 16
#: Keys per space, besides its hottest, that stand for the rest in Che's approximation.
CHE_SAMPLE = 100_000
#: Bytes a counter holds ("0", "17"); a WANObjectCache tombstone (PURGED:<time>:<holdoff>).
COUNTER_BYTES = 2
TOMBSTONE_BYTES = len(b"PURGED:1700000000.0000:11")
#: Hash salt of the spatial sampling (any constant: keys are hashed, not drawn).
SAMPLING_SALT = 0x5348415244530001


class EntryEffect(NamedTuple):
    """What ops of one mix entry do to the key they address, for the model."""

    code: int | None          # cachesim code; None: touches no cached value (redlock)
    keys_per_op: float        # a get_multi's mean batch, else 1
    lookup: bool
    fills: bool               # leaves the key present (set, add, cache-aside miss, ...)
    removes: bool             # delete


def entry_effect(space: KeySpace, name: str, entry: MixEntry) -> EntryEffect:
    """The effect of a mix entry's ops (wan_get: a cache-aside get of the value key;
    wan_delete: a tombstone set for HOLDOFF_TTL, which reads count as found)."""
    op = entry_op(name, entry)
    if op in ("hget", "hset"):
        raise InputError(f"{op} is a Redis op; the memory model is memcached's",
                         file=None, field=f"keyspaces.{space.name}.mix.{name}")
    batch = (entry.batch.build().mean() if entry.batch is not None else DEFAULT_BATCH) \
        if op == "get_multi" else 1.0
    if op in ("get", "get_multi", "wan_get"):
        fills = op == "wan_get" or entry.on_miss == "set"
        return EntryEffect(cs.LOOKUP_SET if fills else cs.LOOKUP, batch, True, fills, False)
    codes = {"set": cs.SET, "add": cs.ADD, "replace": cs.REPLACE, "delete": cs.DELETE,
             "touch": cs.TOUCH, "wan_delete": cs.SET, "ratelimit": cs.INCR_ADD,
             "incr": cs.INCR_ADD if entry.on_miss == "add" else cs.INCR}
    codes["decr"] = codes["incr"]
    if op == "redlock":
        return EntryEffect(None, 0.0, False, False, False)
    code = codes[op]
    return EntryEffect(code, 1.0, False, code in (cs.SET, cs.ADD, cs.INCR_ADD),
                       code == cs.DELETE)


@dataclass
class SpaceModel:
    """A key space as the model draws it."""

    plan: SpacePlan
    share: float                       # of all ops
    effects: list[EntryEffect]
    key_offset: int                    # global key id = offset + index

    @property
    def space(self) -> KeySpace:
        return self.plan.space

    @property
    def accesses_per_op(self) -> float:
        """Keys touched per op of this space (get_multi batches count every key)."""
        return float(sum(p * e.keys_per_op for p, e in zip(self.plan.entry_p, self.effects)))

    @property
    def lookups_per_op(self) -> float:
        return float(sum(p * e.keys_per_op for p, e in zip(self.plan.entry_p, self.effects)
                         if e.lookup))

    def present_probability(self, prefilled: bool) -> float:
        """How often a key that is never evicted is found: its last op before a lookup
        left it present (a fill) rather than removed (a delete)."""
        fills = sum(p * e.keys_per_op for p, e in zip(self.plan.entry_p, self.effects)
                    if e.fills)
        removes = sum(p for p, e in zip(self.plan.entry_p, self.effects) if e.removes)
        if fills + removes == 0:
            return 1.0 if prefilled else 0.0
        return float(fills / (fills + removes))


@dataclass
class NodeEvents:
    """One node's events in time order (arrays of equal length)."""

    times: np.ndarray
    keys: np.ndarray       # index into the stream's key table
    codes: np.ndarray
    classes: np.ndarray
    units: np.ndarray
    nbytes: np.ndarray
    ttls: np.ndarray
    positions: np.ndarray  # op position of each event (-1: prefill)
    measured_from: int     # first event after the warm-up

    def __len__(self) -> int:
        return len(self.times)

    def subset(self, which: np.ndarray, warmup_ops: int) -> NodeEvents:
        """The events at indices `which` (in order), their warm-up boundary found anew."""
        return NodeEvents(self.times[which], self.keys[which], self.codes[which],
                          self.classes[which], self.units[which], self.nbytes[which],
                          self.ttls[which], self.positions[which],
                          int(np.searchsorted(self.positions[which], warmup_ops)))


@dataclass
class KeyTable:
    """The keys that were simulated, or counted apart as hot."""

    names: list[str]       # the keys as stored (the ring hashes them)
    space: np.ndarray
    node: np.ndarray
    key_bytes: np.ndarray
    nbytes: np.ndarray     # item bytes of the stored value (ITEM_ntotal)
    classes: np.ndarray
    units: np.ndarray
    accesses: np.ndarray   # expected touches per op of the whole stream
    lookups: np.ndarray    # expected lookups per op

    def __len__(self) -> int:
        return len(self.space)


@dataclass
class SampledStream:
    """Everything the memory model replays, with how it was sampled."""

    sample_rate: float
    ops: int
    warmup_ops: int
    op_rate: float
    nodes: list[str]
    slabs: SlabClasses
    merged: NodeEvents                 # every event, in time order
    events: list[NodeEvents]           # ... split by node
    keys: KeyTable
    hot: KeyTable
    hot_present: np.ndarray            # per hot key: share of its lookups that find it
    irm: bool                          # every space draws independently (Che applies)
    total_keys: int
    prefilled: bool = False            # the stream starts by writing the keys
    che_keys: KeyTable | None = None   # the key population for Che's approximation
    che_weights: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def pinned_chunks(self, node: int) -> np.ndarray:
        """Chunks per class the hot keys of `node` hold."""
        on_node = self.hot.node == node
        return np.bincount(self.hot.classes[on_node], weights=self.hot.units[on_node],
                           minlength=len(self.slabs.sizes))


@dataclass(frozen=True)
class StreamSettings:
    """How much of the stream to draw and how to split it."""

    ops: int
    warmup_ops: int
    op_rate: float
    nodes: tuple[str, ...] = ("cache1:11211",)
    seed: int | None = None
    sample_rate: float | None = None
    budget: int = DEFAULT_BUDGET


def sample_stream(scenario: Scenario, settings: StreamSettings,
                  slabs: SlabClasses) -> SampledStream:
    """Draw the scenario's op stream (see the module docstring)."""
    workload = Workload(scenario, settings.seed)
    if workload.trace is not None:
        return _trace_stream(workload, settings, slabs)
    spaces = _space_models(workload, scenario)
    total_keys = sum(m.space.keys for m in spaces)
    hot_events = settings.budget * HOT_SHARE_OF_BUDGET
    rate = settings.sample_rate
    if rate is None:
        rate = _auto_rate(spaces, settings, total_keys, hot_events, scenario.load.prefill)
    hot = _hot_keys(spaces, settings.ops, hot_events) if rate < 1 else \
        [np.zeros(0, dtype=np.int64) for _ in spaces]
    drawn = _draw(spaces, settings, rate, hot, workload.seed)
    prefill = _prefill(spaces, scenario, rate, hot, workload.seed)
    merged, table = _assemble(spaces, [prefill, drawn], settings, slabs)
    hot_table, present = _hot_table(spaces, hot, slabs, scenario.load.prefill)
    irm = all(m.plan.popularity.irm for m in spaces)
    che_keys, che_weights = _che_population(spaces, slabs, workload.seed) if irm \
        else (None, None)
    notes = [] if rate == 1 else [
        f"SHARDS sampling at rate {rate:.3g}: {len(table):,} of {total_keys:,} keys simulated"
        + (f"; the {len(hot_table):,} hottest keys counted apart as resident" if len(hot_table)
           else "")]
    stream = SampledStream(sample_rate=rate, ops=settings.ops, warmup_ops=settings.warmup_ops,
                           op_rate=settings.op_rate, nodes=[], slabs=slabs, merged=merged,
                           events=[], keys=table, hot=hot_table, hot_present=present, irm=irm,
                           total_keys=total_keys, prefilled=bool(len(prefill.pos)),
                           che_keys=che_keys, che_weights=che_weights, notes=notes)
    return on_nodes(stream, settings.nodes)


def measured_keys(stream: SampledStream) -> np.ndarray:
    """The key (table index) of every event after the warm-up."""
    merged = stream.merged
    return merged.keys[merged.positions >= stream.warmup_ops]


def on_nodes(stream: SampledStream, nodes: tuple[str, ...]) -> SampledStream:
    """The same stream on a pool of `nodes`: every key placed by the ketama ring, the
    events split accordingly (cheap: the draws are not repeated)."""
    keys, hot = _placed(stream.keys, nodes), _placed(stream.hot, nodes)
    che = _placed(stream.che_keys, nodes) if stream.che_keys is not None else None
    node = keys.node[stream.merged.keys]
    events = [stream.merged.subset(np.flatnonzero(node == n), stream.warmup_ops)
              for n in range(len(nodes))]
    return replace(stream, nodes=list(nodes), keys=keys, hot=hot, che_keys=che, events=events)


def _placed(table: KeyTable, nodes: tuple[str, ...]) -> KeyTable:
    """`table` with each key's node on the ring of `nodes`."""
    return replace(table, node=placement(table.names, nodes))


def placement(names: list[str], nodes: tuple[str, ...]) -> np.ndarray:
    """The node (index into `nodes`) of each key on the ketama ring of `nodes`."""
    if len(nodes) == 1:
        return np.zeros(len(names), dtype=np.int64)
    ring = KetamaRing(list(nodes))
    position = {name: i for i, name in enumerate(nodes)}
    return np.fromiter((position[ring.node_for(k)] for k in names), dtype=np.int64,
                       count=len(names))


def _space_models(workload: Workload, scenario: Scenario) -> list[SpaceModel]:
    models, offset = [], 0
    for plan in workload.plans:
        effects = [entry_effect(plan.space, name, entry) for name, entry, _ in plan.entries]
        models.append(SpaceModel(plan, plan.share, effects, offset))
        offset += plan.space.keys
    return models


def _auto_rate(spaces: list[SpaceModel], settings: StreamSettings, total_keys: int,
               hot_events: float, prefill: bool) -> float:
    """The sampling rate that leaves about `budget` events (prefill writes included)
    of the keys not counted apart."""
    cold = 0.0
    for m in spaces:
        per_op = m.share * m.accesses_per_op
        _, shares = _hot_candidates(m, settings.ops, hot_events)
        cold += settings.ops * per_op * (1.0 - float(shares.sum())) \
            + (m.space.keys if prefill and m.space.prefill else 0)
    if cold <= settings.budget:
        return 1.0
    return min(1.0, max(settings.budget / cold, MIN_SAMPLED_KEYS / total_keys))


def _hot_candidates(m: SpaceModel, ops: int, hot_events: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Keys of space `m` expected to carry at least `hot_events` events, with shares."""
    keys, shares = m.plan.popularity.hottest(HOT_CANDIDATES)
    hot = shares * m.share * m.accesses_per_op * ops >= hot_events
    return keys[hot], shares[hot]


def _hot_keys(spaces: list[SpaceModel], ops: int, hot_events: float) -> list[np.ndarray]:
    """Sorted hot key indices per space."""
    return [np.sort(_hot_candidates(m, ops, hot_events)[0]) for m in spaces]


def _member(sorted_keys: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Whether each index is in `sorted_keys`."""
    if not len(sorted_keys):
        return np.zeros(len(indices), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, indices), len(sorted_keys) - 1)
    return sorted_keys[at] == indices


def _sampled(indices: np.ndarray, offset: int, rate: float) -> np.ndarray:
    """SHARDS: the keys whose hash falls below the rate."""
    if rate >= 1:
        return np.ones(len(indices), dtype=bool)
    return hashed_uniform(indices + offset, SAMPLING_SALT) < rate


class _Drawn(NamedTuple):
    """Events before they are split by node: op position (-1: prefill), order within
    the op, space, key index, code, TTL in whole seconds, own value bytes (-1: the key's)."""

    pos: np.ndarray
    sub: np.ndarray
    space: np.ndarray
    index: np.ndarray
    code: np.ndarray
    ttl: np.ndarray
    value_bytes: np.ndarray


def _draw(spaces: list[SpaceModel], settings: StreamSettings, rate: float,
          hot: list[np.ndarray], seed: int) -> _Drawn:
    """The sampled events of `settings.ops` ops, a chunk at a time."""
    parts: list[_Drawn] = []
    shares = np.array([m.share for m in spaces])
    for chunk, start in enumerate(range(0, settings.ops, CHUNK_OPS)):
        count = min(CHUNK_OPS, settings.ops - start)
        rng = np.random.default_rng([seed, 0xCA9A, chunk])
        which_space = rng.choice(len(spaces), count, p=shares) if len(spaces) > 1 \
            else np.zeros(count, dtype=np.int64)
        for s, m in enumerate(spaces):
            pos = start + np.flatnonzero(which_space == s)
            stateful = isinstance(m.plan.popularity, (Sequential, Latest))
            step = STATEFUL_OPS if stateful else len(pos) or 1
            for at in range(0, len(pos), step):
                parts.append(_draw_space(m, s, rng, pos[at:at + step], rate, hot[s]))
    return _concat(parts)


def _draw_space(m: SpaceModel, s: int, rng: np.random.Generator, pos: np.ndarray,
                rate: float, hot: np.ndarray) -> _Drawn:
    """Events of one space's ops at positions `pos`: the first key of every op, and
    the rest of each get_multi batch."""
    plan = m.plan
    if len(pos):
        plan.position(int(pos[0]) // BLOCK_OPS)
    which = rng.choice(len(plan.entries), len(pos), p=plan.entry_p)
    index = plan.popularity.sample(rng, len(pos))
    sub = np.zeros(len(pos), dtype=np.int64)
    for e, (name, entry, action) in enumerate(plan.entries):
        if action != "get_multi":
            continue
        ops = np.flatnonzero(which == e)
        batch = plan.batches.get(name)
        counts = np.maximum(batch.sample(rng, len(ops)) if batch is not None
                            else np.full(len(ops), DEFAULT_BATCH), 1) - 1
        pos = np.concatenate((pos, np.repeat(pos[ops], counts)))
        which = np.concatenate((which, np.full(int(counts.sum()), e)))
        index = np.concatenate((index, plan.popularity.sample(rng, int(counts.sum()))))
        starts = np.cumsum(counts) - counts
        sub = np.concatenate((sub, 1 + np.arange(int(counts.sum())) - np.repeat(starts, counts)))
    keep = _sampled(index, m.key_offset, rate) & ~_member(hot, index)
    which, index, pos, sub = which[keep], index[keep], pos[keep], sub[keep]
    codes = np.array([-1 if e.code is None else e.code for e in m.effects])[which]
    touches = codes >= 0
    ttl = np.ceil(m.space.ttl.sample(rng, len(which))).astype(np.int64)
    own = np.full(len(which), -1, dtype=np.int64)
    tombstones = np.isin(which, [e for e, (_, _, a) in enumerate(plan.entries)
                                 if a == "wan_delete"])
    ttl[tombstones], own[tombstones] = mwkeys.HOLDOFF_TTL, TOMBSTONE_BYTES
    return _Drawn(pos[touches], sub[touches], np.full(int(touches.sum()), s), index[touches],
                  codes[touches], ttl[touches], own[touches])


def _prefill(spaces: list[SpaceModel], scenario: Scenario, rate: float,
             hot: list[np.ndarray], seed: int) -> _Drawn:
    """Every sampled key of the spaces that prefill, set once before the first op, in
    index order as the driver writes them."""
    parts = []
    for s, m in enumerate(spaces):
        if not (scenario.load.prefill and m.space.prefill):
            continue
        rng = np.random.default_rng([seed, 0xCA9A, 2, s])
        for start in range(0, m.space.keys, CHUNK_OPS):
            index = np.arange(start, min(start + CHUNK_OPS, m.space.keys))
            index = index[_sampled(index, m.key_offset, rate) & ~_member(hot[s], index)]
            ttl = np.ceil(m.space.ttl.sample(rng, len(index))).astype(np.int64)
            parts.append(_Drawn(np.full(len(index), -1), index, np.full(len(index), s), index,
                                np.full(len(index), cs.SET), ttl, np.full(len(index), -1)))
    return _concat(parts)


def _concat(parts: list[_Drawn]) -> _Drawn:
    if not parts:
        return _Drawn(*(np.zeros(0, dtype=np.int64) for _ in _Drawn._fields))
    return _Drawn(*(np.concatenate([getattr(p, f) for p in parts]).astype(np.int64)
                    for f in _Drawn._fields))


def _key_strings(m: SpaceModel, index: np.ndarray) -> list[str]:
    """The keys as stored (WANObjectCache spaces: the value sister key)."""
    return m.plan.keys_for(index, "v" if m.space.uses_wan else None)


def _key_facts(spaces: list[SpaceModel], space: np.ndarray, index: np.ndarray,
               slabs: SlabClasses) -> KeyTable:
    """Key, item size, class and expected touches of each (space, index)."""
    names: list[str] = [""] * len(index)
    key_bytes = np.zeros(len(index), dtype=np.int64)
    nbytes = np.zeros(len(index), dtype=np.int64)
    accesses = np.zeros(len(index))
    lookups = np.zeros(len(index))
    for s, m in enumerate(spaces):
        here = np.flatnonzero(space == s)
        if not len(here):
            continue
        keys = _key_strings(m, index[here])
        for at, key in zip(here.tolist(), keys):
            names[at] = key
        key_bytes[here] = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
        values = np.full(len(here), COUNTER_BYTES) if m.space.values == "counter" \
            else m.plan.sizes(index[here])
        nbytes[here] = item_size(key_bytes[here], values)
        share = m.plan.popularity.probability(index[here]) * m.share
        accesses[here] = share * m.accesses_per_op
        lookups[here] = share * m.lookups_per_op
    return _table(slabs, names, space, key_bytes, nbytes, accesses, lookups)


def _table(slabs: SlabClasses, names: list[str], space: np.ndarray, key_bytes: np.ndarray,
           nbytes: np.ndarray, accesses: np.ndarray, lookups: np.ndarray) -> KeyTable:
    """A key table on one node (`on_nodes` places the keys on a pool)."""
    return KeyTable(names=names, space=space, node=np.zeros(len(names), dtype=np.int64),
                    key_bytes=key_bytes, nbytes=nbytes, classes=slabs.class_of(nbytes),
                    units=slabs.chunks(nbytes), accesses=accesses, lookups=lookups)


def _repeated(pos: np.ndarray, key_id: np.ndarray) -> np.ndarray:
    """Events (in op order) that repeat a key within one op: a get_multi asks for each
    key once. Only ops with several events are sorted by key, to find them."""
    several = np.zeros(len(pos), dtype=bool)
    several[1:] = pos[1:] == pos[:-1]
    several[:-1] |= several[1:]
    several &= pos >= 0
    candidates = np.flatnonzero(several)
    order = candidates[np.lexsort((candidates, key_id[candidates], pos[candidates]))]
    repeat = np.zeros(len(pos), dtype=bool)
    repeat[order[1:]] = (pos[order[1:]] == pos[order[:-1]]) \
        & (key_id[order[1:]] == key_id[order[:-1]])
    return repeat


def _assemble(spaces: list[SpaceModel], parts: list[_Drawn], settings: StreamSettings,
              slabs: SlabClasses) -> tuple[NodeEvents, KeyTable]:
    """Events in op order without repeats within a batch, keyed into one key table."""
    d = _concat(parts)
    key_id = np.array([m.key_offset for m in spaces], dtype=np.int64)[d.space] + d.index
    kept = np.lexsort((d.sub, d.pos))
    kept = kept[~_repeated(d.pos[kept], key_id[kept])]
    unique, compact = np.unique(key_id[kept], return_inverse=True)
    first = np.zeros(len(unique), dtype=np.int64)
    first[compact] = kept
    table = _key_facts(spaces, d.space[first], d.index[first], slabs)
    own = d.value_bytes[kept]
    nbytes = np.where(own >= 0, item_size(table.key_bytes[compact], own), table.nbytes[compact])
    positions = d.pos[kept]
    merged = NodeEvents(times=np.maximum(positions, 0) / settings.op_rate, keys=compact,
                        codes=d.code[kept], classes=slabs.class_of(nbytes),
                        units=slabs.chunks(nbytes), nbytes=nbytes, ttls=d.ttl[kept],
                        positions=positions,
                        measured_from=int(np.searchsorted(positions, settings.warmup_ops)))
    return merged, table


def _che_population(spaces: list[SpaceModel], slabs: SlabClasses, seed: int
                    ) -> tuple[KeyTable, np.ndarray]:
    """Every key, or per space its hottest keys exactly and CHE_SAMPLE of the others
    drawn uniformly, each standing for its share of them (the weights)."""
    space_parts, index_parts, weight_parts = [], [], []
    rng = np.random.default_rng([seed, 0xC4E])
    for s, m in enumerate(spaces):
        n = m.space.keys
        if n <= HOT_CANDIDATES + CHE_SAMPLE:
            index, weight = np.arange(n), np.ones(n)
        else:
            hot = np.sort(m.plan.popularity.hottest(HOT_CANDIDATES)[0])
            rest = rng.integers(0, n, 2 * CHE_SAMPLE)
            rest = np.unique(rest[~_member(hot, rest)])[:CHE_SAMPLE]
            index = np.concatenate((hot, rest))
            weight = np.concatenate((np.ones(len(hot)),
                                     np.full(len(rest), (n - len(hot)) / len(rest))))
        space_parts.append(np.full(len(index), s))
        index_parts.append(index)
        weight_parts.append(weight)
    table = _key_facts(spaces, np.concatenate(space_parts), np.concatenate(index_parts), slabs)
    return table, np.concatenate(weight_parts)


def _hot_table(spaces: list[SpaceModel], hot: list[np.ndarray], slabs: SlabClasses,
               prefill: bool) -> tuple[KeyTable, np.ndarray]:
    space = np.concatenate([np.full(len(h), s) for s, h in enumerate(hot)]).astype(np.int64)
    index = np.concatenate(hot).astype(np.int64) if hot else np.zeros(0, dtype=np.int64)
    table = _key_facts(spaces, space, index, slabs)
    present = np.array([spaces[s].present_probability(prefill and spaces[s].space.prefill)
                        for s in space.tolist()])
    return table, present


def _trace_stream(workload: Workload, settings: StreamSettings,
                  slabs: SlabClasses) -> SampledStream:
    """A replayed trace: its own keys, sizes, ops and times (`at`), sampled by a hash
    of the key when a rate is given (never automatically: traces are small)."""
    rate = settings.sample_rate or 1.0
    codes = {"get": cs.LOOKUP, "set": cs.SET, "add": cs.ADD, "replace": cs.REPLACE,
             "delete": cs.DELETE, "incr": cs.INCR, "decr": cs.INCR}
    ids: dict[str, int] = {}
    rows = []
    for b in range(math.ceil(settings.ops / BLOCK_OPS)):
        for position, op in enumerate(workload.trace.block(b), start=b * BLOCK_OPS):
            key = op.keys[0]
            if position < settings.ops and (rate >= 1 or zlib.crc32(key.encode()) < rate * 2**32):
                rows.append((position, op.at, ids.setdefault(key, len(ids)), codes[op.action],
                             len(key), op.value_size, math.ceil(op.ttl)))
    pos, times, keys, code, key_bytes, values, ttls = (np.array(c) for c in zip(*rows)) \
        if rows else (np.zeros(0, dtype=np.int64),) * 7
    keys = keys.astype(np.int64)
    nbytes = item_size(key_bytes, values)
    per_key = np.zeros(len(ids), dtype=np.int64)
    per_key[keys] = np.arange(len(keys))   # each key's last op
    table = _table(slabs, list(ids), np.zeros(len(ids), dtype=np.int64), key_bytes[per_key],
                   nbytes[per_key], np.zeros(len(ids)), np.zeros(len(ids)))
    merged = NodeEvents(times=times.astype(np.float64), keys=keys, codes=code.astype(np.int64),
                        classes=slabs.class_of(nbytes), units=slabs.chunks(nbytes),
                        nbytes=nbytes, ttls=ttls.astype(np.int64), positions=pos.astype(np.int64),
                        measured_from=int(np.searchsorted(pos, settings.warmup_ops)))
    empty = _table(slabs, [], *(np.zeros(0, dtype=np.int64) for _ in range(3)), np.zeros(0),
                   np.zeros(0))
    stream = SampledStream(sample_rate=rate, ops=settings.ops, warmup_ops=settings.warmup_ops,
                           op_rate=settings.op_rate, nodes=[], slabs=slabs, merged=merged,
                           events=[], keys=table, hot=empty, hot_present=np.zeros(0), irm=False,
                           total_keys=len(ids),
                           notes=["a trace, replayed with its own times, sizes and ops"])
    return on_nodes(stream, settings.nodes)
