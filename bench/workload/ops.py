"""Scenario + seed -> deterministic op streams (drawn, or replayed from a trace).

Why blocks: the global op stream is cut into blocks of BLOCK_OPS ops and block `b` is
drawn from `numpy.random.default_rng([seed, b])` alone. Stream `i` of `n` takes blocks
i, i+n, i+2n, ... So what all users send together is the same op sequence for any
number of users, processes or machines, and a block costs one vectorised draw per key
space instead of Python-level sampling per op.

Per-key properties (stored value size, padded key length) are fixed functions of the
key's index (`distributions.hashed_uniform` through the size distribution's quantile,
re-spread by `RequestWeighting` when the distribution is `per: request`), so a key
keeps its size wherever and by whomever it is requested, and nothing per key is stored; per-op properties (key choice, op, TTL, regeneration time, batch size) come
from the block's generator.

What an Op does on a target is `executor.Executor`'s job; the bytes it writes come from
`values`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Generator, Iterator
from typing import Any, NamedTuple

import numpy as np
from redis.crc import key_slot

from bench.scenario import keys as mwkeys
from bench.scenario.distributions import Latest, RequestWeighting, Sequential, hashed_uniform
from bench.errors import InputError
from bench.scenario.model import KeySpace, MixEntry, Scenario
from bench.scenario.trace import TRACE_OPS, read_trace
from bench.vocabulary import entry_op
from bench.workload.values import Payload, segment_layout

#: Ops per block of the global stream (the unit of determinism and of vectorised draws).
BLOCK_OPS = 1024
#: While a block is consumed, the next one advances a step every this many ops.
BUILD_EVERY = 16
#: Key spaces up to this many keys keep a table of their value sizes (int32: 16 MiB).
SIZE_TABLE_MAX_KEYS = 1 << 22
#: ... and remember the key strings they built (the hot ones, in practice).
KEY_CACHE_MAX_KEYS = 1 << 20
#: Keys per get_multi when the mix entry gives no batch distribution.
DEFAULT_BATCH = 10
#: Ops that write a new value (they get a value size and a TTL).
WRITE_ACTIONS = frozenset({"set", "add", "replace", "hset"})


class Op(NamedTuple):
    """One operation of the stream.

    `kind` is the mix entry's name (a trace's operation), `action` what it runs (get,
    wan_get, redlock...), `space` the key space index; `keys` the keys it addresses, as
    sent (wan_get/wan_delete: the `|#|v` value key, then `|#|t` check keys; redlock: one
    key per instance; get_multi: the batch); `value_size` bytes of the first key's value
    (stored size: after compression); `ttl` seconds; `work` seconds the op implies
    (regeneration after a miss, lock hold time); `field` the hash field of hget/hset;
    `at` the intended start as seconds after the run's start (trace replay), else None:
    the driver's own schedule decides; `sizes` (get_multi) the value size of each key.

    A NamedTuple because a worker creates one per op: a tuple is the cheapest object
    Python builds, and `_make` skips the argument parsing of a constructor.
    """

    kind: str
    action: str
    space: int
    keys: tuple[str, ...]
    value_size: int
    ttl: float
    work: float = 0.0
    field: str | None = None
    at: float | None = None
    sizes: tuple[int, ...] | None = None


# ------------------------------------------------------------------------------ op streams


def stored_size(size: np.ndarray, space: KeySpace) -> np.ndarray:
    """Bytes actually stored: MediaWiki compresses values above the threshold."""
    if space.compression is None:
        return size
    squeezed = np.ceil(size * space.compression.ratio).astype(np.int64)
    return np.where(size >= space.compression.threshold, squeezed, size)


def pad_keys(keys: list[str], lengths: np.ndarray) -> list[str]:
    """Keys padded to the drawn lengths (never shortened: that could merge two keys)."""
    return [k + "_" * (n - len(k)) if n > len(k) else k for k, n in zip(keys, lengths.tolist())]


def _salt(seed: int, space: str, what: str) -> int:
    """A 64-bit salt per (seed, key space, attribute) for per-key attributes."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{space}:{what}".encode()).digest()[:8],
                          "little")


