"""Key popularity and size distributions, sampled in vectorised batches.

Why batches: a Locust worker draws thousands of operations per second, and drawing them
one at a time in Python would make the op generator the bottleneck. Every sampler takes
the caller's `numpy.random.Generator` (the workload owns seeding and streams) and a batch
size, and returns an int64 array; a batch of ~1000-4096 costs well under 1 µs per sample.

Two families, one job each:

- popularity over `n` keys, returning key indices 0..n-1: `Uniform`, `Zipf`,
  `ScrambledZipf`, `Hotspot`, `Sequential`, `Latest`. `top_share(dist, fraction)` gives the
  exact expected share of requests to the hottest `fraction` of keys, for previews;
  `probability` and `hottest` give each key's long-run share of the requests, for the
  capacity model and for `RequestWeighting`.
- sizes in bytes: `Fixed`, `UniformSize`, `WeightedChoice`, `Normal`, `LogNormal`, `GEV`,
  `GeneralizedPareto`, `Empirical`. Each takes optional keyword clamps `min`/`max`,
  applied after sampling; `mean()` feeds working-set estimates.

Invalid parameters raise `ValueError` saying what was expected; scenario.py adds the file
and the field. This module is pure logic: it imports nothing from the rest of `bench`.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

__all__ = [
    "Popularity", "Uniform", "Zipf", "ScrambledZipf", "Hotspot", "Sequential", "Latest",
    "top_share", "SizeDistribution", "Fixed", "UniformSize", "WeightedChoice", "Normal",
    "LogNormal", "GEV", "GeneralizedPareto", "Empirical", "TABLE_MAX_N", "hashed_uniform",
    "RequestWeighting",
]

TABLE_MAX_N = 1 << 22
"""Largest `n` for which `Zipf` samples from a precomputed CDF table (32 MiB of float64
at most); above it, rejection-inversion needs no table at all."""

_EULER_GAMMA = 0.5772156649015329


# --------------------------------------------------------------------------- validation

def _positive_int(name: str, value: int) -> int:
    """`value` as an int >= 1, or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _finite(name: str, value: float, *, low: float = -math.inf, low_open: bool = False,
            high: float = math.inf) -> float:
    """`value` as a finite float in the given range, or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        bound = f"> {low}" if low_open else f">= {low}"
        expected = "a finite number" + ("" if low == -math.inf else f" {bound}")
        expected += "" if high == math.inf else f" and <= {high}"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return number


def _expm1_ratio(t: np.ndarray, xi: float) -> np.ndarray:
    """(exp(xi*t) - 1) / xi, continuous at xi = 0 (where it is t).

    The common core of the GEV and generalized Pareto quantiles and of the zeta integral:
    expm1 keeps precision for small shapes instead of subtracting nearly equal numbers.
    """
    return t if xi == 0.0 else np.expm1(xi * t) / xi


def _lookup(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF lookup of uniforms `u` in [0, 1) in a table whose last entry is 1.0."""
    return np.searchsorted(cdf, u, side="right").astype(np.int64)


def _normalised_cdf(weights: np.ndarray) -> np.ndarray:
    """Cumulative sums of `weights` scaled to end exactly at 1.0 (so lookups stay in range)."""
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective, well-mixed map of uint64."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def hashed_uniform(indices: np.ndarray, salt: int) -> np.ndarray:
    """A uniform in [0, 1) that is a fixed function of (key index, salt).

    For per-key attributes (a key's length, its wiki) that must be the same every time
    the key is drawn, in every process, without storing them: feed it to a size
    distribution's `quantile`. Different salts give independent attributes.
    """
    z = _mix64(np.asarray(indices).astype(np.uint64) * _GOLDEN + np.uint64(salt % 2**64))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


_ACKLAM_A = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
_ACKLAM_B = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
             6.680131188771972e+01, -1.328068155288572e+01, 1.0)
_ACKLAM_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
_ACKLAM_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
             3.754408661907416e+00, 1.0)


