"""`bench scenarios list | show | validate | schema | preview`: scenarios without a server.

`preview` answers "what will this scenario send?" before anyone points it at a cache:
op shares, how concentrated key popularity is (share of requests to the hottest 1% of
keys, observed and exact), key and value size percentiles, TTL shares and the bytes the
key spaces need when every key is cached. It draws the same stream a run would
(stream 0 of 1), so `--csv` shows exactly the ops a one-user run sends.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from argparse import Namespace
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from bench.scenario.distributions import top_share
from bench.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from bench.scenario.model import Scenario, load_scenario, resolve_scenario, scenario_names
from bench.scenario.slo import format_percent
from bench.workload.ops import Op, SpacePlan, Workload

#: Share of the key space whose requests `preview` reports ("top 1% of keys").
TOP_FRACTION = 0.01
#: Keys per key space sampled for size and working-set estimates.
SIZE_SAMPLE = 100_000
_PERCENTILES = (50, 90, 99, 100)


def command(args: Namespace) -> int:
    """Dispatch `bench scenarios <command>` (see bench/cli.py for the arguments)."""
    console = Console(highlight=False)
    handlers = {"list": _list, "show": _show, "validate": _validate, "schema": _schema,
                "preview": _preview}
    return handlers[args.scenarios_command](args, console)


# ------------------------------------------------------------------------------ list/show


def _list(args: Namespace, console: Console) -> int:
    """Every scenario in SCENARIO_DIRS with what it models; invalid ones say why."""
    table = Table(title="scenarios", title_justify="left")
    for column in ("name", "description", "key spaces", "load"):
        table.add_column(column)
    status = EXIT_OK
    for name in scenario_names():
        try:
            scn = load_scenario(name)
        except InputError as err:
            table.add_row(name, f"[red]invalid: {err}[/red]", "", "")
            status = EXIT_BAD_INPUT
            continue
        table.add_row(name, scn.description, ", ".join(ks.name for ks in scn.keyspaces),
                      _load_text(scn))
    console.print(table)
    return status


def _load_text(scn: Scenario) -> str:
    """`open 20000 ops/s, 60s` or `closed 16 users, 60s`."""
    load = scn.load
    shape = f"open {load.rate:,.0f} ops/s" if load.mode == "open" else f"closed {load.users} users"
    return f"{shape}, {load.duration:g}s"


def _show(args: Namespace, console: Console) -> int:
    """The scenario as validated, defaults filled in, as YAML (valid input again)."""
    scn = load_scenario(args.name)
    console.print(f"# {scn.source}", markup=False)
    console.print(yaml.safe_dump(scn.to_json(), sort_keys=False, width=100), markup=False,
                  end="")
    return EXIT_OK


def _validate(args: Namespace, console: Console) -> int:
    """Validate files in order; the first bad one raises (exit 2 with its message)."""
    for file in args.files:
        if not Path(file).is_file():
            raise InputError("no such file", file=file)
        scn = load_scenario(file)
        console.print(f"ok  {file}: {scn.name} ({len(scn.keyspaces)} key spaces)", markup=False)
    return EXIT_OK


def _schema(args: Namespace, console: Console) -> int:
    """The JSON Schema of scenario files (for editors' YAML language servers)."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cachebench scenario"
    print(json.dumps(schema, indent=2))
    return EXIT_OK


# ------------------------------------------------------------------------------ preview


@dataclass
class SpacePreview:
    """What one key space's ops look like in a preview."""

    name: str
    keys: int
    popularity: str
    requests: int = 0
    top_share_observed: float | None = None
    top_share_expected: float | None = None
    mean_key_bytes: float = 0.0
    mean_value_bytes: float = 0.0

    @property
    def working_set_bytes(self) -> float:
        """Keys and values of every key (data only: no per-item server overhead)."""
        return self.keys * (self.mean_key_bytes + self.mean_value_bytes)


@dataclass
class Preview:
    """The numbers `bench scenarios preview` prints (a pure function of scenario, seed, ops)."""

    ops: int
    op_shares: dict[str, float] = field(default_factory=dict)
    ttl_shares: dict[float, float] = field(default_factory=dict)
    key_length: dict[int, float] = field(default_factory=dict)
    value_size: dict[int, float] = field(default_factory=dict)
    spaces: list[SpacePreview] = field(default_factory=list)

    @property
    def working_set_bytes(self) -> float:
        return sum(s.working_set_bytes for s in self.spaces)


def requested_keys(op: Op) -> tuple[str, ...]:
    """The keys an op requests, as popularity counts them: a batch's keys, else the first
    (check keys and lock instances are companions of the first key, not requests)."""
    return op.keys if op.action == "get_multi" else op.keys[:1]


def preview(scn: Scenario, ops: int, seed: int | None = None) -> Preview:
    """Draw `ops` ops of stream 0 of 1 and summarise them (see the module docstring)."""
    workload = Workload(scn, seed)
    drawn = list(itertools.islice(workload.stream(0, 1), ops))
    result = Preview(ops=len(drawn))
    if not drawn:
        return result
    total = len(drawn)
    kinds = Counter(f"{scn.keyspaces[op.space].name}/{op.kind}" for op in drawn)
    result.op_shares = {k: n / total for k, n in kinds.most_common()}
    ttls = Counter(op.ttl for op in drawn)
    result.ttl_shares = {t: n / total for t, n in ttls.most_common()}
    key_lengths = np.array([len(k) for op in drawn for k in requested_keys(op)])
    sizes = np.array([op.value_size for op in drawn])
    result.key_length = _percentiles(key_lengths)
    result.value_size = _percentiles(sizes)
    result.spaces = [_space_preview(workload, i, drawn) for i in range(len(scn.keyspaces))]
    return result


def _percentiles(values: np.ndarray) -> dict[int, float]:
    return {p: float(np.percentile(values, p)) for p in _PERCENTILES}


def _space_preview(workload: Workload, index: int, drawn: list[Op]) -> SpacePreview:
    """Popularity concentration and sizes of key space `index`."""
    space = workload.scenario.keyspaces[index]
    requests = Counter(k for op in drawn if op.space == index for k in requested_keys(op))
    if space.trace is not None:
        return _trace_preview(space.name, workload.trace.ops, sum(requests.values()))
    plan = workload.plans[index]
    pop = plan.popularity
    out = SpacePreview(space.name, space.keys, pop.describe(), sum(requests.values()))
    top = math.floor(TOP_FRACTION * space.keys + 1e-9)
    if top >= 1 and out.requests:
        counts = sorted(requests.values(), reverse=True)
        out.top_share_observed = sum(counts[:top]) / out.requests
        out.top_share_expected = top_share(pop, TOP_FRACTION)
    out.mean_key_bytes, out.mean_value_bytes = sampled_sizes(plan)
    return out


def sampled_sizes(plan: SpacePlan, sample: int = SIZE_SAMPLE) -> tuple[float, float]:
    """Mean key bytes and mean value bytes of a key space, from up to `sample` of its
    keys (all of them in a smaller space)."""
    keys = plan.space.keys
    chosen = np.arange(min(keys, sample))
    if keys > sample:
        chosen = np.random.default_rng(0).choice(keys, sample, replace=False)
    return (float(np.mean([len(k) for k in plan.keys_for(chosen)])),
            float(plan.sizes(chosen).mean()))


def _trace_preview(name: str, ops: list[Op], requests: int) -> SpacePreview:
    """A trace's key space: its distinct keys, each with the last value size it had."""
    sizes = {op.keys[0]: op.value_size for op in ops}
    return SpacePreview(name, len(sizes), "trace", requests,
                        mean_key_bytes=float(np.mean([len(k) for k in sizes])),
                        mean_value_bytes=float(np.mean(list(sizes.values()))))


def _preview(args: Namespace, console: Console) -> int:
    """Print the preview tables; with --csv also write the op stream."""
    if args.ops < 1:
        raise InputError(f"expected --ops >= 1, got {args.ops}", field="--ops")
    scn = load_scenario(args.name)
    seed = scn.seed if args.seed is None else args.seed
    if not 0 <= seed < 2**63:
        raise InputError(f"expected a seed from 0 to 2^63-1, got {seed}", field="--seed")
    if args.csv:
        write_csv(scn, seed, args.ops, Path(args.csv))
    result = preview(scn, args.ops, seed)
    console.print(f"[bold]{scn.name}[/bold]: {result.ops:,} ops of stream 0/1, seed {seed} "
                  f"({resolve_scenario(args.name)})")
    for table in _tables(result):
        console.print(table)
    return EXIT_OK


def write_csv(scn: Scenario, seed: int, ops: int, path: Path) -> None:
    """`op,key,value_size,ttl` per op; a batch's keys are space-separated (keys have none)."""
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["op", "key", "value_size", "ttl"])
            for op in itertools.islice(Workload(scn, seed).stream(0, 1), ops):
                writer.writerow([op.action, " ".join(op.keys), op.value_size, f"{op.ttl:g}"])
    except OSError as err:
        raise InputError(f"cannot write the CSV: {err.strerror}", file=str(path),
                         field="--csv") from None


