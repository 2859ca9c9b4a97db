"""One memcached node, simulated op by op: slab classes, pages, segmented LRU, TTLs.

Why this model and not a plain LRU: against a real memcached 1.6 a plain LRU
underestimates the hit ratio of a Zipf workload by several points when memory is
tight, because memcached's LRU is segmented (items.c, `lru_pull_tail`): a new item
enters HOT; an item fetched twice is ACTIVE; ACTIVE items at the tail of HOT or
WARM are kept (HOT -> WARM, WARM -> WARM head), others flow to COLD; a hit on an
ACTIVE item in COLD moves it to WARM; evictions take the COLD tail. HOT holds at most
20% and WARM 40% of a class's items, and items idle longer than 0.2 (HOT) or 2.0
(WARM) times the age of the COLD tail move to COLD too (ages in whole seconds, as
memcached's clock). Each slab class has its own LRUs; pages go to classes as they
need them until `-m` is used up, after which slab_automove moves a page per second
from the class with the oldest COLD tail to an evicting class whose tail is younger
than 0.8 times that (averaged over 30 s), as memcached's default automove does.

What it leaves out: the LRU maintainer runs after every store here, not on its own
thread; a page moved by automove evicts the COLD tail of its class, not the items
that happened to live in that page; expired items are reclaimed when they are read
or reach a tail (memcached's LRU crawler also finds them earlier); the TEMP LRU and
extstore are off, as by default.

Sampling: a node fed a spatially sampled stream (rate R, bench.capacity.stream)
gets R times the chunks of its real memory, so every class, page and LRU limit
scales with it; the memory of `pinned` chunks (hot keys counted apart) is taken out
of the page pool first.

One more memcached rule matters for small `-m`: a class's first page is granted even
beyond the limit (slabs.c `do_slabs_newslab`), so `-m 8` with 30 classes in use
holds 30 MiB.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from bench.capacity.slabs import SlabClasses

#: What an event does (bench.capacity.stream sets it from the op and its mix entry).
LOOKUP, LOOKUP_SET, SET, ADD, REPLACE, DELETE, TOUCH, INCR, INCR_ADD = range(9)
#: The codes whose hits and misses make the hit ratio (vocabulary.LOOKUP_OPS).
LOOKUP_CODES = (LOOKUP, LOOKUP_SET)

HOT, WARM, COLD = 0, 1, 2
FETCHED, ACTIVE = 1, 2
HOT_SHARE, WARM_SHARE = 0.20, 0.40          # hot_lru_pct, warm_lru_pct
HOT_AGE_FACTOR, WARM_AGE_FACTOR = 0.2, 2.0  # hot_max_factor, warm_max_factor
AUTOMOVE_RATIO, AUTOMOVE_WINDOW = 0.8, 30   # slab_automove_ratio, slab_automove_window
MIN_PAGES_FOR_SOURCE = 2
#: Fields of an item's state list.
_CLS, _SEG, _EXP, _FLAGS, _TIME, _UNITS, _BYTES = range(7)


@dataclass
class ClassState:
    """One slab class of the node: capacity, its three LRUs, what it evicted."""

    per_page_units: float
    pages: int = 0
    capacity: float = 0.0
    lrus: tuple[OrderedDict, OrderedDict, OrderedDict] = field(
        default_factory=lambda: (OrderedDict(), OrderedDict(), OrderedDict()))
    units: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    used: float = 0.0                                    # the sum of `units`
    item_bytes: float = 0.0
    evictions: int = 0
    eviction_age_sum: float = 0.0
    ages: list[float] = field(default_factory=list)      # COLD tail age per tick, for automove
    evicting: list[bool] = field(default_factory=list)   # evictions seen per tick
    evictions_at_tick: int = 0


@dataclass
class NodeResult:
    """What a simulated node did: per event hit (1), miss (0) or no lookup (-1), and
    the state of its classes at the end."""

    outcomes: np.ndarray
    pages: np.ndarray
    items: np.ndarray          # chunks in use per class, of sampled items
    item_bytes: np.ndarray     # bytes of the sampled items per class
    evictions: np.ndarray
    eviction_age_s: np.ndarray  # mean age of evicted items per class (NaN: none)
    node_eviction_age_s: float  # over all classes (NaN: no evictions)
    expired: int
    pages_moved: int


class MemcachedNode:
    """A node of `memory_bytes` of `-m`, fed events in time order by `run`."""

    def __init__(self, slabs: SlabClasses, memory_bytes: float, rate: float = 1.0,
                 pinned_chunks: np.ndarray | None = None) -> None:
        self.slabs, self.rate = slabs, rate
        self.classes = [ClassState(per_page_units=float(n) * rate) for n in slabs.per_page]
        self.free_pages: float = slabs.pages_for(memory_bytes)
        self.items: dict[int, list] = {}
        self.expired = self.pages_moved = 0
        self.tick = -1
        if pinned_chunks is not None:
            self._pin(np.asarray(pinned_chunks))

    def _pin(self, chunks: np.ndarray) -> None:
        """Take the memory of pinned (hot, counted apart) chunks out of the page pool:
        as much of a page as they fill, since they share pages with the others."""
        self.free_pages -= float(np.sum(chunks / self.slabs.per_page))

    # -- the event loop

    def run(self, times: np.ndarray, keys: np.ndarray, codes: np.ndarray,
            classes: np.ndarray, units: np.ndarray, nbytes: np.ndarray,
            ttls: np.ndarray) -> NodeResult:
        """Replay events (arrays of equal length, in time order); ttl 0 = no expiry.

        The loop is the model's hot path (a million events per size): a hit on an
        ACTIVE item, the common case under skew, costs one dict lookup and two tests.
        """
        out = bytearray(b"\xff") * len(times)
        items_get, store, live = self.items.get, self._store, self._live
        seconds = np.floor(times).astype(np.int64).tolist()
        for i, (now, key, code, cls, n, size, ttl) in enumerate(zip(
                seconds, keys.tolist(), codes.tolist(), classes.tolist(), units.tolist(),
                nbytes.tolist(), ttls.tolist())):
            if now != self.tick:
                self._next_tick(now)
            if code <= LOOKUP_SET:
                item = items_get(key)
                if item is not None and (not item[_EXP] or item[_EXP] > now):
                    out[i] = 1
                    if not item[_FLAGS] & ACTIVE:
                        self._bump(key, item, now)
                    continue
                if item is not None:
                    self._unlink(key, item)
                    self.expired += 1
                out[i] = 0
                if code == LOOKUP_SET:
                    store(key, now, cls, n, size, ttl)
            elif code == SET or (code == ADD and live(key, now) is None) \
                    or (code == REPLACE and live(key, now) is not None) \
                    or (code == INCR_ADD and live(key, now) is None):
                store(key, now, cls, n, size, ttl)
            elif code == DELETE:
                item = items_get(key)
                if item is not None:
                    self._unlink(key, item)
            elif code == TOUCH:
                item = live(key, now)
                if item is not None:
                    item[_EXP] = now + ttl if ttl > 0 else 0
                    self._bump(key, item, now)
        return self._result(np.frombuffer(bytes(out), dtype=np.int8).copy())

    def _live(self, key: int, now: int) -> list | None:
        """The item under `key` unless absent or expired (an expired one is reclaimed)."""
        item = self.items.get(key)
        if item is not None and item[_EXP] and item[_EXP] <= now:
            self._unlink(key, item)
            self.expired += 1
            return None
        return item

    def _bump(self, key: int, item: list, now: int) -> None:
        """do_item_bump: a first fetch marks FETCHED, a second ACTIVE; an ACTIVE item
        in COLD moves to WARM (its flag cleared), elsewhere only its time moves."""
        flags = item[_FLAGS]
        if flags & ACTIVE:
            return
        if not flags & FETCHED:
            item[_FLAGS] = flags | FETCHED
            return
        if item[_SEG] == COLD:
            state = self.classes[item[_CLS]]
            self._move(state, key, item, WARM)
            item[_TIME] = now
        else:
            item[_FLAGS] = flags | ACTIVE
            item[_TIME] = now

    # -- storing, evicting, juggling

    def _store(self, key: int, now: int, cls: int, units: int, size: int, ttl: int) -> None:
        """A new item in HOT of its class (replacing any old one), making room first."""
        if cls < 0:
            return                       # larger than item_size_max: memcached refuses it
        old = self.items.get(key)
        if old is not None:
            self._unlink(key, old)
        state = self.classes[cls]
        while state.used + units > state.capacity:
            if self.free_pages >= 1 or not state.pages:
                self.free_pages -= 1         # a class's first page ignores -m (slabs.c)
                state.pages += 1
                state.capacity += state.per_page_units
            elif not self._evict(state, now):
                return                   # nothing left to evict: out of memory
        item = [cls, HOT, now + ttl if ttl > 0 else 0, 0, now, units, size]
        self.items[key] = item
        state.lrus[HOT][key] = None
        state.units[HOT] += units
        state.used += units
        state.item_bytes += size
        self._juggle(state, now)

    def _evict(self, state: ClassState, now: int) -> bool:
        """Free the COLD tail (expired or evicted); with COLD empty pull the HOT tail
        (ACTIVE to WARM, else to COLD), then the WARM tail, and try again. False when
        the class holds nothing."""
        for segment in (COLD, HOT, WARM):
            lru = state.lrus[segment]
            if not lru:
                continue
            key = next(iter(lru))
            item = self.items[key]
            if segment == HOT and item[_FLAGS] & ACTIVE:
                item[_FLAGS] &= ~ACTIVE
                self._move(state, key, item, WARM)
                return True
            if segment != COLD:
                self._move(state, key, item, COLD)
                return True
            if item[_EXP] and item[_EXP] <= now:
                self.expired += 1
            else:
                state.evictions += 1
                state.eviction_age_sum += now - item[_TIME]
            self._unlink(key, item)
            return True
        return False

    def _juggle(self, state: ClassState, now: int) -> None:
        """The LRU maintainer after a store: HOT and WARM back under their shares,
        ACTIVE tail items rescued (HOT -> WARM, WARM -> its head) on the way."""
        total = state.used
        for segment, share in ((HOT, HOT_SHARE), (WARM, WARM_SHARE)):
            if state.units[segment] > total * share:
                self._pull(state, segment, now, lambda item: state.units[segment] > total * share)

    def _juggle_ages(self, state: ClassState, now: int) -> None:
        """The LRU maintainer's age limits, checked when the (whole-second) clock moves:
        items idle longer than 0.2 (HOT) or 2.0 (WARM) times the COLD tail's age go
        to COLD. Between ticks no age can change, so once a second is as often as
        memcached's maintainer could act on them."""
        cold_age = self._tail_age(state, COLD, now) or 0
        for segment, factor in ((HOT, HOT_AGE_FACTOR), (WARM, WARM_AGE_FACTOR)):
            limit = int(cold_age * factor)
            self._pull(state, segment, now, lambda item: now - item[_TIME] > limit)

    def _pull(self, state: ClassState, segment: int, now: int, too_many: object) -> None:
        """lru_pull_tail on HOT or WARM while `too_many(tail item)` says so: an expired
        tail is reclaimed, an ACTIVE one rescued to WARM, others go to COLD."""
        lru, items = state.lrus[segment], self.items
        for _ in range(len(lru)):
            key = next(iter(lru))
            item = items[key]
            if item[_EXP] and item[_EXP] <= now:
                self._unlink(key, item)
                self.expired += 1
            elif item[_FLAGS] & ACTIVE:
                item[_FLAGS] &= ~ACTIVE
                self._move(state, key, item, WARM)
            elif too_many(item):  # type: ignore[operator]
                self._move(state, key, item, COLD)
            else:
                break

    def _tail_age(self, state: ClassState, segment: int, now: int) -> int | None:
        lru = state.lrus[segment]
        return now - self.items[next(iter(lru))][_TIME] if lru else None

    def _move(self, state: ClassState, key: int, item: list, segment: int) -> None:
        """Relink an item at the head of `segment` of its class."""
        del state.lrus[item[_SEG]][key]
        state.units[item[_SEG]] -= item[_UNITS]
        state.lrus[segment][key] = None
        state.units[segment] += item[_UNITS]
        item[_SEG] = segment

    def _unlink(self, key: int, item: list) -> None:
        state = self.classes[item[_CLS]]
        del state.lrus[item[_SEG]][key]
        state.units[item[_SEG]] -= item[_UNITS]
        state.used -= item[_UNITS]
        state.item_bytes -= item[_BYTES]
        del self.items[key]

    # -- slab automove, once a second

    def _next_tick(self, now: int) -> None:
        """A new second: record each class's COLD tail age, maybe move a page."""
        self.tick = now
        for state in self.classes:
            if state.used:
                self._juggle_ages(state, now)
            age = self._tail_age(state, COLD, now)
            state.ages = (state.ages + [float(age or 0)])[-AUTOMOVE_WINDOW:]
            state.evicting = (state.evicting + [state.evictions > state.evictions_at_tick]
                              )[-AUTOMOVE_WINDOW:]
            state.evictions_at_tick = state.evictions
        if self.free_pages < 1:
            self._automove(now)

    def _automove(self, now: int) -> None:
        """slab_automove=1: a page from the oldest class to the youngest evicting one."""
        ages = [sum(s.ages) / AUTOMOVE_WINDOW for s in self.classes]
        sources = [c for c, s in enumerate(self.classes) if s.pages > MIN_PAGES_FOR_SOURCE]
        targets = [c for c, s in enumerate(self.classes)
                   if len(s.ages) == AUTOMOVE_WINDOW and s.evicting and s.evicting[-1]
                   and sum(s.evicting) > AUTOMOVE_WINDOW / 2]
        if not sources or not targets:
            return
        oldest = max(sources, key=ages.__getitem__)
        youngest = min(targets, key=ages.__getitem__)
        if oldest == youngest or not ages[youngest] < ages[oldest] * AUTOMOVE_RATIO:
            return
        source, target = self.classes[oldest], self.classes[youngest]
        source.capacity -= source.per_page_units
        source.pages -= 1
        while source.used > source.capacity and self._evict(source, now):
            pass
        target.pages += 1
        target.capacity += target.per_page_units
        self.pages_moved += 1
        for state in (source, target):
            state.ages.clear()
            state.evicting.clear()

    def _result(self, outcomes: np.ndarray) -> NodeResult:
        classes = self.classes
        evictions = np.array([s.evictions for s in classes])
        ages = np.array([s.eviction_age_sum for s in classes])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_age = np.where(evictions > 0, ages / np.maximum(evictions, 1), np.nan)
        total = evictions.sum()
        return NodeResult(outcomes=outcomes, pages=np.array([s.pages for s in classes]),
                          items=np.array([s.used for s in classes]),
                          item_bytes=np.array([s.item_bytes for s in classes]),
                          evictions=evictions, eviction_age_s=mean_age,
                          node_eviction_age_s=float(ages.sum() / total) if total else np.nan,
                          expired=self.expired, pages_moved=self.pages_moved)
