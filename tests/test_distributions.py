"""Statistical and contract tests for bench.scenario.distributions.

Every statistical test states its null hypothesis H0 and uses a fixed seed, so a run is
reproducible: continuous distributions are checked with scipy.stats.kstest against the
scipy.stats reference, discrete ones with scipy.stats.chisquare against the exact pmf
(bins with an expected count below 5 are pooled). H0 is rejected below ALPHA.

Size distributions round to whole bytes, and a KS test against a continuous CDF is not
valid for rounded data; so KS runs on `sample_real` (the unrounded, unclamped draw) and
a separate test checks that `sample` is exactly rint + clamp of that draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
from scipy import stats

from bench.scenario import distributions as d

ALPHA = 1e-3
N_DRAWS = 50_000


def rng(seed: int = 20240521) -> np.random.Generator:
    """The fixed-seed generator every statistical test draws from."""
    return np.random.default_rng(seed)


def chisquare_p(samples: np.ndarray, probabilities: np.ndarray) -> float:
    """p-value of Pearson's chi-square test of H0: `samples` (values 0..k-1) have pmf
    `probabilities`; tail bins with an expected count below 5 are pooled into one."""
    observed = np.bincount(samples, minlength=len(probabilities)).astype(float)
    expected = probabilities * len(samples)
    keep = expected >= 5
    observed = np.append(observed[keep], observed[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    return float(stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue)


def zipf_pmf(n: int, alpha: float) -> np.ndarray:
    """Exact bounded Zipf pmf over ranks 1..n (index 0 = rank 1)."""
    weights = np.arange(1, n + 1, dtype=float) ** -alpha
    return weights / weights.sum()


# --------------------------------------------------------------------------- popularity

def test_uniform_popularity_is_uniform() -> None:
    """H0: every one of 100 keys has probability 1/100."""
    samples = d.Uniform(100).sample(rng(), N_DRAWS)
    assert samples.dtype == np.int64 and samples.min() >= 0 and samples.max() < 100
    assert chisquare_p(samples, np.full(100, 0.01)) > ALPHA


@pytest.mark.parametrize("alpha", [0.5, 0.99, 1.0, 2.0])
@pytest.mark.parametrize("method", ["table", "rejection-inversion"])
def test_zipf_matches_exact_pmf(alpha: float, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """H0: key index k-1 has probability k**-alpha / H(200, alpha), for both samplers
    (the rejection-inversion path is forced on a small n by lowering TABLE_MAX_N)."""
    if method == "rejection-inversion":
        monkeypatch.setattr(d, "TABLE_MAX_N", 0)
    dist = d.Zipf(200, alpha)
    assert dist.method == method
    assert chisquare_p(dist.sample(rng(), N_DRAWS), zipf_pmf(200, alpha)) > ALPHA


@pytest.fixture(scope="module")
def harmonic_1e8() -> dict[float, float]:
    """H(10**8, s) summed exactly in chunks: the reference for the large-n tests."""
    sums = {}
    for s in (0.99, 2.0):
        sums[s] = sum(float(np.sum(np.arange(lo, lo + 10**7, dtype=float) ** -s))
                      for lo in range(1, 10**8, 10**7))
    return sums


@pytest.mark.parametrize("alpha", [0.99, 2.0])
def test_zipf_large_n_uses_rejection_inversion_with_the_exact_head(
        alpha: float, harmonic_1e8: dict[float, float]) -> None:
    """H0: for n = 10**8 the 30 hottest ranks have probability k**-alpha / H(n, alpha)
    (all other ranks pooled); no table is built."""
    dist = d.Zipf(10**8, alpha)
    assert dist.method == "rejection-inversion" and dist._cdf is None
    samples = dist.sample(rng(), N_DRAWS)
    assert samples.min() >= 0 and samples.max() < 10**8
    head = np.arange(1, 31, dtype=float) ** -alpha / harmonic_1e8[alpha]
    assert chisquare_p(np.minimum(samples, 30), np.append(head, 1 - head.sum())) > ALPHA


def test_top_share_is_exact(harmonic_1e8: dict[float, float]) -> None:
    """top_share is the pmf mass of the hottest floor(fraction*n) keys, also for n = 10**8
    where it uses Euler-Maclaurin instead of a sum."""
    assert d.top_share(d.Zipf(1000, 0.8), 0.1) == pytest.approx(zipf_pmf(1000, 0.8)[:100].sum(), rel=1e-12)
    head = float(np.sum(np.arange(1, 10**6 + 1, dtype=float) ** -0.99))
    assert d.top_share(d.Zipf(10**8, 0.99), 0.01) == pytest.approx(head / harmonic_1e8[0.99], rel=1e-9)
    assert d.top_share(d.Uniform(1000), 0.25) == 0.25
    assert d.top_share(d.Sequential(1000), 0.25) == 0.25
    assert d.top_share(d.Hotspot(100, 0.2, 0.8), 0.1) == pytest.approx(0.4)
    assert d.top_share(d.Hotspot(100, 0.2, 0.8), 0.3) == pytest.approx(0.8 + 10 * 0.2 / 80)
    assert d.top_share(d.Hotspot(100, 0.5, 0.2), 0.5) == pytest.approx(0.8)  # cold keys hotter
    assert d.top_share(d.Zipf(10, 1.0), 0.0) == 0.0 and d.top_share(d.Zipf(10, 1.0), 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [1, 2, 5, 1000, 4097, 65536])
def test_scrambled_zipf_permutation_is_a_bijection(n: int) -> None:
    """key_of_rank maps 0..n-1 onto 0..n-1 with no two ranks sharing a key."""
    keys = d.ScrambledZipf(n, 0.99).key_of_rank(np.arange(n))
    assert np.array_equal(np.sort(keys), np.arange(n))


def test_scrambled_zipf_keeps_rank_frequency_but_spreads_hot_keys() -> None:
    """H0 (chi-square): mapped back through the permutation, ranks follow the Zipf pmf.
    H0 (KS): the 1000 hottest keys of 10**5 sit uniformly over the key space."""
    dist = d.ScrambledZipf(200, 0.99)
    rank_of_key = np.argsort(dist.key_of_rank(np.arange(200)))
    assert chisquare_p(rank_of_key[dist.sample(rng(), N_DRAWS)], zipf_pmf(200, 0.99)) > ALPHA
    hot_keys = d.ScrambledZipf(10**5, 0.99).key_of_rank(np.arange(1000))
    assert stats.kstest(hot_keys / 10**5, "uniform").pvalue > ALPHA
    assert d.top_share(dist, 0.1) == d.top_share(d.Zipf(200, 0.99), 0.1)


@pytest.mark.parametrize("make", [
    lambda: d.Uniform(1000), lambda: d.Zipf(1000, 0.99), lambda: d.Zipf(1000, 1.6),
    lambda: d.ScrambledZipf(1000, 0.99), lambda: d.ScrambledZipf(5_000_000, 0.8),
    lambda: d.Hotspot(1000, 0.2, 0.8), lambda: d.Hotspot(1000, 0.5, 0.2)])
def test_probability_and_hottest_agree_with_the_shares(make) -> None:
    """Per-key shares sum to 1, `hottest` lists keys by falling share with their
    `probability`, and its sum is `top_keys_share`."""
    dist = make()
    if dist.n <= 1000:
        assert dist.probability(np.arange(dist.n)).sum() == pytest.approx(1.0)
    keys, shares = dist.hottest(50)
    assert np.array_equal(shares, dist.probability(keys))
    assert np.all(np.diff(shares) <= 1e-15) and len(set(keys.tolist())) == len(keys)
    if len(keys):
        assert shares.sum() == pytest.approx(dist.top_keys_share(50))


def test_scrambled_zipf_inverse_permutation_finds_each_rank() -> None:
    """Above the table size the Feistel network is inverted by walking back."""
    dist = d.ScrambledZipf(d.TABLE_MAX_N + 12_345, 0.99)
    ranks = np.array([0, 1, 2, 77, 10**6, d.TABLE_MAX_N + 12_344])
    keys = dist.key_of_rank(ranks)
    assert np.allclose(dist.probability(keys), d.Zipf(dist.n, 0.99).probability(ranks))


@pytest.mark.parametrize("make", [lambda: d.Zipf(100_000, 0.99),
                                  lambda: d.ScrambledZipf(100_000, 1.2),
                                  lambda: d.Hotspot(100_000, 0.01, 0.9)])
def test_request_weighting_makes_the_request_weighted_uniform_uniform(make) -> None:
    """Weighted by each key's share, RequestWeighting's v is uniform to within half the
    hottest key's share (no fixed per-key value can do better), where the raw hashed
    uniform is off by more."""
    dist = make()
    keys = np.arange(dist.n)
    shares = dist.probability(keys)
    u = d.hashed_uniform(keys, 99)

    def distance(values: np.ndarray) -> float:
        order = np.argsort(values)
        cumulative = np.cumsum(shares[order])
        return float(np.max(np.abs(cumulative - shares[order] / 2 - values[order])))

    v = d.RequestWeighting(dist, 99)(keys, u)
    assert distance(v) <= shares.max() / 2 + 2e-3
    assert np.all((v >= 0) & (v < 1))
    if isinstance(dist, d.Zipf):
        assert distance(u) > 2 * distance(v)


def test_request_weighting_leaves_keys_without_fixed_hot_spots_alone() -> None:
    u = d.hashed_uniform(np.arange(100), 5)
    for dist in (d.Uniform(100), d.Sequential(100), d.Latest(100, 0.99)):
        assert np.array_equal(d.RequestWeighting(dist, 5)(np.arange(100), u), u)
    assert not d.Sequential(100).irm and not d.Latest(100, 0.9).irm and d.Zipf(9, 1).irm


def test_hotspot_matches_its_two_level_pmf() -> None:
    """H0: each of the 20 hot keys (indices 0..19) has probability 0.8/20 and each of
    the 80 cold keys 0.2/80."""
    pmf = np.concatenate([np.full(20, 0.8 / 20), np.full(80, 0.2 / 80)])
    assert chisquare_p(d.Hotspot(100, 0.2, 0.8).sample(rng(), N_DRAWS), pmf) > ALPHA


def test_sequential_wraps_from_its_start_and_keeps_position() -> None:
    """Deterministic per stream: the sequence depends only on start and on how many
    indices were drawn before."""
    seq = d.Sequential(5, start=3)
    assert seq.sample(rng(), 4).tolist() == [3, 4, 0, 1]
    assert seq.sample(rng(), 3).tolist() == [2, 3, 4]
    seq.seek(11)
    assert seq.position == 1 and seq.sample(rng(), 2).tolist() == [1, 2]


def test_latest_is_zipf_over_recency_and_follows_advance() -> None:
    """H0: the age (newest - key) mod n follows the Zipf pmf. advance(k) moves every key
    by k for the same random stream, so the newest keys stay the most popular."""
    latest = d.Latest(200, 0.99)
    before = latest.sample(rng(), N_DRAWS)
    assert chisquare_p((latest.newest - before) % 200, zipf_pmf(200, 0.99)) > ALPHA
    latest.advance(7)
    assert latest.newest == 6
    assert np.array_equal(latest.sample(rng(), N_DRAWS), (before + 7) % 200)
    assert d.Latest(200, 0.99, newest=42).newest == 42


# --------------------------------------------------------------------------- sizes

Factory = Callable[..., d.SizeDistribution]
"""Builds a size distribution with the given `min`/`max` clamps (none by default)."""

CONTINUOUS: dict[str, tuple[Factory, stats.rv_continuous]] = {
    "normal": (partial(d.Normal, 1000, 150), stats.norm(1000, 150)),
    "lognormal": (partial(d.LogNormal, 6.0, 1.2), stats.lognorm(s=1.2, scale=math.exp(6.0))),
    "gev-etc-keys": (partial(d.GEV, 30.7984, 8.20449, 0.078688),
                     stats.genextreme(c=-0.078688, loc=30.7984, scale=8.20449)),
    "gev-negative-shape": (partial(d.GEV, 100, 20, -0.2), stats.genextreme(c=0.2, loc=100, scale=20)),
    "gev-gumbel": (partial(d.GEV, 100, 20, 0.0), stats.genextreme(c=0.0, loc=100, scale=20)),
    "gp-etc-values": (partial(d.GeneralizedPareto, 0, 214.476, 0.348238),
                      stats.genpareto(c=0.348238, loc=0, scale=214.476)),
    "gp-exponential": (partial(d.GeneralizedPareto, 10, 50, 0.0), stats.genpareto(c=0.0, loc=10, scale=50)),
    "empirical": (partial(d.Empirical, [(0, 0), (100, 0.5), (400, 0.9), (1000, 1)]),
                  stats.rv_histogram((np.array([0.5, 0.4, 0.1]), np.array([0, 100, 400, 1000])), density=False)),
}


@pytest.mark.parametrize("name", CONTINUOUS)
def test_continuous_sizes_match_scipy(name: str) -> None:
    """H0 (KS): the unrounded draws have the scipy reference's CDF; the quantile
    function and the unclamped mean agree with scipy's ppf and mean."""
    make, ref = CONTINUOUS[name]
    dist = make()
    assert stats.kstest(dist.sample_real(rng(), N_DRAWS), ref.cdf).pvalue > ALPHA
    u = np.linspace(1e-6, 1 - 1e-6, 999)
    assert np.allclose(dist.ppf(u), ref.ppf(u), rtol=1e-7, atol=1e-7)
    assert dist.mean() == pytest.approx(ref.mean(), rel=1e-6)


