"""Interval log: exact round trip, HdrHistogram's Java tools read it, damaged files."""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.errors import InputError
from bench.results.hlog import HlogWriter, read_hlog
from bench.results.histograms import (add_histogram, counts_array, histogram_from_values,
                                      new_histogram)

JAR = "/usr/share/java/hdrhistogram.jar"
START = 1764072000.0
TAGS = ("get", "get.service", "set")


def write_log(path: Path, intervals: int = 3, comment: str | None = "test") -> list[tuple]:
    """A log of `intervals` seconds with one histogram per tag; returns what was written."""
    rng = np.random.default_rng(11)
    written = []
    with open(path, "w", encoding="utf-8") as out:
        writer = HlogWriter(out, START, comment)
        for second in range(intervals):
            for tag in TAGS:
                values = np.exp(rng.uniform(np.log(50), np.log(200_000), 2_000)).astype(np.int64)
                histogram = histogram_from_values(values)
                writer.write(tag, START + second, 1.0, histogram)
                written.append((tag, START + second, 1.0, histogram))
            writer.flush()
    return written


def java_value_at_percentile(histogram, percentile: float) -> int:
    """HdrHistogram Java 2.1.11's getValueAtPercentile.

    It takes the ceil(percentile * total) smallest values, where hdrh (like the C
    library) rounds half up: at p99.99 of 6000 values Java counts 6000, hdrh 5999.
    """
    wanted = max(1, math.ceil(math.nextafter(percentile, -math.inf) / 100 * histogram.total_count))
    index = int(np.searchsorted(np.cumsum(counts_array(histogram)), wanted))
    return histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))


def test_header_is_version_1_3_with_times_units_and_legend(tmp_path: Path) -> None:
    path = tmp_path / "a.hlog"
    write_log(path, intervals=1, comment="Tag=<op> latency")
    lines = path.read_text().splitlines()
    assert lines[:5] == [
        "#[Histogram log format version 1.3]",
        "#[StartTime: 1764072000.000 (seconds since epoch), 2025-11-25T12:00:00Z]",
        "#[BaseTime: 1764072000.000 (seconds since epoch)]",
        "#[cachebench: values in microseconds; Tag=<op> latency]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"']
    assert lines[5].startswith("Tag=get,0.000,1.000,")


def test_round_trip_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "a.hlog"
    written = write_log(path)
    entries = list(read_hlog(path))
    assert [(e.tag, e.start, e.length) for e in entries] == [w[:3] for w in written]
    for entry, (*_, histogram) in zip(entries, written):
        assert entry.histogram.encode() == histogram.encode()
        assert entry.histogram.total_count == histogram.total_count
        for percentile in (50, 99, 99.9, 100):
            assert entry.histogram.get_value_at_percentile(percentile) == \
                histogram.get_value_at_percentile(percentile)


def test_hdrhistogram_java_log_processor_reads_the_log(tmp_path: Path) -> None:
    path = tmp_path / "a.hlog"
    gets = [histogram for tag, _, _, histogram in write_log(path) if tag == "get"]
    out = tmp_path / "java"
    subprocess.run(["java", "-cp", JAR, "org.HdrHistogram.HistogramLogProcessor", "-i", str(path),
                    "-tag", "get", "-outputValueUnitRatio", "1000", "-csv", "-o", str(out)],
                   check=True, capture_output=True, timeout=120)
    with open(out, newline="") as lines:
        rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    total = new_histogram()
    for row, histogram in zip(rows, gets, strict=True):
        add_histogram(total, histogram)
        assert (row["Int_Count"], row["Total_Count"]) == \
            (str(histogram.total_count), str(total.total_count))
        assert row["Int_Max"] == f"{histogram.get_max_value() / 1000:.3f}"
    for column, percentile in (("Total_50%", 50), ("Total_90%", 90), ("Total_99%", 99),
                               ("Total_99.9%", 99.9), ("Total_99.99%", 99.99)):
        assert rows[-1][column] == f"{java_value_at_percentile(total, percentile) / 1000:.3f}"
    assert rows[-1]["Total_Max"] == f"{total.get_max_value() / 1000:.3f}"


def test_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.hlog"
    write_log(path, intervals=1)
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    path.write_text(text + last[: len(last) // 2])
    assert [e.tag for e in read_hlog(path)] == list(TAGS)


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "a.hlog"
    write_log(path, intervals=1)
    lines = path.read_text().splitlines(keepends=True)
    lines[6] = "Tag=get.service,0.000,1.000,0.100,HISTnotbase64\n"
    path.write_text("".join(lines))
    with pytest.raises(InputError, match="undecodable histogram") as caught:
        list(read_hlog(path))
    assert (caught.value.file, caught.value.line) == (str(path), 7)


def test_untagged_lines_without_base_time_are_relative_to_start_time(tmp_path: Path) -> None:
    histogram = histogram_from_values(np.array([5, 7]))
    path = tmp_path / "other-tool.hlog"
    path.write_text("#[StartTime: 100.000 (seconds since epoch), x]\n"
                    f"0.500,1.000,0.007,{histogram.encode().decode()}\n")
    (entry,) = read_hlog(path)
    assert (entry.tag, entry.start, entry.length, entry.histogram.total_count) == \
        (None, 100.5, 1.0, 2)


@pytest.mark.parametrize("tag", ["", "get multi", "get,x", "get\n"])
def test_tags_with_separators_are_refused(tmp_path: Path, tag: str) -> None:
    with open(tmp_path / "a.hlog", "w") as out:
        with pytest.raises(ValueError, match="hlog tag"):
            HlogWriter(out, START).write(tag, START, 1.0, new_histogram())


def test_missing_log_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the histogram log") as caught:
        list(read_hlog(tmp_path / "none.hlog"))
    assert caught.value.file == str(tmp_path / "none.hlog")
