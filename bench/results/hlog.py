"""HdrHistogram interval log, format version 1.3 (tagged lines), written and read here.

Why our own: hdrh's HistogramLogWriter writes version 1.2 without tags and its reader
does not handle tags, negative timestamps or truncated files. The format is the one
HdrHistogram's Java tools read (HistogramLogProcessor, HistogramLogAnalyzer):

    #[Histogram log format version 1.3]
    #[StartTime: 1764072000.000 (seconds since epoch), 2026-11-25T12:00:00Z]
    #[BaseTime: 1764072000.000 (seconds since epoch)]
    #[cachebench: values in microseconds; <comment>]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
    Tag=get,0.000,1.000,0.532,HISTFAAAA...

StartTimestamp is seconds after BaseTime; Interval_Max is in milliseconds (values are
microseconds), as HdrHistogram's writer does with a max unit ratio of 1000. Timestamps
are written to the millisecond. Java tools skip intervals that start before StartTime,
so callers pass a `start_time` at or before the first interval start.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, NamedTuple, TextIO

from hdrh.histogram import HdrHistogram

from bench.errors import InputError
from bench.results.histograms import decode_histogram, encode_histogram

__all__ = ["FORMAT_VERSION", "HlogEntry", "HlogWriter", "parse_interval", "read_hlog"]

FORMAT_VERSION = "1.3"
_LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
_TAG = re.compile(r"[^,\s]+")
_TIME_HEADER = re.compile(r"#\[(StartTime|BaseTime): *([-+0-9.eE]+)")


class HlogEntry(NamedTuple):
    """One interval histogram: `start` in epoch seconds, `length` in seconds."""

    tag: str | None
    start: float
    length: float
    histogram: HdrHistogram


class HlogWriter:
    """Writes the header at once, then one line per `write`; `flush` after each batch.

    Flushing per batch (not per line, not only at close) means an interrupted run
    leaves a file whose every complete line is readable.
    """

    def __init__(self, fileobj: TextIO, start_time: float, comment: str | None = None) -> None:
        """`start_time` (epoch s) is both StartTime and BaseTime, rounded to the ms."""
        if comment is not None and ("\n" in comment or "]" in comment):
            raise ValueError(f"hlog comment must be one line without ']': {comment!r}")
        self._file = fileobj
        self._base = round(start_time, 3)
        stamp = datetime.fromtimestamp(self._base, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        note = "cachebench: values in microseconds" + (f"; {comment}" if comment else "")
        fileobj.write(f"#[Histogram log format version {FORMAT_VERSION}]\n"
                      f"#[StartTime: {self._base:.3f} (seconds since epoch), {stamp}]\n"
                      f"#[BaseTime: {self._base:.3f} (seconds since epoch)]\n"
                      f"#[{note}]\n{_LEGEND}\n")
        self.flush()

    def write(self, tag: str, start_epoch: float, length_s: float,
              histogram: HdrHistogram) -> None:
        """Append one tagged interval line (not flushed: call `flush` after the batch)."""
        if not _TAG.fullmatch(tag):
            raise ValueError(f"hlog tag must be non-empty without commas or spaces: {tag!r}")
        max_ms = histogram.get_max_value() / 1000
        self._file.write(f"Tag={tag},{start_epoch - self._base:.3f},{length_s:.3f},"
                         f"{max_ms:.3f},{encode_histogram(histogram)}\n")

    def flush(self) -> None:
        """Push written lines to the OS, so readers (and a crash) see whole lines."""
        self._file.flush()


def read_hlog(path: str | Path) -> Iterator[HlogEntry]:
    """The interval histograms of a log, in file order, with epoch start times.

    A last line without its newline is a write cut short by an interrupted run: it is
    skipped if it does not parse. Any other malformed line raises InputError naming
    the file and line. Timestamps are relative to BaseTime (else StartTime, else 0).
    """
    base: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8", newline="") as lines:
            for number, line in enumerate(lines, start=1):
                entry = _parse_line(line, base, path, number)
                if entry is not None:
                    yield entry
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the histogram log: {exc}", file=str(path)) from None


def _parse_line(line: str, base: dict[str, float], path: str | Path,
                number: int) -> HlogEntry | None:
    """The entry on one line, or None for headers, comments and a cut-short last line."""
    text = line.rstrip("\r\n")
    if not text or text.startswith('"StartTimestamp"'):
        return None
    if text.startswith("#"):
        _read_time_header(text, base)
        return None
    try:
        return parse_interval(text, base.get("BaseTime", base.get("StartTime", 0.0)))
    except ValueError as exc:
        if line.endswith("\n"):
            raise InputError(f"malformed histogram log line ({exc})",
                             file=str(path), line=number) from None
        return None


def _read_time_header(text: str, base: dict[str, float]) -> None:
    """Record a StartTime/BaseTime header into `base`; other comments are ignored."""
    match = _TIME_HEADER.match(text)
    if match:
        base[match.group(1)] = float(match.group(2))


def parse_interval(text: str, base: float) -> HlogEntry:
    """One interval line, `[Tag=t,]start,length,max,histogram`, `start` relative to `base`;
    ValueError if malformed. Also for readers that follow a log as it grows."""
    tag = None
    if text.startswith("Tag="):
        tag, _, text = text[4:].partition(",")
    fields = text.split(",")
    if len(fields) != 4:
        raise ValueError(f"expected [Tag=...,]start,length,max,histogram, "
                         f"got {len(fields)} fields")
    start, length, _max = (float(f) for f in fields[:3])
    return HlogEntry(tag, round(base + start, 3), length, decode_histogram(fields[3]))
