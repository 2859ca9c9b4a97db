"""The shared histogram maths: percentiles of segments with zero counts, the text encoding."""

from __future__ import annotations

import numpy as np
import pytest

from bench.results.histograms import (counts_array, decode_histogram, default_layout,
                                      encode_histogram, histogram_from_values,
                                      segment_percentiles, sparse_counts)

WANTED = [0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_segments_over_shared_bins_with_zero_counts_equal_hdrh(seed: int) -> None:
    """compare's bootstrap hands every resample over the union of bins, zeros included."""
    rng = np.random.default_rng(seed)
    hists = [histogram_from_values(np.clip(rng.lognormal(5 + i, 1.0, 500), 1, 6e7)
                                   .astype(np.int64)) for i in range(4)]
    bins = np.unique(np.concatenate([sparse_counts(h)[0] for h in hists]))
    dense = np.stack([counts_array(h)[bins].astype(np.int64) for h in hists])
    assert (dense == 0).any()  # the case under test
    values = segment_percentiles(np.arange(len(hists) + 1) * len(bins),
                                 np.tile(bins, len(hists)), dense.ravel(), WANTED,
                                 default_layout())
    assert values.tolist() == [[h.get_value_at_percentile(p) for p in WANTED] for h in hists]


def test_encoding_round_trips_counts_min_and_max() -> None:
    hist = histogram_from_values(np.array([3, 40, 40, 5_000, 2_000_000]))
    back = decode_histogram(encode_histogram(hist))
    assert np.array_equal(counts_array(back), counts_array(hist))
    assert (back.get_min_value(), back.get_max_value(), back.total_count) == \
        (hist.get_min_value(), hist.get_max_value(), 5)


@pytest.mark.parametrize("text", ["", "not-base64!", "SElTVEZBQUFBQQ=="])
def test_decoding_what_is_not_a_histogram_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="undecodable histogram"):
        decode_histogram(text)
