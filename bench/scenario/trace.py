"""Twitter cache-trace CSV files: read and checked, every bad row named by its line.

A trace key space (`trace: {file: ...}` in a scenario) replays such a file instead of
drawing ops: the scenario validates the file with `read_trace` so that a bad row is
reported like any other mistake in the scenario, and the workload replays the rows.
Format (Twitter's cache traces, Yang et al., OSDI 2020): `timestamp,key,key_size,value_size,
client_id,operation,ttl`, one op per row; an optional header row and `#` comment rows are skipped.
"""

from __future__ import annotations

import csv
import math

from bench.errors import InputError

#: Twitter cache-trace operations -> the op the executor runs.
TRACE_OPS = {"get": "get", "gets": "get", "set": "set", "cas": "set", "append": "set",
             "prepend": "set", "add": "add", "replace": "replace", "delete": "delete",
             "incr": "incr", "decr": "decr"}
TRACE_COLUMNS = ("timestamp", "key", "key_size", "value_size", "client_id", "operation", "ttl")


def read_trace(file: str) -> list[tuple[float, str, int, int, str, float]]:
    """(timestamp, key, key_size, value_size, operation, ttl) rows of a trace CSV."""
    rows = []
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.reader(handle), 1):
                if not row or row[0].startswith("#") or (line == 1 and row[0] == "timestamp"):
                    continue
                rows.append(_trace_row(row, file, line))
    except OSError as err:
        raise InputError(f"cannot read the trace: {err.strerror}", file=file) from None
    except UnicodeDecodeError:
        raise InputError("cannot read the trace: not UTF-8 text", file=file) from None
    if not rows:
        raise InputError("the trace has no rows; expected " + ",".join(TRACE_COLUMNS),
                         file=file)
    return rows


def _trace_row(row: list[str], file: str, line: int) -> tuple[float, str, int, int, str, float]:
    """One checked trace row; InputError with the column that is wrong."""
    if len(row) != len(TRACE_COLUMNS):
        raise InputError(f"expected {len(TRACE_COLUMNS)} columns ({','.join(TRACE_COLUMNS)}), "
                         f"got {len(row)}", file=file, line=line)
    stamp, key, key_size, value_size, _client, operation, ttl = (c.strip() for c in row)
    if operation not in TRACE_OPS:
        raise InputError(f"unknown operation {operation!r}; expected one of "
                         f"{', '.join(TRACE_OPS)}", file=file, line=line, field="operation")
    if not key or any(c.isspace() for c in key):
        raise InputError("expected a key without spaces", file=file, line=line, field="key")
    try:
        numbers = float(stamp), int(key_size), int(value_size), float(ttl)
    except ValueError:
        raise InputError("expected numbers in timestamp, key_size, value_size and ttl",
                         file=file, line=line) from None
    if not all(math.isfinite(x) and x >= 0 for x in numbers):
        raise InputError("expected numbers >= 0 in timestamp, key_size, value_size and ttl",
                         file=file, line=line)
    return numbers[0], key, numbers[1], numbers[2], operation, numbers[3]