class SpacePlan:
    """One key space, ready to draw ops: samplers, per-key attributes, mix table.

    A key's stored value size and padded length are fixed functions of its index
    (`hashed_uniform` fed to the size distribution's quantile), so every process agrees
    on them. Value sizes of key spaces up to SIZE_TABLE_MAX_KEYS keys are computed once
    into a table: the quantile function costs more per op than everything else in a
    draw, and an int32 per key is cheap.
    """

    def __init__(self, space: KeySpace, index: int, scenario: Scenario, seed: int,
                 share: float) -> None:
        self.space, self.index, self.share = space, index, share
        self.prefix = scenario.key_prefix
        built = space.build()
        self.popularity, self.template = built.popularity, built.template
        self.check_templates = built.check_templates
        self.value_size, self.key_size = built.value_size, built.key_size
        self.salts = {w: _salt(seed, space.name, w) for w in ("value", "key")}
        self._weighting = {what: RequestWeighting(self.popularity, self.salts[what])
                           for what, spec in (("value", space.value_size),
                                              ("key", space.key_size))
                           if spec is not None and spec.per == "request"}
        self.entries = [(name, entry, entry_op(name, entry)) for name, entry in space.mix.items()]
        weights = np.array([e.weight for _, e, _ in self.entries])
        self.entry_p = weights / weights.sum()
        self.write_share = float(sum(p for p, (_, _, a) in zip(self.entry_p, self.entries)
                                     if a in WRITE_ACTIONS))
        self.lock_tags = _instance_tags(max((e.instances for _, e, a in self.entries
                                             if a == "redlock"), default=0))
        self._key_cache: dict[tuple[str | None, int], np.ndarray] = {}  # index -> key
        self._size_table = (self._sizes_of(np.arange(space.keys)).astype(np.int32)
                            if (space.keys or 0) <= SIZE_TABLE_MAX_KEYS else None)
        self.batches = {name: e.batch.build() for name, e, a in self.entries
                        if a == "get_multi" and e.batch is not None}

    def sizes(self, indices: np.ndarray) -> np.ndarray:
        """Stored value size of each key (after MediaWiki compression), fixed per key."""
        if self._size_table is not None:
            return self._size_table[indices]
        return self._sizes_of(indices)

    def _sizes_of(self, indices: np.ndarray) -> np.ndarray:
        raw = self.value_size.quantile(self._key_uniform(indices, "value"))
        return stored_size(raw, self.space)

    def _key_uniform(self, indices: np.ndarray, what: str) -> np.ndarray:
        """The uniform behind a key's `what` ("value" size or "key" length): fixed per
        key, request-weighted when that distribution is `per: request`."""
        u = hashed_uniform(indices, self.salts[what])
        weighting = self._weighting.get(what)
        return u if weighting is None else weighting(indices, u)

    def keys_for(self, indices: np.ndarray, sister: str | None = None,
                 template: Any = None) -> list[str]:
        """Full keys for key indices: prefix + template, padded so that the whole key has
        the key space's `key_size`; with `sister`, the WANObjectCache sister key of that
        type (prefix first: all our keys start with it).

        A key is a pure function of its index, so key spaces up to KEY_CACHE_MAX_KEYS
        keys remember the keys they built: with a skewed popularity most draws are of
        hot keys, and rendering a template costs more than the rest of the draw.
        """
        if (self.space.keys or 0) > KEY_CACHE_MAX_KEYS:
            return self._build_keys(indices, sister, template)
        cache = self._key_cache.get((sister, id(template)))
        if cache is None:
            cache = self._key_cache[(sister, id(template))] = np.full(self.space.keys, None)
        found = cache[indices]
        missing = np.flatnonzero(np.equal(found, None))
        if len(missing):
            wanted = np.unique(indices[missing])
            cache[wanted] = self._build_keys(wanted, sister, template)
            found = cache[indices]
        return found.tolist()

    def _build_keys(self, indices: np.ndarray, sister: str | None, template: Any) -> list[str]:
        keys = (template or self.template).keys(indices)
        if self.key_size is not None and template is None:
            lengths = self.key_size.quantile(self._key_uniform(indices, "key"))
            keys = pad_keys(keys, lengths - len(self.prefix))
        if sister is not None:
            scheme = self.space.wan.scheme
            keys = [mwkeys.wan_sister_key(k, sister, scheme) for k in keys]
        return [self.prefix + k for k in keys]

    def position(self, block: int) -> None:
        """Move a stateful sampler to where block `block` starts, from the expected number
        of this space's ops (Sequential) or writes (Latest: each write inserts a key)
        before it, so the position never depends on which stream drew the earlier blocks."""
        before = block * BLOCK_OPS * self.share
        pop = self.popularity
        if isinstance(pop, Sequential):
            pop.seek(int(before))
        elif isinstance(pop, Latest):
            pop.advance(self.space.keys - 1 + int(before * self.write_share) - pop.newest)

    def draw(self, rng: np.random.Generator, block: int, count: int) -> BlockBuild:
        """`count` ops of this key space, in stream order; one step per mix entry."""
        self.position(block)
        which = rng.choice(len(self.entries), count, p=self.entry_p)
        indices = self.popularity.sample(rng, count)
        ttls = self.space.ttl.sample(rng, count)
        ops: list[Op | None] = [None] * count
        for e, (name, entry, action) in enumerate(self.entries):
            yield
            pos = np.flatnonzero(which == e)
            if len(pos):
                self._fill(rng, ops, pos, name, entry, action, indices[pos], ttls[pos])
        return ops  # type: ignore[return-value]

    def _fill(self, rng: np.random.Generator, ops: list[Op | None], pos: np.ndarray, name: str,
              entry: MixEntry, action: str, indices: np.ndarray, ttls: np.ndarray) -> None:
        """Ops of one mix entry at positions `pos`."""
        work_dist = entry.regen if action != "redlock" else entry.hold
        work = work_dist.sample(rng, len(pos)).tolist() if work_dist else [0.0] * len(pos)
        sizes = self.sizes(indices).tolist()
        fields = (rng.integers(0, self.space.hash_fields, len(pos)).tolist()
                  if action in ("hget", "hset") else None)
        ttl_list = ttls.astype(np.float64).tolist()
        make, space = Op._make, self.index
        if action == "get_multi":
            for p, (keys, batch_sizes), size, ttl, w in zip(
                    pos.tolist(), self._batches(rng, name, indices), sizes, ttl_list, work):
                ops[p] = make((name, action, space, keys, size, ttl, w, None, None,
                               batch_sizes))
            return
        labels = [f"f{f}" for f in fields] if fields else itertools.repeat(None)
        for p, key_tuple, size, ttl, w, label in zip(
                pos.tolist(), self._key_tuples(entry, action, indices), sizes, ttl_list,
                work, labels):
            ops[p] = make((name, action, space, key_tuple, size, ttl, w, label, None, None))

    def _key_tuples(self, entry: MixEntry, action: str,
                    indices: np.ndarray) -> list[tuple[str, ...]]:
        """The keys of each op: one key, WANCache value key and check keys, one key per
        lock instance (redlock)."""
        if action in ("wan_get", "wan_delete"):
            checks = [self.keys_for(indices, "t", t) for t in self.check_templates] \
                if action == "wan_get" else []
            return list(zip(self.keys_for(indices, "v"), *checks))
        base = self.keys_for(indices)
        if action == "redlock":
            tags = self.lock_tags[:entry.instances]
            cut = len(self.prefix)
            return [tuple(f"{k[:cut]}{{{t}}}:{k[cut:]}" for t in tags) for k in base]
        return [(k,) for k in base]

    def _batches(self, rng: np.random.Generator, name: str, first: np.ndarray
                 ) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
        """get_multi batches, as (keys, their value sizes): the drawn key plus batch-1
        more from the same popularity, duplicates dropped."""
        batch = self.batches.get(name)
        counts = np.maximum(batch.sample(rng, len(first)) if batch
                            else np.full(len(first), DEFAULT_BATCH), 1)
        extra = self.popularity.sample(rng, int(counts.sum() - len(first)))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        # each batch's indices, laid out in one array: first key, then its extras
        layout = np.insert(extra, starts - np.arange(len(first)), first)
        keys, sizes = self.keys_for(layout), self.sizes(layout).tolist()
        out = []
        for start, count in zip(starts.tolist(), counts.tolist()):
            unique = dict(zip(keys[start:start + count], sizes[start:start + count]))
            out.append((tuple(unique), tuple(unique.values())))
        return out


