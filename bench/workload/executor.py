"""The protocol side of an op: the Executor runs one Op on a Target and times each call.

The Executor turns an Op into protocol calls, each timed with `clock` and returned as a
Sample; what an op implies (cache-aside set after a miss, the WANObjectCache mutex,
segments of a large value) is part of the op. An exception becomes a Sample with
`error=error_kind(exc)` and ends the op: a real client would not go on either.

`Sample` is defined here, where samples are made, and nowhere else: the recorder stores
them as they come (`Recorder.record_sample`), the pacing loops hand them over unopened.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Generator, Iterator
from functools import partial
from types import GeneratorType
from typing import Any, NamedTuple

from bench.scenario import keys as mwkeys
from bench.scenario.model import MixEntry, Scenario
from bench.targets import Target, error_kind
from bench.workload.ops import Op
from bench.workload.values import (PURGE_PREFIX, SEGMENTS_PREFIX, Payload, listed_segments,
                                   segment_layout)

#: WANObjectCache::CHECK_KEY_TTL (a year): how long a check key's timestamp lives.
CHECK_KEY_TTL = 365 * 86400.0
#: Settings of ops without a mix entry (trace replay): no on_miss, delta 1.
DEFAULT_ENTRY = MixEntry()


class Sample(NamedTuple):
    """One timed protocol call (docs/internals.md): what the recorder records."""

    name: str
    start: float
    end: float
    hits: int
    misses: int
    keys: int
    error: str | None
    nbytes: int


#: A Sample from a tuple of its 8 fields: what `Sample._make` does without the length
#: check, at half the cost of `Sample(...)` (whose generated __new__ is a Python call).
_sample = partial(tuple.__new__, Sample)


def _sister(value_key: str, sister_type: str) -> str:
    """Another sister of a WANCache value key: both schemes end in the type letter."""
    return value_key[:-1] + sister_type


class _Abort(Exception):
    """A call failed: its error Sample is recorded and the op stops."""


def _count_get(value: bytes | None) -> tuple[int, int, int]:
    return (1, 0, len(value)) if value is not None else (0, 1, 0)


def _count_found(found: bool | int | None) -> tuple[int, int, int]:
    """delete/touch/incr/decr: a hit when the key existed (memcached's *_hits counters)."""
    return (0, 1, 0) if found is None or found is False else (1, 0, 0)


def _count_none(_: Any) -> tuple[int, int, int]:
    return 0, 0, 0


class Steps:
    """An op in progress. `advance()` runs it up to its next wait and returns the
    seconds to wait (regeneration after a miss, a lock's hold time), or None when the
    op is over; `samples` collects one Sample per protocol call as they happen.

    Why steps: in an open-loop run the user must not sit idle through a regeneration,
    or every op scheduled behind it would start late and carry that wait in its
    latency. The driver parks the op until its wait is over and sends other ops
    meanwhile; `Executor.execute` simply sleeps.
    """

    __slots__ = ("samples", "_run", "_gen")

    def __init__(self, run: Callable[[list[Sample]], Any]) -> None:
        self.samples: list[Sample] = []
        self._run: Callable[[list[Sample]], Any] | None = run
        self._gen: Generator[float, None, None] | None = None

    def advance(self) -> float | None:
        try:
            if self._run is not None:
                result, self._run = self._run(self.samples), None
                if not isinstance(result, GeneratorType):
                    return None
                self._gen = result
            return next(self._gen) if self._gen is not None else None
        except (StopIteration, _Abort):
            self._gen = None
            return None


class Executor:
    """Runs ops against one Target (one per Locust user), timing every protocol call."""

    def __init__(self, target: Target, scenario: Scenario,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.target, self.scenario, self.clock = target, scenario, clock
        self.prefix = scenario.key_prefix
        self._sleep = sleep
        self.payloads = [Payload(ks.compressibility) for ks in scenario.keyspaces]
        self._token = itertools.count(1)
        # Each action appends Samples; one that waits returns a generator of its waits
        # (see Steps), the others None.
        self._actions: dict[str, Callable[[Op, list[Sample]], Any]] = {
            "get": self._get, "get_multi": self._get_multi, "set": self._set,
            "add": self._add, "replace": self._replace, "delete": self._delete,
            "incr": self._incr, "decr": self._incr, "touch": self._touch,
            "hget": self._hget, "hset": self._hset, "wan_get": self._wan_get,
            "wan_delete": self._wan_delete, "redlock": self._redlock,
            "ratelimit": self._ratelimit}
        self._entries = {(i, name): entry for i, ks in enumerate(scenario.keyspaces)
                         for name, entry in ks.mix.items()}

    def begin(self, op: Op) -> Steps:
        """`op` ready to run step by step (see Steps); nothing is sent yet."""
        return Steps(partial(self._actions[op.action], op))

    def execute(self, op: Op) -> list[Sample]:
        """Run `op` and what it implies to the end, sleeping through its waits; one
        Sample per protocol call, errors included.

        The closed loop's hot path, so no Steps: the action runs at once, and only an op
        that waits (its action returned a generator) is iterated.
        """
        samples: list[Sample] = []
        try:
            waits = self._actions[op.action](op, samples)
            if waits is not None:
                sleep = self._sleep or time.sleep
                for seconds in waits:
                    sleep(seconds)
        except _Abort:
            pass
        return samples

    # -- plumbing

    def _call(self, samples: list[Sample], name: str, keys: int,
              count: Callable[[Any], tuple[int, int, int]], fn: Callable[..., Any],
              *args: Any) -> Any:
        """Time one protocol call and record it; on an exception record the error, abort."""
        start = self.clock()
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error sample
            samples.append(Sample(name, start, self.clock(), 0, 0, keys, error_kind(exc), 0))
            raise _Abort from exc
        end = self.clock()
        hits, misses, nbytes = count(result)
        samples.append(_sample((name, start, end, hits, misses, keys, None, nbytes)))
        return result

    @staticmethod
    def _wait(seconds: float) -> Iterator[float]:
        """Regeneration or lock hold time: handed to whoever runs the op (see Steps)."""
        if seconds > 0:
            yield seconds

    def _value(self, op: Op, size: int | None = None) -> bytes:
        """A fresh value of `size` (default: the op's) bytes, or a small number for
        counter spaces."""
        size = op.value_size if size is None else size
        if self.scenario.keyspaces[op.space].values == "counter":
            return b"%d" % size
        return self.payloads[op.space].fresh(size)

    def _segmented(self, op: Op) -> bool:
        return self.scenario.keyspaces[op.space].segmentation

    def _store(self, samples: list[Sample], op: Op, key: str, name: str = "set",
               size: int | None = None) -> Any:
        """Write a fresh value under `key` with `name` (set/add/replace); segments first."""
        value = self._value(op, size)
        items = segment_layout(self.prefix, key, value) if self._segmented(op) \
            else {key: value}
        main = items.pop(key)
        for seg_key, seg in items.items():
            self._call(samples, "set", 1, lambda _, n=len(seg): (0, 0, n),
                       self.target.set, seg_key, seg, op.ttl)
        return self._call(samples, name, 1, lambda _: (0, 0, len(main)),
                          getattr(self.target, name), key, main, op.ttl)

    def _assemble(self, samples: list[Sample], value: bytes | None) -> bytes | None:
        """A segmented value read back: get_multi of its segments; None if any is gone."""
        if value is None or not value.startswith(SEGMENTS_PREFIX):
            return value
        keys = listed_segments(value)
        found = self._call(samples, "get_multi", len(keys), self._count_multi(len(keys)),
                           self.target.get_multi, keys)
        return b"".join(found[k] for k in keys) if len(found) == len(keys) else None

    @staticmethod
    def _count_multi(asked: int) -> Callable[[dict[str, bytes]], tuple[int, int, int]]:
        return lambda found: (len(found), asked - len(found), sum(map(len, found.values())))

    # -- simple ops

    def _get(self, op: Op, samples: list[Sample]) -> Iterator[float] | None:
        key = op.keys[0]
        value = self._assemble(samples, self._call(samples, "get", 1, _count_get,
                                                   self.target.get, key))
        if value is None and self._entry(op).on_miss == "set":
            return self._regenerate(op, samples, [(key, None)])
        return None

    def _get_multi(self, op: Op, samples: list[Sample]) -> Iterator[float] | None:
        keys = list(op.keys)
        found = self._call(samples, "get_multi", len(keys), self._count_multi(len(keys)),
                           self.target.get_multi, keys)
        missing: list[tuple[str, int | None]] = [
            (k, size) for k, size in zip(keys, op.sizes)
            if self._assemble(samples, found.get(k)) is None]
        if missing and self._entry(op).on_miss == "set":
            return self._regenerate(op, samples, missing)
        return None

    def _regenerate(self, op: Op, samples: list[Sample],
                    missing: list[tuple[str, int | None]]) -> Iterator[float]:
        """Cache-aside after a miss: the application's work, then a set of each missing
        (key, size); a generator only here, so that a hit never builds one."""
        yield from self._wait(op.work)
        for key, size in missing:
            self._store(samples, op, key, size=size)

    def _set(self, op: Op, samples: list[Sample]) -> None:
        self._store(samples, op, op.keys[0])

    def _add(self, op: Op, samples: list[Sample]) -> None:
        self._store(samples, op, op.keys[0], "add")

    def _replace(self, op: Op, samples: list[Sample]) -> None:
        self._store(samples, op, op.keys[0], "replace")

    def _delete(self, op: Op, samples: list[Sample]) -> None:
        self._call(samples, "delete", 1, _count_found, self.target.delete, op.keys[0])

    def _touch(self, op: Op, samples: list[Sample]) -> None:
        self._call(samples, "touch", 1, _count_found, self.target.touch, op.keys[0], op.ttl)

    def _incr(self, op: Op, samples: list[Sample]) -> None:
        """incr/decr; with on_miss: add, MediaWiki's incrWithInit (add, then incr if raced)."""
        delta = self._entry(op).delta
        fn = getattr(self.target, op.action)
        if self._call(samples, op.action, 1, _count_found, fn, op.keys[0], delta) is None \
                and self._entry(op).on_miss == "add":
            if not self._call(samples, "add", 1, _count_none, self.target.add, op.keys[0],
                              b"%d" % delta, op.ttl):
                self._call(samples, op.action, 1, _count_found, fn, op.keys[0], delta)

    def _entry(self, op: Op) -> MixEntry:
        """The mix entry behind `op`; trace ops have none and get the defaults."""
        return self._entries.get((op.space, op.kind), DEFAULT_ENTRY)

    def _hget(self, op: Op, samples: list[Sample]) -> None:
        self._call(samples, "hget", 1, _count_get, self.target.hget, op.keys[0], op.field)

    def _hset(self, op: Op, samples: list[Sample]) -> None:
        value = self._value(op)
        self._call(samples, "hset", 1, lambda _: (0, 0, len(value)), self.target.hset,
                   op.keys[0], {op.field: value}, op.ttl)

    # -- MediaWiki patterns

    def _wan_get(self, op: Op, samples: list[Sample]) -> Iterator[float]:
        """WANObjectCache::getWithSetCallback, the parts that reach the cache.

        One get_multi of the value key and its check keys; missing check keys are
        initialised with add (processCheckKeys). On a miss or a tombstone: the
        regeneration mutex (add of |#|m, LOCK_TTL), the callback's time, then set of the
        value, or, while a tombstone holds the key off, an interim value (|#|i, 1 s);
        finally the mutex is deleted or left to expire.
        """
        space = self.scenario.keyspaces[op.space]
        value_key, *check_keys = op.keys
        asked = list(op.keys)
        found = self._call(samples, "get_multi", len(asked), self._count_multi(len(asked)),
                           self.target.get_multi, asked)
        for key in check_keys:
            if key not in found:
                self._call(samples, "add", 1, _count_none, self.target.add, key,
                           self._purge_value(0), CHECK_KEY_TTL)
        value = self._assemble(samples, found.get(value_key))
        tombstoned = value is not None and value.startswith(PURGE_PREFIX)
        if value is not None and not tombstoned:
            return
        mutex = _sister(value_key, "m")
        locked = space.wan.mutex and self._call(
            samples, "add", 1, _count_none, self.target.add, mutex, b"1", mwkeys.LOCK_TTL)
        if space.wan.mutex and not locked and tombstoned:
            if self._call(samples, "get", 1, _count_get, self.target.get,
                          _sister(value_key, "i")) is not None:
                return
        yield from self._wait(op.work)
        if tombstoned:
            self._call(samples, "set", 1, lambda _: (0, 0, op.value_size), self.target.set,
                       _sister(value_key, "i"), self._value(op), float(mwkeys.INTERIM_KEY_TTL))
        else:
            self._store(samples, op, value_key)
        if locked and space.wan.mutex_release == "delete":
            self._call(samples, "delete", 1, _count_found, self.target.delete, mutex)

    def _purge_value(self, holdoff: int) -> bytes:
        """WANObjectCache's purge value: `PURGED:<timestamp>:<holdoff>`."""
        return b"%s%.4f:%d" % (PURGE_PREFIX, time.time(), holdoff)

    def _wan_delete(self, op: Op, samples: list[Sample]) -> None:
        """WANObjectCache::delete: a tombstone in the value key for HOLDOFF_TTL seconds."""
        value = self._purge_value(mwkeys.HOLDOFF_TTL)
        self._call(samples, "set", 1, lambda _: (0, 0, len(value)), self.target.set,
                   op.keys[0], value, float(mwkeys.HOLDOFF_TTL))

    def _redlock(self, op: Op, samples: list[Sample]) -> Iterator[float]:
        """Redlock: SET NX PX on every instance; with a majority, hold, then release all
        taken; without, release what was taken at once. A failure ends the op (the lock
        keys then expire after the TTL, as they would for a crashed client)."""
        token = b"%d" % next(self._token)
        taken = [key for key in op.keys
                 if self._call(samples, "add", 1, _count_none, self.target.add, key, token,
                               op.ttl)]
        if len(taken) > len(op.keys) // 2:
            yield from self._wait(op.work)
        for key in taken:
            self._call(samples, "delete", 1, _count_found, self.target.delete, key)

    def _ratelimit(self, op: Op, samples: list[Sample]) -> None:
        """A fixed-window rate limiter: INCRBY, and EXPIRE when the window's key is new;
        on memcached (incr of a missing key fails) add the key with the window as TTL."""
        delta = self._entry(op).delta
        key = op.keys[0]
        count = self._call(samples, "incr", 1, _count_found, self.target.incr, key, delta)
        if count is None:
            self._call(samples, "add", 1, _count_none, self.target.add, key, b"%d" % delta,
                       op.ttl)
        elif count == delta:
            self._call(samples, "touch", 1, _count_found, self.target.touch, key, op.ttl)
