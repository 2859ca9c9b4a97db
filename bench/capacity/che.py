"""Che's approximation of an LRU cache's hit ratio, as an analytic cross-check.

Under the independent reference model (each request picks key i with a fixed
probability a_i), an LRU cache of capacity C behaves as if every key stayed for a
characteristic time T after its last request, T being the root of

    sum_i c_i (1 - exp(-a_i T)) = C        (c_i: the memory key i takes)

and key i then hits with probability 1 - exp(-a_i T) (Che, Tung & Wang, IEEE JSAC
20(7), 2002; Fricker, Robert & Roberts, ITC 2012, for why it is so accurate). It
knows nothing of deletes, TTLs, slab classes or memcached's segmented LRU, so where
it and the simulation differ, those are what the difference is made of. Keys come
with weights (a sampled key stands for 1/R keys), so the sums run over a sample.

A stream that starts with an empty cache and is measured from op `start` to op `end`
also has first requests, which miss at any size: a request at op s finds key i only
if the key was requested in the last min(T, s) ops, so the hit probability is the
mean of 1 - exp(-a_i min(T, s)) over the measured ops (`window`).
"""

from __future__ import annotations

import math

import numpy as np

_BISECTIONS = 200
#: A characteristic time (in ops) longer than any stream: every requested key stays.
_FOREVER = 1e18


class CheModel:
    """Keys with access rates, lookup rates and memory costs (all per op, weighted)."""

    def __init__(self, accesses: np.ndarray, lookups: np.ndarray, cost: np.ndarray,
                 weights: np.ndarray, window: tuple[float, float] | None = None) -> None:
        self.accesses = np.asarray(accesses, dtype=np.float64)
        self.lookups = np.asarray(lookups, dtype=np.float64) * weights
        self.cost = np.asarray(cost, dtype=np.float64) * weights
        self.total_lookups = float(self.lookups.sum())
        self.window = window

    @property
    def all_keys_memory(self) -> float:
        """Memory that holds every key: beyond it the hit ratio cannot grow."""
        return float(self.cost.sum())

    def memory_at(self, t: float) -> float:
        """Expected memory in use with characteristic time `t` (ops)."""
        return float(np.dot(self.cost, -np.expm1(-self.accesses * t)))

    def hit_ratio_at(self, t: float) -> float:
        if not self.total_lookups:
            return math.nan
        return float(np.dot(self.lookups, self._hits(t)) / self.total_lookups)

    def _hits(self, t: float) -> np.ndarray:
        """Each key's hit probability with characteristic time `t`, over the window."""
        a = self.accesses
        if self.window is None or t <= self.window[0]:
            return -np.expm1(-a * t)
        start, end = self.window
        until = min(t, end)
        safe = np.where(a > 0, a, 1.0)
        # the mean over s in [start, end] of 1 - exp(-a min(t, s)): integrated
        ramp = (until - start) - np.where(a > 0, (np.exp(-a * start) - np.exp(-a * until))
                                          / safe, until - start)
        steady = (end - until) * -np.expm1(-a * t)
        return (ramp + steady) / (end - start)

    def _solve(self, value_at: object, wanted: float) -> float:
        """The t at which the increasing function `value_at` reaches `wanted` (log bisection)."""
        low, high = 1e-3, _FOREVER
        for _ in range(_BISECTIONS):
            middle = math.sqrt(low * high)
            if value_at(middle) < wanted:  # type: ignore[operator]
                low = middle
            else:
                high = middle
        return math.sqrt(low * high)

    def hit_ratio(self, memory: float) -> float:
        """Predicted hit ratio of lookups with `memory` of capacity."""
        if memory >= self.all_keys_memory:
            return self.hit_ratio_at(_FOREVER)
        return self.hit_ratio_at(self._solve(self.memory_at, memory))

    def memory_for(self, hit_ratio: float) -> float | None:
        """Capacity for a hit ratio; None when even holding every key falls short."""
        if not self.total_lookups or hit_ratio >= self.hit_ratio_at(_FOREVER):
            return None
        return self.memory_at(self._solve(self.hit_ratio_at, hit_ratio))