def _instance_tags(count: int) -> list[str]:
    """Hash tags whose Redis Cluster slots fall in `count` equal slot ranges.

    Redlock wants independent instances; on a cluster whose masters own equal slot
    ranges (what `redis-cli --cluster create` does), key j of a lock lands on master j.
    """
    tags = []
    for j in range(count):
        low, high = j * 16384 // count, (j + 1) * 16384 // count
        tags.append(next(f"lock{t}" for t in itertools.count()
                         if low <= key_slot(f"lock{t}".encode()) < high))
    return tags


BlockBuild = Generator[None, None, list[Op]]


def _step(build: BlockBuild) -> list[Op] | None:
    """One step of a block build: the block once it is done, else None."""
    try:
        next(build)
    except StopIteration as done:
        return done.value
    return None


def _finish(build: BlockBuild) -> list[Op]:
    """A block build run to its end."""
    while (ops := _step(build)) is None:
        pass
    return ops


class Workload:
    """Deterministic op streams for a scenario and seed (see the module docstring)."""

    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        weights = np.array([ks.weight for ks in scenario.keyspaces], dtype=np.float64)
        if weights.sum() <= 0:
            raise InputError("expected at least one key space with a weight > 0",
                             file=scenario.source, field="keyspaces")
        self.space_p = weights / weights.sum()
        trace = scenario.keyspaces[0].trace
        self.trace = Trace.load(trace.file, scenario, trace.speed, trace.loop) if trace else None
        self.plans = [] if trace else [
            SpacePlan(ks, i, scenario, self.seed, float(self.space_p[i]))
            for i, ks in enumerate(scenario.keyspaces)]

    def block(self, b: int) -> list[Op]:
        """Ops of block `b` of the global stream (a pure function of seed and b)."""
        return _finish(self.build(b))

    def build(self, b: int) -> BlockBuild:
        """Block `b`, built in steps: each `next()` does a slice of the work, the
        generator's return value is the block."""
        if self.trace is not None:
            return self.trace.block(b)
        rng = np.random.default_rng([self.seed, b])
        if len(self.plans) == 1:
            return (yield from self.plans[0].draw(rng, b, BLOCK_OPS))
        spaces = rng.choice(len(self.plans), BLOCK_OPS, p=self.space_p)
        ops: list[Op] = [None] * BLOCK_OPS  # type: ignore[list-item]
        for s, plan in enumerate(self.plans):
            pos = np.flatnonzero(spaces == s)
            drawn = yield from plan.draw(rng, b, len(pos))
            for p, op in zip(pos.tolist(), drawn):
                ops[p] = op
        return ops

    def stream(self, stream_index: int = 0, stream_count: int = 1) -> Iterator[Op]:
        """Stream `stream_index` of `stream_count`: blocks i, i+n, i+2n, ... (endless,
        except a trace replayed without `loop`).

        While the ops of one block are handed out, the next block is built a step every
        BUILD_EVERY ops: a caller on an event loop (a Locust user) then never stalls its
        other users for a whole block's worth of numpy and string work at once.
        """
        if not 0 <= stream_index < stream_count:
            raise ValueError(f"stream index {stream_index} outside 0..{stream_count - 1}")
        blocks = itertools.count(stream_index, stream_count)
        ops = self.block(next(blocks))
        while ops:
            build, upcoming = self.build(next(blocks)), None
            for k, op in enumerate(ops):
                yield op
                if upcoming is None and k % BUILD_EVERY == 0:
                    upcoming = _step(build)
            while upcoming is None:
                upcoming = _step(build)
            ops = upcoming

    def prefill_batches(self, shard: int = 0, shards: int = 1, *,
                        batch_size: int = 500) -> Iterator[tuple[dict[str, bytes], float]]:
        """Every key of every key space that wants prefill, once, as (items, ttl) batches.

        Shard `s` of `n` writes batches s, s+n, ... of each space, so n processes prefill
        disjoint parts; a batch's TTL is drawn from its own generator, so it does not
        depend on the number of shards. Values come from the same payload buffers as the run;
        WANCache spaces write the value sister key, segmented values their segments.
        """
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} outside 0..{shards - 1}")
        for plan in self.plans:
            if not plan.space.prefill:
                continue
            payload = Payload(plan.space.compressibility)
            for start in range(shard * batch_size, plan.space.keys, shards * batch_size):
                indices = np.arange(start, min(start + batch_size, plan.space.keys))
                rng = np.random.default_rng([self.seed, plan.index, 2, start])
                ttl = float(plan.space.ttl.sample(rng, 1)[0])
                yield _prefill_items(plan, indices, payload), ttl