def _tables(result: Preview) -> list[Table]:
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
        spaces.add_row(s.name, s.popularity, f"{s.requests:,}", _share(s.top_share_observed),
                       _share(s.top_share_expected))
        memory.add_row(s.name, f"{s.keys:,}", f"{s.mean_key_bytes:.1f} B",
                       format_bytes(s.mean_value_bytes), format_bytes(s.working_set_bytes))
    memory.add_row("total", "", "", "", format_bytes(result.working_set_bytes))
    sizes = _table("sizes (bytes)", "", *(f"p{p}" if p < 100 else "max" for p in _PERCENTILES))
    sizes.add_row("key length", *(f"{v:,.0f}" for v in result.key_length.values()))
    sizes.add_row("value size", *(f"{v:,.0f}" for v in result.value_size.values()))
    ttls = _table("TTL shares (TTL each op would write with)", "ttl", "share")
    for ttl, share in list(result.ttl_shares.items())[:12]:
        ttls.add_row("no expiry" if ttl == 0 else _duration(ttl), format_percent(round(share, 4)))
    if len(result.ttl_shares) > 12:
        ttls.add_row(f"... {len(result.ttl_shares) - 12} more", "")
    return [ops, spaces, memory, sizes, ttls]


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def format_bytes(value: float) -> str:
    """Bytes for people: 1536 -> `1.5 KiB`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TiB"


def _duration(seconds: float) -> str:
    """3600 -> `1h`, 90 -> `1.5m`, 0.25 -> `250ms`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"