def test_gev_sign_convention_is_atikoglu_not_scipy() -> None:
    """The KS test has the power to see the convention: scipy's c = +shape is rejected."""
    samples = d.GEV(30.7984, 8.20449, 0.078688).sample_real(rng(), N_DRAWS)
    assert stats.kstest(samples, stats.genextreme(c=0.078688, loc=30.7984, scale=8.20449).cdf).pvalue < 1e-6


def test_lognormal_from_median_p99() -> None:
    """The constructed lognormal has the requested median and 99th percentile."""
    dist = d.LogNormal.from_median_p99(500, 20_000)
    assert dist.ppf(np.array([0.5, 0.99])) == pytest.approx([500, 20_000], rel=1e-8)


def test_uniform_size_is_discrete_uniform_inclusive() -> None:
    """H0: sizes 10..29 each have probability 1/20 (scipy.stats.randint(10, 30))."""
    samples = d.UniformSize(10, 29).sample(rng(), N_DRAWS)
    assert chisquare_p(samples - 10, stats.randint(10, 30).pmf(np.arange(10, 30))) > ALPHA


def test_weighted_choice_matches_weights() -> None:
    """H0: 100, 200, 300 bytes come with probabilities 1/6, 2/6, 3/6."""
    samples = d.WeightedChoice([100, 200, 300], [1, 2, 3]).sample(rng(), N_DRAWS)
    assert chisquare_p(samples // 100 - 1, np.array([1, 2, 3]) / 6) > ALPHA


def test_empirical_table_with_an_atom() -> None:
    """H0 (chi-square over the table's segments): 20 % of draws are exactly 64 bytes
    (the mass below the first point) and each segment gets its share of the CDF."""
    dist = d.Empirical([(64, 0.2), (128, 0.7), (1024, 1.0)])
    x = dist.sample_real(rng(), N_DRAWS)
    bins = np.where(x == 64, 0, np.where(x <= 128, 1, 2))
    assert chisquare_p(bins, np.array([0.2, 0.5, 0.3])) > ALPHA
    assert dist.mean() == pytest.approx(0.2 * 64 + 0.5 * 96 + 0.3 * 576)


ALL_SIZES: dict[str, Factory] = {
    **{name: make for name, (make, _) in CONTINUOUS.items()},
    "fixed": partial(d.Fixed, 100),
    "uniform": partial(d.UniformSize, 10, 1000),
    "choice": partial(d.WeightedChoice, [10, 100, 1000], [1, 2, 3]),
}


@pytest.mark.parametrize("name", ALL_SIZES)
def test_sample_is_rounded_clamped_real_draw(name: str) -> None:
    """`sample` is exactly rint(sample_real) clamped to [min, max] (and to >= 0 without
    clamps), for the same random stream."""
    make = ALL_SIZES[name]
    real = make().sample_real(rng(), 10_000)
    assert np.array_equal(make().sample(rng(), 10_000), np.rint(np.maximum(real, 0)).astype(np.int64))
    sizes = make(min=50, max=400).sample(rng(), 10_000)
    assert sizes.dtype == np.int64
    assert np.array_equal(sizes, np.clip(np.rint(real), 50, 400).astype(np.int64))


def clamped_mean(ref: stats.rv_continuous, lo: float, hi: float) -> float:
    """E[clip(X, lo, hi)] from scipy: lo*F(lo) + hi*S(hi) + integral of x f(x) over [lo, hi]."""
    upper = hi * ref.sf(hi) if math.isfinite(hi) else 0.0
    return float(lo * ref.cdf(lo) + upper + ref.expect(lambda x: x, lb=lo, ub=hi))


@pytest.mark.parametrize("name", ["normal", "lognormal", "gev-etc-keys", "gp-etc-values"])
@pytest.mark.parametrize("clamp", ["min", "max", "both"])
def test_clamped_mean_matches_scipy(name: str, clamp: str) -> None:
    """mean() with clamps is E[clip(X, min, max)], as scipy integrates it."""
    make, ref = CONTINUOUS[name]
    lo, hi = math.ceil(ref.ppf(0.1)), math.floor(ref.ppf(0.95))
    bounds = {"min": {"min": lo}, "max": {"max": hi}, "both": {"min": lo, "max": hi}}[clamp]
    expected = clamped_mean(ref, bounds.get("min", 0), bounds.get("max", math.inf))
    assert make(**bounds).mean() == pytest.approx(expected, rel=1e-5)


def test_heavy_tail_without_mean_needs_a_max() -> None:
    """GP with shape >= 1 has no mean; with a max the clamped mean is finite."""
    assert d.GeneralizedPareto(0, 100, 1.2).mean() == math.inf
    capped = d.GeneralizedPareto(0, 100, 1.2, max=1 << 20)
    assert capped.mean() == pytest.approx(clamped_mean(stats.genpareto(c=1.2, scale=100), 0, 1 << 20), rel=1e-4)


def test_discrete_means_with_clamps() -> None:
    """Exact means agree with brute force over the support."""
    assert d.UniformSize(10, 1000, min=100, max=500).mean() == pytest.approx(
        np.clip(np.arange(10, 1001), 100, 500).mean())
    assert d.UniformSize(10, 20, min=30).mean() == 30
    assert d.WeightedChoice([10, 100, 1000], [1, 2, 3], max=500).mean() == pytest.approx((10 + 200 + 1500) / 6)
    assert d.Fixed(100, min=200).mean() == 200


def test_clamps_hold_and_negative_sizes_never_appear() -> None:
    """Samples stay in [min, max]; a normal with mass below zero never yields negatives."""
    sizes = d.GeneralizedPareto(0, 214.476, 0.348238, min=16, max=4096).sample(rng(), N_DRAWS)
    assert sizes.min() >= 16 and sizes.max() <= 4096
    assert d.Normal(10, 50).sample(rng(), N_DRAWS).min() == 0
    assert d.LogNormal(6, 1, min=16, max=1 << 20).describe() == "lognormal(mu=6, sigma=1) in [16, 1048576]"


def test_quantile_is_deterministic_per_index() -> None:
    """H0 (KS): hashed uniforms of consecutive indices are uniform on [0, 1); H0
    (Pearson): two salts give uncorrelated uniforms. quantile() of them is the rounded,
    clamped scipy ppf, so each index gets a fixed size."""
    u = d.hashed_uniform(np.arange(N_DRAWS), salt=7)
    assert stats.kstest(u, "uniform").pvalue > ALPHA
    assert np.array_equal(u, d.hashed_uniform(np.arange(N_DRAWS), salt=7))
    assert stats.pearsonr(u, d.hashed_uniform(np.arange(N_DRAWS), salt=8)).pvalue > ALPHA
    lengths = d.LogNormal.from_median_p99(20, 200, max=100).quantile(u[:1000])
    reference = stats.lognorm(s=math.log(10) / stats.norm.ppf(0.99), scale=20).ppf(u[:1000])
    assert lengths.dtype == np.int64 and np.array_equal(lengths, np.minimum(np.rint(reference), 100))


def test_empirical_from_csv_reads_cdf_and_memcached_stats_sizes(tmp_path) -> None:
    """Both file shapes turn into the same kind of table: `size,cdf` as given, counts
    (memcached `stats sizes`, or `size,count` CSV) cumulated and normalised."""
    cdf_file = tmp_path / "cdf.csv"
    cdf_file.write_text("size,cdf\n0,0\n100,0.25\n200,1\n")
    dist = d.Empirical.from_csv(cdf_file)
    assert dist.cdf.tolist() == [0, 0.25, 1] and dist.sizes.tolist() == [0, 100, 200]
    stats_file = tmp_path / "sizes.txt"
    stats_file.write_text("STAT 96 30\nSTAT 128 10\nSTAT 160 60\nEND\n")
    counts = d.Empirical.from_csv(stats_file)
    assert counts.sizes.tolist() == [96, 128, 160] and counts.cdf == pytest.approx([0.3, 0.4, 1.0])
    csv_counts = tmp_path / "counts.csv"
    csv_counts.write_text("# from a slab dump\n96,30\n128,10\n160,60\n")
    assert d.Empirical.from_csv(csv_counts).cdf == pytest.approx([0.3, 0.4, 1.0])
    assert d.Empirical.from_csv(cdf_file, kind="counts").cdf == pytest.approx([0, 0.2, 1.0])


@pytest.mark.parametrize("make, message", [
    (lambda: d.Uniform(0), "n: expected an integer >= 1"),
    (lambda: d.Zipf(10, 0), "alpha: expected a finite number > 0"),
    (lambda: d.Zipf(10, float("nan")), "alpha: expected a finite number"),
    (lambda: d.Zipf(10.5, 1), "n: expected an integer"),
    (lambda: d.Hotspot(10, 0.01, 0.8), "at least one hot and one cold key"),
    (lambda: d.Hotspot(10, 0.2, 1.5), "hot_share: expected a finite number >= 0.0 and <= 1.0"),
    (lambda: d.top_share(d.Uniform(10), 2), "fraction: expected"),
    (lambda: d.Sequential(10, start="a"), "start: expected an integer"),
    (lambda: d.Latest(10, 1.0, newest="a"), "advance: expected an integer"),
    (lambda: d.Fixed(-1), "value: expected a finite number >= 0"),
    (lambda: d.Fixed(10, min=20, max=10), "expected min <= max"),
    (lambda: d.Fixed(10, max=-1), "max: expected a whole number of bytes >= 0"),
    (lambda: d.UniformSize(20, 10), "lo <= hi"),
    (lambda: d.UniformSize(1.5, 10), "whole numbers"),
    (lambda: d.WeightedChoice([1, 2], [1]), "one weight per value"),
    (lambda: d.WeightedChoice([1, 2], [0, 0]), "at least one weight > 0"),
    (lambda: d.Normal(100, 0), "sd: expected a finite number > 0"),
    (lambda: d.LogNormal(1, -1), "sigma: expected"),
    (lambda: d.LogNormal.from_median_p99(500, 100), "p99: expected a size above the median"),
    (lambda: d.GEV(0, 0, 0.1), "scale: expected a finite number > 0"),
    (lambda: d.GeneralizedPareto(0, 1, float("inf")), "shape: expected a finite number"),
    (lambda: d.Empirical([]), "at least one"),
    (lambda: d.Empirical([(10, 0.5), (5, 1)]), "sizes strictly increasing"),
    (lambda: d.Empirical([(10, 0.5), (20, 0.9)]), "last cumulative fraction to be 1"),
])
def test_invalid_parameters_say_what_was_expected(make, message: str) -> None:
    """Bad parameters raise ValueError naming the parameter and what it should be."""
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_table_file_names_file_and_line(tmp_path) -> None:
    """A malformed row is reported with its file and line number."""
    bad = tmp_path / "bad.csv"
    bad.write_text("size,cdf\n10,0.5\nten,1\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: expected 'size,cdf' or 'size,count'"):
        d.Empirical.from_csv(bad)


def test_describe_names_distribution_and_parameters() -> None:
    """describe() is one line with the parameters, for previews and run.json."""
    assert d.Zipf(1000, 0.99).describe() == "zipf(n=1000, alpha=0.99)"
    assert d.GEV(30.7984, 8.20449, 0.078688).describe() == "gev(loc=30.7984, scale=8.20449, shape=0.078688)"
    assert d.Empirical([(0, 0), (100, 1)]).describe() == "empirical(2 points, 0..100 bytes)"
