"""What `bench cluster up|status|down` shows: the local fleet as a table, or as JSON.

JSON is for scripts (`--json`): the same state `bench.cluster` records in state.json,
plus each server's health when it was asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.cluster import ClusterState


def print_state(state: ClusterState, as_json: bool, title: str,
                health: dict[str, str] | None = None) -> None:
    """The servers as a table (or JSON) and the `--target` names to use."""
    if as_json:
        servers = [server.to_dict() | ({"health": health[server.name]} if health else {})
                   for server in state.servers]
        print(json.dumps({"state_dir": str(state.state_dir), "started": state.started,
                          "urls": state.urls, "servers": servers}, indent=2))
        return
    table = Table(title=f"local cluster ({title}) in {state.state_dir}", title_justify="left")
    for column in ("name", "kind", "address", "pid", "health" if health else "log"):
        table.add_column(column, overflow="fold")
    for server in state.servers:
        last = health[server.name] if health else Path(server.log).name
        table.add_row(server.name, server.kind, server.address, str(server.pid), last)
    Console(highlight=False).print(table)
    for name, url in state.urls.items():
        print(f"  --target local:{name:<14} {url}")


def print_stopped(state_dir: Path, outcome: dict[str, str], as_json: bool) -> None:
    """What `cluster_down` did: servers stopped, and those left alone."""
    if as_json:
        print(json.dumps({"state_dir": str(state_dir.absolute()), "servers": outcome}))
    elif not outcome:
        print(f"no local cluster was running in {state_dir}")
    else:
        foreign = [name for name, result in outcome.items() if result == "foreign"]
        print(f"stopped {len(outcome) - len(foreign)} servers from {state_dir}"
              + (f"; left alone (pid reused by another program): {', '.join(foreign)}"
                 if foreign else ""))