def _norm_ppf(u: np.ndarray) -> np.ndarray:
    """Standard normal quantile, vectorised (numpy has none): Acklam's rational
    approximation, relative error below 1.2e-9, which is far below a byte for sizes.
    u = 0 (which `Generator.random` can return) gives the 1e-308 quantile, about -37.5,
    rather than -inf or nan."""
    u = np.asarray(u, dtype=np.float64)
    tail = np.maximum(np.minimum(u, 1.0 - u), np.finfo(np.float64).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.sqrt(-2.0 * np.log(tail))
        outer = np.polyval(_ACKLAM_C, q) / np.polyval(_ACKLAM_D, q)
        c = u - 0.5
        inner = c * np.polyval(_ACKLAM_A, c * c) / np.polyval(_ACKLAM_B, c * c)
    return np.where(tail < 0.02425, np.where(u < 0.5, outer, -outer), inner)


# --------------------------------------------------------------------------- popularity

class Popularity(ABC):
    """Chooses key indices 0..n-1; subclasses say how skewed the choice is.

    `irm` says whether requests are independent draws from a fixed distribution over
    the keys (the independent reference model, which Che's approximation assumes);
    `Sequential` and `Latest` move their hot spot as they go, so they are not.
    """

    irm = True

    def __init__(self, n: int) -> None:
        self.n = _positive_int("n", n)

    def probability(self, indices: np.ndarray) -> np.ndarray:
        """Each key's long-run share of the requests (float64); 1/n for every key unless
        a subclass fixes some keys as hotter (a moving hot spot visits every key)."""
        return np.full(np.shape(indices), 1.0 / self.n)

    def hottest(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The (at most) `m` keys with the largest fixed share of the requests, hottest
        first, and their shares; none when no key is hotter than another in the long
        run (uniform, or a hot spot that moves)."""
        return np.zeros(0, dtype=np.int64), np.zeros(0)

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` key indices (int64, each in 0..self.n-1)."""

    @abstractmethod
    def top_keys_share(self, m: int) -> float:
        """Expected share of requests that go to the `m` most popular keys."""

    @abstractmethod
    def describe(self) -> str:
        """One line for previews and run.json."""


def top_share(dist: Popularity, fraction: float) -> float:
    """Exact expected share of requests to the top `fraction` of keys (for previews).

    The top fraction is the floor(fraction * n) most popular keys; e.g. for
    Zipf(10**6, 0.99), `top_share(d, 0.01)` is the share the hottest 1 % of keys take.
    """
    fraction = _finite("fraction", fraction, low=0.0, high=1.0)
    return dist.top_keys_share(math.floor(fraction * dist.n + 1e-9))


class Uniform(Popularity):
    """Every key equally likely."""

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.n, size=n, dtype=np.int64)

    def top_keys_share(self, m: int) -> float:
        return min(m, self.n) / self.n

    def describe(self) -> str:
        return f"uniform(n={self.n})"


def _harmonic(m: int, s: float) -> float:
    """Generalised harmonic number H(m, s) = sum_{k=1..m} k**-s.

    Summed exactly for the first 2**16 terms; the rest by Euler-Maclaurin (integral, end
    corrections and the first derivative term), whose remainder at k >= 2**16 is below
    1e-20 of the sum, so the result is exact to float64 rounding for any m up to 2**62.
    """
    if m <= 0:
        return 0.0
    head = min(m, 1 << 16)
    total = float(np.sum(np.arange(head, 0, -1, dtype=np.float64) ** -s))
    if m > head:
        a, b = float(head), float(m)
        # sum_{k=a+1..b} f(k) = int_a^b f + (f(b) - f(a))/2 + (f'(b) - f'(a))/12 + ...
        integral = a ** (1.0 - s) * float(_expm1_ratio(np.float64(math.log(b / a)), 1.0 - s))
        total += integral + (b ** -s - a ** -s) / 2.0 - s * (b ** (-s - 1) - a ** (-s - 1)) / 12.0
    return total


class _RejectionInversion:
    """Exact bounded Zipf sampler by rejection-inversion (Hörmann & Derflinger 1996,
    "Rejection-inversion to generate variates from monotone discrete distributions",
    ACM TOMACS 6(3)), vectorised; constants as in Apache Commons RNG's
    RejectionInversionZipfSampler. O(1) memory for any n; it accepts about 99 % of
    candidates (98.7 % at alpha = 2, the lowest seen), so a batch takes a few rounds."""

    def __init__(self, n: int, alpha: float) -> None:
        self.n, self.alpha = n, alpha
        self.h_x1 = float(self._h_integral(np.float64(1.5))) - 1.0
        self.h_n = float(self._h_integral(np.float64(n + 0.5)))
        self.s = 2.0 - float(self._h_integral_inverse(
            self._h_integral(np.float64(2.5)) - self._h(np.float64(2.0))))

    def _h(self, x: np.ndarray) -> np.ndarray:
        """The hat function x**-alpha."""
        return np.exp(-self.alpha * np.log(x))

    def _h_integral(self, x: np.ndarray) -> np.ndarray:
        """Antiderivative of the hat: (x**(1-alpha) - 1) / (1 - alpha), log x at alpha = 1."""
        return _expm1_ratio(np.log(x), 1.0 - self.alpha)

    def _h_integral_inverse(self, y: np.ndarray) -> np.ndarray:
        """Inverse of `_h_integral`: (1 + (1-alpha) y) ** (1/(1-alpha)), exp(y) at alpha = 1."""
        t = np.maximum(y * (1.0 - self.alpha), -1.0)
        if self.alpha == 1.0:
            return np.exp(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(np.abs(t) > 1e-8, np.log1p(t) / t, 1.0 - t / 2.0)
        return np.exp(ratio * y)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` ranks in 1..n with P(k) proportional to k**-alpha."""
        out = np.empty(count, dtype=np.int64)
        todo = np.arange(count)
        while todo.size:
            u = self.h_n + rng.random(todo.size) * (self.h_x1 - self.h_n)
            x = self._h_integral_inverse(u)
            k = np.clip(np.floor(x + 0.5), 1.0, float(self.n))
            accept = (k - x <= self.s) | (u >= self._h_integral(k + 0.5) - self._h(k))
            out[todo[accept]] = k[accept]
            todo = todo[~accept]
        return out


class Zipf(Popularity):
    """Bounded Zipf: key index k-1 has probability proportional to 1/k**alpha, k = 1..n.

    Any alpha > 0 (below 1, at 1, 2.0 ...); key 0 is the hottest. For n <= TABLE_MAX_N
    (2**22) samples are a binary search in a precomputed CDF table, built on first use;
    above it they come from rejection-inversion (Hörmann & Derflinger), which is exact
    too (unlike the Gray et al./YCSB zeta approximation) and needs no table, so n can be
    10**8 or more. `method` says which one this instance uses.
    """

    def __init__(self, n: int, alpha: float) -> None:
        super().__init__(n)
        self.alpha = _finite("alpha", alpha, low=0.0, low_open=True)
        self.method = "table" if self.n <= TABLE_MAX_N else "rejection-inversion"
        self._cdf: np.ndarray | None = None
        self._rejection = (_RejectionInversion(self.n, self.alpha)
                           if self.method == "rejection-inversion" else None)
        self._h_n = _harmonic(self.n, self.alpha)

    def _table(self) -> np.ndarray:
        """The CDF over ranks, built once on first use (previews never pay for it)."""
        if self._cdf is None:
            self._cdf = _normalised_cdf(np.arange(1, self.n + 1, dtype=np.float64) ** -self.alpha)
        return self._cdf

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self._rejection is not None:
            return self._rejection.sample(rng, n) - 1
        return _lookup(self._table(), rng.random(n))

    def top_keys_share(self, m: int) -> float:
        return _harmonic(min(m, self.n), self.alpha) / self._h_n

    def probability(self, indices: np.ndarray) -> np.ndarray:
        return (np.asarray(indices, dtype=np.float64) + 1.0) ** -self.alpha / self._h_n

    def hottest(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        keys = np.arange(min(m, self.n), dtype=np.int64)
        return keys, self.probability(keys)

    def describe(self) -> str:
        return f"zipf(n={self.n}, alpha={self.alpha:g})"


class _FeistelPermutation:
    """A fixed pseudo-random bijection of 0..n-1: a 4-round balanced Feistel network on
    the smallest even bit width covering n, with cycle walking (re-encrypt values >= n)
    to stay inside 0..n-1. The domain is < 4n, so a value walks ~1.3 rounds on average.
    Keys are constants: every process and run maps rank r to the same key."""

    _KEYS = tuple(np.uint64(k) for k in (0x2545F4914F6CDD1D, 0x9E3779B97F4A7C15,
                                          0xD1B54A32D192ED03, 0x8CB92BA72F3D8DD7))

    def __init__(self, n: int) -> None:
        self.n = n
        self.half_bits = np.uint64(max(1, ((n - 1).bit_length() + 1) // 2))
        self.mask = np.uint64((1 << int(self.half_bits)) - 1)

    def _round(self, half: np.ndarray, key: np.uint64) -> np.ndarray:
        """Round function: SplitMix64's finaliser of (half + key), cut to a half width."""
        return _mix64(half + key) & self.mask

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        """One pass of the Feistel network over the full 2*half_bits domain."""
        left, right = x >> self.half_bits, x & self.mask
        for key in self._KEYS:
            left, right = right, left ^ self._round(right, key)
        return (left << self.half_bits) | right

    def _decrypt(self, y: np.ndarray) -> np.ndarray:
        """The inverse of `_encrypt`: the rounds undone in reverse order."""
        left, right = y >> self.half_bits, y & self.mask
        for key in reversed(self._KEYS):
            left, right = right ^ self._round(left, key), left
        return (left << self.half_bits) | right

    @staticmethod
    def _walk(x: np.ndarray, n: int, step: Any) -> np.ndarray:
        """Apply `step` until every value is inside 0..n-1 (cycle walking)."""
        y = step(np.asarray(x, dtype=np.uint64))
        walking = np.flatnonzero(y >= n)
        while walking.size:
            y[walking] = step(y[walking])
            walking = walking[y[walking] >= n]
        return y.astype(np.int64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._walk(x, self.n, self._encrypt)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """x for y = self(x): walking back through the decryptions ends at the first
        in-range value, which is where the forward walk started."""
        return self._walk(y, self.n, self._decrypt)


class ScrambledZipf(Popularity):
    """YCSB's scrambled zipfian: Zipf ranks mapped through a fixed permutation of the keys.

    Same rank-frequency curve as `Zipf(n, alpha)`, but the hot keys are spread over the
    key space instead of sitting at indices 0, 1, 2... YCSB hashes the rank with FNV-1a
    (mod n), which lets ranks collide and so distorts the curve; here the map is a
    bijective Feistel permutation (`key_of_rank`), so no two ranks share a key.
    """

    def __init__(self, n: int, alpha: float) -> None:
        super().__init__(n)
        self._zipf = Zipf(self.n, alpha)
        self.alpha = self._zipf.alpha
        self._permutation = _FeistelPermutation(self.n)
        self._table: np.ndarray | None = None

    def key_of_rank(self, ranks: np.ndarray) -> np.ndarray:
        """Key index of each popularity rank (0 = hottest); a bijection of 0..n-1.

        Up to TABLE_MAX_N keys the permutation is tabulated on first use: the Feistel
        rounds with cycle walking cost more per draw than the Zipf sample itself.
        """
        if self.n > TABLE_MAX_N:
            return self._permutation(ranks)
        if self._table is None:
            self._table = self._permutation(np.arange(self.n, dtype=np.int64))
        return self._table[ranks]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.key_of_rank(self._zipf.sample(rng, n))

    def top_keys_share(self, m: int) -> float:
        return self._zipf.top_keys_share(m)

    def probability(self, indices: np.ndarray) -> np.ndarray:
        return self._zipf.probability(self._permutation.inverse(indices))

    def hottest(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        ranks, shares = self._zipf.hottest(m)
        return self.key_of_rank(ranks), shares

    def describe(self) -> str:
        return f"scrambled-zipf(n={self.n}, alpha={self.alpha:g})"


class Hotspot(Popularity):
    """YCSB's hotspot: the first `hot_fraction` of the key indices take `hot_share` of the
    requests, uniformly among themselves; the other keys share the rest uniformly.

    As in YCSB's HotspotIntegerGenerator the hot set is at the low end (indices
    0..floor(n*hot_fraction)-1); there must be at least one hot and one cold key.
    """

    def __init__(self, n: int, hot_fraction: float, hot_share: float) -> None:
        super().__init__(n)
        self.hot_fraction = _finite("hot_fraction", hot_fraction, low=0.0, high=1.0)
        self.hot_share = _finite("hot_share", hot_share, low=0.0, high=1.0)
        self.hot_keys = math.floor(self.n * self.hot_fraction + 1e-9)
        if not 1 <= self.hot_keys < self.n:
            raise ValueError(f"hot_fraction: expected n * hot_fraction to give at least one hot "
                             f"and one cold key, got {self.hot_keys} hot keys out of {self.n}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        hot = rng.random(n) < self.hot_share
        cold_keys = self.n - self.hot_keys
        offsets = rng.integers(0, np.where(hot, self.hot_keys, cold_keys), dtype=np.int64)
        return np.where(hot, offsets, self.hot_keys + offsets)

    def _groups(self) -> list[tuple[float, int, int]]:
        """(share per key, first index, key count) of the hot and cold sets, hotter first."""
        return sorted([(self.hot_share / self.hot_keys, 0, self.hot_keys),
                       ((1.0 - self.hot_share) / (self.n - self.hot_keys), self.hot_keys,
                        self.n - self.hot_keys)], reverse=True)

    def top_keys_share(self, m: int) -> float:
        share, left = 0.0, min(m, self.n)
        for per_key, _, count in self._groups():
            taken = min(left, count)
            share, left = share + taken * per_key, left - taken
        return share

    def probability(self, indices: np.ndarray) -> np.ndarray:
        hot = self.hot_share / self.hot_keys
        cold = (1.0 - self.hot_share) / (self.n - self.hot_keys)
        return np.where(np.asarray(indices) < self.hot_keys, hot, cold)

    def hottest(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        keys, left = [], min(m, self.n)
        for _, first, count in self._groups():
            keys.append(np.arange(first, first + min(left, count), dtype=np.int64))
            left -= len(keys[-1])
        joined = np.concatenate(keys)
        return joined, self.probability(joined)

    def describe(self) -> str:
        return (f"hotspot(n={self.n}, hot_fraction={self.hot_fraction:g}, "
                f"hot_share={self.hot_share:g})")


class Sequential(Popularity):
    """Keys in order, start, start+1, ..., wrapping at n; ignores the rng. Not IRM.

    Stateful: the sampler keeps `position`, the index it returns next. It is
    deterministic per stream because the caller gives each stream its own `start`
    (e.g. stream i of k starts at i*n//k), or `seek`s to a position derived from the
    block it is drawing, so a result never depends on timing.
    """

    irm = False

    def __init__(self, n: int, start: int = 0) -> None:
        super().__init__(n)
        self.position = 0
        self.seek(start)

    def seek(self, position: int) -> None:
        """Make `position` (mod n) the next index returned."""
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
            raise ValueError(f"start: expected an integer, got {position!r}")
        self.position = int(position) % self.n

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = (self.position + np.arange(n, dtype=np.int64)) % self.n
        self.position = (self.position + n) % self.n
        return out

    def top_keys_share(self, m: int) -> float:
        return min(m, self.n) / self.n

    def describe(self) -> str:
        return f"sequential(n={self.n})"


class Latest(Popularity):
    """YCSB's "latest": Zipf over recency, the most recently inserted keys most popular.

    Key = (newest - r) mod n for a Zipf(n, alpha) rank r (0 = newest), as YCSB's
    SkewedLatestGenerator does over its insert counter. The caller moves the insertion
    point with `advance(k)` after inserting k keys; the key space is a ring of n keys,
    so insertion wraps around and overwrites the oldest. Deterministic per stream in the
    same way as `Sequential`: the state is `newest`, set by the constructor.
    """

    irm = False

    def __init__(self, n: int, alpha: float, newest: int | None = None) -> None:
        super().__init__(n)
        self._zipf = Zipf(self.n, alpha)
        self.alpha = self._zipf.alpha
        self.newest = 0
        self.advance(self.n - 1 if newest is None else newest)

    def advance(self, k: int) -> None:
        """Move the insertion point forward by `k` keys (k newly inserted keys)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"advance: expected an integer number of keys, got {k!r}")
        self.newest = (self.newest + int(k)) % self.n

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return (self.newest - self._zipf.sample(rng, n)) % self.n

    def top_keys_share(self, m: int) -> float:
        return self._zipf.top_keys_share(m)

    def describe(self) -> str:
        return f"latest(n={self.n}, alpha={self.alpha:g})"


class RequestWeighting:
    """Per-key uniforms re-spread so that, weighted by request, they are uniform.

    Why: a per-key attribute drawn as `quantile(hashed_uniform(key))` follows the
    distribution over keys, but the requests carry it in proportion to popularity: with
    Zipf popularity the hottest few keys take whole percents of the requests each, and
    the sizes requests see are then lumpy draws. A distribution said to be `per:
    request` is fed `v` instead of `u`: keys in the order of their `u`, each given the
    middle of its slice of the cumulative request share, so that the share of requests
    with v <= x is x (to within half the share of the hottest key). The `hot` most
    popular keys get exact slices; the rest together hold the remaining share, spread
    evenly over u (their u are uniform and none of them weighs much). A popularity
    without fixed hot keys (`hottest` gives none) leaves u as it is.
    """

    def __init__(self, popularity: Popularity, salt: int, hot: int = 1 << 16) -> None:
        keys, shares = popularity.hottest(hot)
        u = hashed_uniform(keys, salt)
        order = np.argsort(u, kind="stable")
        self._u = u[order]
        self._below = np.concatenate(([0.0], np.cumsum(shares[order])))
        self._rest = max(0.0, 1.0 - float(shares.sum()))
        by_key = np.argsort(keys, kind="stable")
        self._keys, self._shares = keys[by_key], shares[by_key]

    def __call__(self, indices: np.ndarray, u: np.ndarray) -> np.ndarray:
        """`v` for keys `indices` whose hashed uniforms are `u`."""
        v = self._rest * u + self._below[np.searchsorted(self._u, u, side="left")]
        if len(self._keys):
            at = np.minimum(np.searchsorted(self._keys, indices), len(self._keys) - 1)
            v = v + np.where(self._keys[at] == indices, self._shares[at] / 2.0, 0.0)
        return np.clip(v, 0.0, np.nextafter(1.0, 0.0))


# --------------------------------------------------------------------------- sizes

def _quadrature(points: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u in (0, 1) and weights summing to 1 for integrals over quantiles.

    Midpoint rule after u = (1 - cos(pi t)) / 2, which crowds nodes towards both ends
    (the outermost within ~4e-8 of 0 and 1) where quantile functions of heavy tails move
    fastest.
    """
    t = (np.arange(points) + 0.5) / points
    weights = np.sin(np.pi * t)
    return (1.0 - np.cos(np.pi * t)) / 2.0, weights / weights.sum()


_QUAD_U, _QUAD_W = _quadrature()


class SizeDistribution(ABC):
    """Sizes in bytes.

    `ppf` is the quantile function of the distribution as its parameters define it
    (real-valued, unclamped); `sample` and `quantile` round it to whole bytes and clamp
    to [min, max]. Sizes are never negative: a negative draw becomes 0 (or `min`),
    which matters only for `Normal`.
    """

    def __init__(self, *, min: int | None = None, max: int | None = None) -> None:
        for name, bound in (("min", min), ("max", max)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, np.integer))
                                      or bound < 0):
                raise ValueError(f"{name}: expected a whole number of bytes >= 0, got {bound!r}")
        if min is not None and max is not None and min > max:
            raise ValueError(f"min: expected min <= max, got min={min} and max={max}")
        self.min, self.max = min, max
        self._lo = float(min or 0)
        self._hi = math.inf if max is None else float(max)

    @abstractmethod
    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Quantile function (inverse CDF) at u in [0, 1): unrounded, unclamped float64."""

    def sample_real(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` unrounded, unclamped draws (float64): the distribution the statistical
        tests compare with scipy.stats. Inverse transform unless a subclass has a faster
        exact sampler."""
        return self.ppf(rng.random(n))

    def _whole_bytes(self, x: np.ndarray) -> np.ndarray:
        """Round to the nearest byte and clamp to [min, max] as int64.

        Clamping before rounding gives the same integers (rint is monotone and the
        bounds are whole numbers) and keeps huge heavy-tail draws from overflowing int64.
        """
        return np.rint(np.clip(x, self._lo, min(self._hi, 2.0**62))).astype(np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` sizes in bytes (int64): rounded draws, clamped to [min, max]."""
        return self._whole_bytes(self.sample_real(rng, n))

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Sizes (int64, rounded and clamped) at given uniforms: with `hashed_uniform`
        this gives each key a size that is a fixed function of its index."""
        return self._whole_bytes(self.ppf(np.asarray(u, dtype=np.float64)))

    @abstractmethod
    def mean(self) -> float:
        """Mean size in bytes after clamping (for working-set estimates)."""

    @abstractmethod
    def _describe(self) -> str:
        """The distribution and its parameters, without the clamps."""

    def describe(self) -> str:
        """One line for previews and run.json, e.g. `lognormal(mu=6, sigma=1.2) in [16, 1048576]`."""
        if self.min is None and self.max is None:
            return self._describe()
        return f"{self._describe()} in [{self.min or 0}, {'inf' if self.max is None else self.max}]"


class _Continuous(SizeDistribution):
    """A continuous size distribution: `mean()` integrates its quantile function."""

    @abstractmethod
    def raw_mean(self) -> float:
        """Mean of the unclamped real-valued distribution (math.inf where it has none)."""

    def mean(self) -> float:
        """E[clip(X, min, max)] of the real-valued draw, by quadrature over quantiles.

        Rounding to whole bytes moves it by well under a byte. With no `max` it is
        raw_mean() plus the (bounded) correction from the lower clamp; with a `max` the
        clamped quantile function is bounded, so the quadrature is accurate even where
        the distribution itself has no mean (shape >= 1)."""
        q = self.ppf(_QUAD_U)
        if math.isinf(self._hi):
            return self.raw_mean() + float(np.dot(_QUAD_W, np.maximum(self._lo - q, 0.0)))
        return float(np.dot(_QUAD_W, np.clip(q, self._lo, self._hi)))


class Fixed(SizeDistribution):
    """Always `value` bytes."""

    def __init__(self, value: int, *, min: int | None = None, max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        self.value = _finite("value", value, low=0.0)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.full(np.shape(u), self.value)

    def mean(self) -> float:
        return float(np.clip(round(self.value), self._lo, self._hi))

    def _describe(self) -> str:
        return f"fixed({self.value:g})"


class UniformSize(SizeDistribution):
    """Whole numbers of bytes from `lo` to `hi` inclusive, each equally likely."""

    def __init__(self, lo: int, hi: int, *, min: int | None = None, max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        self.lo = int(_finite("lo", lo, low=0.0))
        self.hi = int(_finite("hi", hi, low=0.0))
        if self.lo != lo or self.hi != hi or self.lo > self.hi:
            raise ValueError(f"lo: expected whole numbers of bytes with lo <= hi, got lo={lo!r} and hi={hi!r}")

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self.lo + np.floor(np.asarray(u) * (self.hi - self.lo + 1))

    def mean(self) -> float:
        """Exact: sizes below `min` count as `min`, above `max` as `max`, the rest as drawn."""
        count = self.hi - self.lo + 1
        below = max(0.0, min(self._lo - self.lo, count))
        above = max(0.0, min(self.hi - self._hi, count))
        first, last = max(self.lo, self._lo), min(self.hi, self._hi)
        middle = (first + last) * (last - first + 1) / 2.0 if first <= last else 0.0
        return (below * self._lo + (above * self._hi if above else 0.0) + middle) / count

    def _describe(self) -> str:
        return f"uniform({self.lo}, {self.hi})"


class WeightedChoice(SizeDistribution):
    """One of `values` (bytes), picked with probability proportional to `weights`."""

    def __init__(self, values: Sequence[int], weights: Sequence[float], *,
                 min: int | None = None, max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        if len(values) == 0 or len(values) != len(weights):
            raise ValueError(f"weights: expected one weight per value and at least one value, "
                             f"got {len(values)} values and {len(weights)} weights")
        self.values = np.array([_finite("values", v, low=0.0) for v in values])
        self.weights = np.array([_finite("weights", w, low=0.0) for w in weights])
        if self.weights.sum() <= 0:
            raise ValueError("weights: expected at least one weight > 0, got all zero")
        self._cdf = _normalised_cdf(self.weights)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self.values[_lookup(self._cdf, u)]

    def mean(self) -> float:
        clamped = np.clip(np.rint(self.values), self._lo, self._hi)
        return float(np.dot(self.weights, clamped) / self.weights.sum())

    def _describe(self) -> str:
        pairs = ", ".join(f"{v:g}:{w:g}" for v, w in zip(self.values, self.weights))
        return f"choice({pairs})"


class Normal(_Continuous):
    """Normal(mean, sd) bytes; draws below 0 (or `min`) are clamped, so keep mean >> sd."""

    def __init__(self, mean: float, sd: float, *, min: int | None = None,
                 max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        self.mu = _finite("mean", mean)
        self.sd = _finite("sd", sd, low=0.0, low_open=True)

    def sample_real(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.normal(self.mu, self.sd, size=n)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self.mu + self.sd * _norm_ppf(u)

    def raw_mean(self) -> float:
        return self.mu

    def _describe(self) -> str:
        return f"normal(mean={self.mu:g}, sd={self.sd:g})"


class LogNormal(_Continuous):
    """exp(Normal(mu, sigma)): `mu` and `sigma` are the parameters of the underlying normal
    (numpy's convention; scipy's is lognorm(s=sigma, scale=exp(mu))).

    Users usually know a median and a tail instead: `LogNormal.from_median_p99(500, 20000)`.
    """

    _Z99 = NormalDist().inv_cdf(0.99)

    def __init__(self, mu: float, sigma: float, *, min: int | None = None,
                 max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        self.mu = _finite("mu", mu)
        self.sigma = _finite("sigma", sigma, low=0.0, low_open=True)

    @classmethod
    def from_median_p99(cls, median: float, p99: float, *, min: int | None = None,
                        max: int | None = None) -> LogNormal:
        """The lognormal whose median and 99th percentile are the given sizes:
        mu = ln(median), sigma = ln(p99 / median) / z(0.99), z(0.99) = 2.3263."""
        median = _finite("median", median, low=0.0, low_open=True)
        p99 = _finite("p99", p99, low=0.0, low_open=True)
        if p99 <= median:
            raise ValueError(f"p99: expected a size above the median ({median:g}), got {p99:g}")
        return cls(math.log(median), math.log(p99 / median) / cls._Z99, min=min, max=max)

    def sample_real(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(self.mu, self.sigma, size=n)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.exp(self.mu + self.sigma * _norm_ppf(u))

    def raw_mean(self) -> float:
        return math.exp(self.mu + self.sigma ** 2 / 2.0)

    def _describe(self) -> str:
        return f"lognormal(mu={self.mu:g}, sigma={self.sigma:g})"


class _ExtremeValue(_Continuous):
    """Shared parameters and sampling of `GEV` and `GeneralizedPareto`: both are
    loc + scale * (exp(shape * t) - 1) / shape of a transformed exponential variate."""

    def __init__(self, loc: float, scale: float, shape: float, *, min: int | None = None,
                 max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        self.loc = _finite("loc", loc)
        self.scale = _finite("scale", scale, low=0.0, low_open=True)
        self.shape = _finite("shape", shape)

    @abstractmethod
    def _from_exponential(self, e: np.ndarray) -> np.ndarray:
        """The variate for a standard exponential `e` (the quantile at a matching u)."""

    def sample_real(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # numpy's ziggurat exponential is faster than log(uniform) and exact.
        return self._from_exponential(rng.standard_exponential(n))

    def _params(self) -> str:
        """The parameters as describe() prints them."""
        return f"loc={self.loc:g}, scale={self.scale:g}, shape={self.shape:g}"


class GEV(_ExtremeValue):
    """Generalized extreme value, in the convention of Atikoglu et al., "Workload Analysis
    of a Large-Scale Key-Value Store" (SIGMETRICS 2012):

        F(x) = exp(-(1 + shape * (x - loc) / scale) ** (-1 / shape))

    so shape > 0 is the heavy (Fréchet) upper tail. Facebook's ETC key sizes are
    GEV(30.7984, 8.20449, 0.078688). scipy.stats.genextreme uses the opposite sign:
    this is genextreme(c=-shape, loc=loc, scale=scale).
    """

    def _from_exponential(self, e: np.ndarray) -> np.ndarray:
        """u = exp(-e): loc + scale * (e ** -shape - 1) / shape. The ends e = 0 and
        e = inf (u = 1 and u = 0) map to the ends of the support, without warnings."""
        with np.errstate(divide="ignore"):
            return self.loc + self.scale * _expm1_ratio(-np.log(e), self.shape)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return self._from_exponential(-np.log(u))

    def raw_mean(self) -> float:
        if self.shape >= 1.0:
            return math.inf
        if self.shape == 0.0:
            return self.loc + self.scale * _EULER_GAMMA
        return self.loc + self.scale * (math.gamma(1.0 - self.shape) - 1.0) / self.shape

    def _describe(self) -> str:
        return f"gev({self._params()})"


class GeneralizedPareto(_ExtremeValue):
    """Generalized Pareto: F(x) = 1 - (1 + shape * (x - loc) / scale) ** (-1 / shape).

    Facebook's ETC value sizes (Atikoglu et al. 2012) are GP(0, 214.476, 0.348238).
    scipy.stats.genpareto uses the same sign: genpareto(c=shape, loc=loc, scale=scale).
    """

    def _from_exponential(self, e: np.ndarray) -> np.ndarray:
        """u = 1 - exp(-e): loc + scale * (exp(shape * e) - 1) / shape."""
        return self.loc + self.scale * _expm1_ratio(e, self.shape)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self._from_exponential(-np.log1p(-np.asarray(u)))

    def raw_mean(self) -> float:
        return math.inf if self.shape >= 1.0 else self.loc + self.scale / (1.0 - self.shape)

    def _describe(self) -> str:
        return f"generalized-pareto({self._params()})"


_TABLE_ROW = re.compile(r"(?:STAT\s+)?([0-9.eE+-]+)\s*[,;\s]\s*([0-9.eE+-]+)")


def _read_table(path: str | Path) -> list[tuple[float, float]]:
    """Two numbers per row from a CSV or `stats sizes` dump; skips blank lines, `#`
    comments, memcached's `END` and a header line before the first row."""
    rows: list[tuple[float, float]] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.strip()
        is_header = not rows and text[:1].isalpha() and not text.startswith("STAT")
        if not text or text.startswith("#") or text == "END" or is_header:
            continue
        match = _TABLE_ROW.fullmatch(text)
        try:
            rows.append((float(match.group(1)), float(match.group(2))))  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            raise ValueError(f"{path}:{number}: expected 'size,cdf' or 'size,count' "
                             f"(or 'STAT size count'), got {line!r}") from None
    if not rows:
        raise ValueError(f"{path}: expected rows of 'size,cdf' or 'size,count', found none")
    return rows


class Empirical(_Continuous):
    """A measured size distribution: a CDF table [(size, cumulative_fraction), ...],
    sampled by inverse CDF with linear interpolation between points.

    Sizes strictly increase; fractions never decrease and end at 1. The mass below the
    first fraction sits at the first size (a table starting at (0, 0) has none).
    """

    def __init__(self, points: Sequence[tuple[float, float]], *, min: int | None = None,
                 max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        if len(points) == 0:
            raise ValueError("points: expected at least one (size, cumulative_fraction) pair, got none")
        sizes = np.array([_finite("points: size", s, low=0.0) for s, _ in points])
        cdf = np.array([_finite("points: cumulative fraction", f, low=0.0, high=1.0) for _, f in points])
        if np.any(np.diff(sizes) <= 0) or np.any(np.diff(cdf) < 0):
            raise ValueError("points: expected sizes strictly increasing and cumulative "
                             "fractions never decreasing")
        if not math.isclose(cdf[-1], 1.0, abs_tol=1e-9):
            raise ValueError(f"points: expected the last cumulative fraction to be 1, got {cdf[-1]:g}")
        cdf[-1] = 1.0
        self.sizes, self.cdf = sizes, cdf

    @classmethod
    def from_csv(cls, path: str | Path, *, kind: Literal["auto", "cdf", "counts"] = "auto",
                 min: int | None = None, max: int | None = None) -> Empirical:
        """Read `size,cdf` rows, or `size,count` rows as memcached's `stats sizes` prints
        them ("STAT 96 12345"; also "96,12345" or "96 12345").

        Counts become a CDF (count of sizes <= s over the total). memcached's `stats
        sizes` buckets sizes up to multiples of 32 bytes, so interpolating spreads each
        bucket over the 32 bytes below its label, as the server counted it; the first
        bucket sits at its label. `kind="auto"` reads the second column as a CDF when
        every value is in [0, 1], never decreases and the last is 1, else as counts.
        """
        if kind not in ("auto", "cdf", "counts"):
            raise ValueError(f"kind: expected 'auto', 'cdf' or 'counts', got {kind!r}")
        rows = _read_table(path)
        second = np.array([r[1] for r in rows])
        looks_like_cdf = bool(np.all((second >= 0) & (second <= 1)) and np.all(np.diff(second) >= 0)
                              and math.isclose(second[-1], 1.0))
        if kind == "cdf" or (kind == "auto" and looks_like_cdf):
            return cls(rows, min=min, max=max)
        if np.any(second < 0) or second.sum() <= 0:
            raise ValueError(f"{path}: expected counts >= 0 with a positive total")
        sizes, inverse = np.unique([r[0] for r in rows], return_inverse=True)
        counts = np.bincount(inverse, weights=second)
        return cls(list(zip(sizes, _normalised_cdf(counts))), min=min, max=max)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.cdf, self.sizes)

    def raw_mean(self) -> float:
        """Exact: the atom at the first size plus the midpoint of each linear segment."""
        segments = np.diff(self.cdf) * (self.sizes[1:] + self.sizes[:-1]) / 2.0
        return float(self.cdf[0] * self.sizes[0] + segments.sum())

    def _describe(self) -> str:
        return f"empirical({len(self.sizes)} points, {self.sizes[0]:g}..{self.sizes[-1]:g} bytes)"
