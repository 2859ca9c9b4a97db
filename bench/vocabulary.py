"""The words every stage shares: op names, error kinds, and which op a mix entry runs.

Why one module: a scenario names ops, the executor records them, an SLO judges them,
the analyzer and the outputs group them; errors are counted by kind in the recorder,
written as timeline columns and judged by the error budget. When each stage kept its
own list, adding an op to one and not the other made SLOs silently refuse it. Every
stage imports these names from here, and the lists that depend on others are derived
from them. Bottom layer: imports nothing from `bench`.
"""

from __future__ import annotations

from typing import Protocol

#: Single protocol calls: one request each, recorded under their own name.
SIMPLE_OPS = ("get", "get_multi", "set", "add", "replace", "delete", "incr", "decr", "touch",
              "hget", "hset")
#: Composite MediaWiki patterns: each runs simple ops and is recorded as those.
PATTERN_OPS = ("wan_get", "wan_delete", "redlock", "ratelimit")
#: What a scenario's op mix may name.
ALL_OPS = SIMPLE_OPS + PATTERN_OPS
#: The op names results carry (hlog tags, timeline rows), hence all an SLO may judge:
#: a pattern never appears there, only the simple ops it ran.
RECORDED_OPS = SIMPLE_OPS
#: The ops that look keys up: a hit ratio is theirs (a delete of a missing key or an
#: incr of a new counter is not a cache miss).
LOOKUP_OPS = ("get", "get_multi", "hget")
#: Ops that need numbers in their keys (memcached refuses incr on anything else).
COUNTER_OPS = ("incr", "decr", "ratelimit")

ERROR_TIMEOUT = "timeout"
ERROR_CONNECTION = "connection"
ERROR_SERVER = "server"
ERROR_CLIENT = "client"
#: The kinds counted apart (timeline.csv's errors_<kind> columns, in this order).
ERROR_KINDS = (ERROR_TIMEOUT, ERROR_CONNECTION, ERROR_SERVER, ERROR_CLIENT)
#: An exception no adapter recognises: it counts in `errors`, in no kind's column.
ERROR_OTHER = "other"


class _MixEntry(Protocol):
    """What `entry_op` needs of a scenario's mix entry."""

    @property
    def op(self) -> str | None: ...


def entry_op(name: str, entry: _MixEntry) -> str:
    """The op a mix entry runs: its `op:` if given, else the entry's own name."""
    return entry.op or name
