"""What `bench scenarios` shows: the scenario list, a scenario as YAML, and previews.

Scenario files are read before any server is involved, so these views take the
validated `Scenario` (or the `InputError` that refused it) and a `Preview`, and print.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from bench.errors import InputError
from bench.scenario.model import Scenario
from bench.units import format_duration, format_percent, format_size, format_whole
from bench.workload.preview import PERCENTILES, TOP_FRACTION, Preview

#: TTL rows a preview shows before summing up the rest.
SHOWN_TTLS = 12


def _console() -> Console:
    return Console(highlight=False)


def print_list(entries: list[tuple[str, Scenario | InputError]]) -> None:
    """Every scenario by name with what it models; an invalid one says why."""
    table = Table(title="scenarios", title_justify="left")
    for column in ("name", "description", "key spaces", "load"):
        table.add_column(column)
    for name, scn in entries:
        if isinstance(scn, InputError):
            table.add_row(name, f"[red]invalid: {scn}[/red]", "", "")
        else:
            table.add_row(name, scn.description, ", ".join(ks.name for ks in scn.keyspaces),
                          load_text(scn))
    _console().print(table)


def load_text(scn: Scenario) -> str:
    """`open 20000 ops/s, 60s` or `closed 16 users, 60s`."""
    load = scn.load
    shape = (f"open {format_whole(load.rate)} ops/s" if load.mode == "open"
             else f"closed {load.users} users")
    return f"{shape}, {load.duration:g}s"


def print_yaml(scn: Scenario) -> None:
    """The scenario as validated, defaults filled in, as YAML (valid input again)."""
    console = _console()
    console.print(f"# {scn.source}", markup=False)
    console.print(yaml.safe_dump(scn.to_json(), sort_keys=False, width=100), markup=False,
                  end="")


def print_valid(file: str, scn: Scenario) -> None:
    """The line `bench scenarios validate` prints for a file that passed."""
    _console().print(f"ok  {file}: {scn.name} ({len(scn.keyspaces)} key spaces)", markup=False)


def print_schema(schema: dict[str, Any]) -> None:
    print(json.dumps(schema, indent=2))


def print_preview(scn: Scenario, seed: int, result: Preview) -> None:
    """A header line naming the scenario, seed and file, then the preview tables."""
    console = _console()
    console.print(f"[bold]{scn.name}[/bold]: {result.ops:,} ops of stream 0/1, seed {seed} "
                  f"({scn.source})")
    for table in preview_tables(result):
        console.print(table)


def preview_tables(result: Preview) -> list[Table]:
    """The preview as rich tables: ops, key spaces, sizes, TTLs."""
    ops = _table("op shares", "key space/op", "share")
    for name, share in result.op_shares.items():
        ops.add_row(name, format_percent(round(share, 4)))
    top = format_percent(TOP_FRACTION)
    spaces = _table(f"popularity: share of requests to the top {top} of keys", "key space",
                    "popularity", "requests", "observed", "exact")
    memory = _table("working set (every key cached; keys + values, no server overhead)",
                    "key space", "keys", "mean key", "mean value", "bytes")
    for s in result.spaces:
        spaces.add_row(s.name, s.popularity, f"{s.requests:,}",
                       format_percent(s.top_share_observed, 1),
                       format_percent(s.top_share_expected, 1))
        memory.add_row(s.name, f"{s.keys:,}", f"{s.mean_key_bytes:.1f} B",
                       format_size(s.mean_value_bytes), format_size(s.working_set_bytes))
    memory.add_row("total", "", "", "", format_size(result.working_set_bytes))
    sizes = _table("sizes (bytes)", "", *(f"p{p}" if p < 100 else "max" for p in PERCENTILES))
    sizes.add_row("key length", *map(format_whole, result.key_length.values()))
    sizes.add_row("value size per request", *map(format_whole, result.value_size.values()))
    sizes.add_row("value size per key (stored)",
                  *map(format_whole, result.value_size_per_key.values()))
    ttls = _table("TTL shares (TTL each op would write with)", "ttl", "share")
    for ttl, share in list(result.ttl_shares.items())[:SHOWN_TTLS]:
        ttls.add_row("no expiry" if ttl == 0 else format_duration(ttl),
                     format_percent(round(share, 4)))
    if len(result.ttl_shares) > SHOWN_TTLS:
        ttls.add_row(f"... {len(result.ttl_shares) - SHOWN_TTLS} more", "")
    return [ops, spaces, memory, sizes, ttls]


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table
