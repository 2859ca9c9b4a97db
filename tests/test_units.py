"""Quantities: what the formatters write for people, and what the parsers read back."""

from __future__ import annotations

import math

import pytest

from bench.units import (format_bandwidth, format_duration, format_ms, format_percent,
                         format_size, format_times, format_us, format_whole, parse_bandwidth,
                         parse_duration, parse_fraction)


@pytest.mark.parametrize("text", ["99.9%", "99.99%", "0.1%", "5%", "100%", "0%", "12.5%"])
def test_format_percent_writes_what_parse_fraction_reads(text: str) -> None:
    assert format_percent(parse_fraction(text)) == text


@pytest.mark.parametrize("seconds, text", [(3600, "1h"), (90, "1.5m"), (0.25, "250ms"),
                                           (86400 * 2, "2d"), (30, "30s")])
def test_format_duration_writes_what_parse_duration_reads(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("call, expected", [
    (lambda: format_percent(0.98077, 3), "98.077%"),
    (lambda: format_percent(0.04, 1, signed=True), "+4.0%"),
    (lambda: format_percent(-0.125, 1, signed=True), "-12.5%"),
    (lambda: format_ms(1234), "1.23"),
    (lambda: format_ms(1_500_000), "1,500"),
    (lambda: format_ms(1234, 3), "1.234"),
    (lambda: format_ms(-20, 3, signed=True), "-0.020"),
    (lambda: format_us(2000), "2 ms"),
    (lambda: format_us(500), "500 us"),
    (lambda: format_us(1_500_000), "1.5 s"),
    (lambda: format_whole(12345.6), "12,346"),
    (lambda: format_size(100), "100 B"),
    (lambda: format_size(1536), "1.5 KiB"),
    (lambda: format_size(3 * 2**30), "3.0 GiB"),
    (lambda: format_times(1.666), "1.67x"),
    (lambda: format_times(1.666, 1), "1.7x"),
])
def test_formats_for_people(call, expected: str) -> None:
    assert call() == expected


@pytest.mark.parametrize("formatter", [format_percent, format_ms, format_whole, format_times])
@pytest.mark.parametrize("missing", [None, math.nan])
def test_missing_numbers_print_as_a_dash(formatter, missing) -> None:
    assert formatter(missing) == "-"


@pytest.mark.parametrize("text, bytes_per_s", [
    ("10Gbit", 1.25e9), ("10Gb/s", 1.25e9), ("25Gbps", 3.125e9), ("1G", 1.25e8),
    ("1.25GB/s", 1.25e9), ("100MiB/s", 100 * 2**20), ("10 Gbit/s", 1.25e9)])
def test_parse_bandwidth_reads_link_speeds_in_bits_or_bytes(text: str, bytes_per_s: float) -> None:
    assert parse_bandwidth(text) == pytest.approx(bytes_per_s)
    assert format_bandwidth(parse_bandwidth("10Gbit")) == "10.0 Gbit/s"


@pytest.mark.parametrize("text", ["10", "fast", "10Q", "-1Gbit", "0Gbit"])
def test_parse_bandwidth_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="expected a bandwidth"):
        parse_bandwidth(text)