def _prefill_items(plan: SpacePlan, indices: np.ndarray, payload: Payload) -> dict[str, bytes]:
    """Key -> value for one prefill batch, in the layout the executor reads back."""
    items: dict[str, bytes] = {}
    keys = plan.keys_for(indices, "v" if plan.space.uses_wan else None)
    for key, size in zip(keys, plan.sizes(indices).tolist()):
        value = b"0" if plan.space.values == "counter" else payload.fresh(size)
        items.update(segment_layout(plan.prefix, key, value) if plan.space.segmentation
                     else {key: value})
    return items


# ------------------------------------------------------------------------------ trace replay

class Trace:
    """A Twitter cache trace (Yang et al., OSDI 2020) in memory, cut into blocks.

    Timestamps are whole seconds; the ops of one second are spread evenly over it, so
    `at` = (timestamp - first + rank/count) / speed. A looped replay adds the trace's
    span for every pass.
    """

    def __init__(self, ops: list[Op], span: float, loop: bool) -> None:
        self.ops, self.span, self.loop = ops, span, loop

    @classmethod
    def load(cls, file: str, scenario: Scenario, speed: float, loop: bool) -> Trace:
        """Read and check the CSV (InputError naming the trace file and line)."""
        rows = read_trace(file)
        stamps = np.array([r[0] for r in rows], dtype=np.float64)
        first = stamps.min()
        groups: dict[float, int] = {}
        for s in stamps.tolist():
            groups[s] = groups.get(s, 0) + 1
        seen: dict[float, int] = {}
        ops = []
        for (stamp, key, key_size, value_size, operation, ttl) in rows:
            rank = seen.get(stamp, 0)
            seen[stamp] = rank + 1
            full = pad_keys([scenario.key_prefix + key], np.array([key_size]))[0]
            at = (stamp - first + rank / groups[stamp]) / speed
            ops.append(Op(operation, TRACE_OPS[operation], 0, (full,), value_size, ttl, at=at))
        return cls(ops, (stamps.max() - first + 1) / speed, loop)

    def block(self, b: int) -> list[Op]:
        """Ops [b*BLOCK_OPS, (b+1)*BLOCK_OPS) of the (looped) trace, `at` shifted per pass."""
        start, end = b * BLOCK_OPS, (b + 1) * BLOCK_OPS
        n = len(self.ops)
        if not self.loop:
            return self.ops[start:end]
        out = []
        for i in range(start, end):
            op = self.ops[i % n]
            copy = Op(op.kind, op.action, 0, op.keys, op.value_size, op.ttl,
                      at=op.at + (i // n) * self.span)
            out.append(copy)
        return out
