"""`bench capacity memory | search | plan`: flags to plain arguments, stages, exit code.

The handlers only parse flags (a bad value names its flag, exit 2), call
bench.capacity, print through bench.output.capacity and write the result files.
`search` runs its probes through the driver, the same code as `bench run`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from bench.capacity.memory import WARMUP_SHARE, default_ops, pool_nodes, run_memory
from bench.capacity.slabs import SlabClasses
from bench.errors import EXIT_FAILED, EXIT_OK, InputError
from bench.output import capacity as view
from bench.output.console import task_progress
from bench.results import rundir
from bench.results.rundir import SUMMARY_JSON
from bench.scenario.model import Scenario, load_scenario
from bench.targets import parse_target
from bench.units import parse_bandwidth, parse_duration, parse_fraction, parse_rate, parse_size

T = TypeVar("T")
MEMORY_JSON, SEARCH_JSON, PLAN_JSON = "memory.json", "search.json", "plan.json"
#: Where search and plan directories go without --out (as `bench run`'s runs).
RESULTS_ROOT = Path("results")
#: The measurement was invalid (the load generator, not the cache, hit its limit).
#: bench.errors gets EXIT_INVALID with the validity verdict; use it once merged.
EXIT_INVALID = 4


def _parsed(parse: Callable[[str], T], value: str | None, flag: str) -> T | None:
    """A flag's value parsed (None when not given); a bad value names the flag."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as err:
        raise InputError(str(err), field=flag) from None


def _sizes(value: str | None, flag: str) -> list[int] | None:
    """`1GiB,2GiB,4GiB` -> bytes."""
    if value is None:
        return None
    sizes = [_parsed(parse_size, part.strip(), flag) for part in value.split(",") if part.strip()]
    if not sizes or any(s is None or s < 2**20 for s in sizes):
        raise InputError(f"expected sizes of at least 1MiB separated by commas, got {value!r}",
                         field=flag)
    return sizes  # type: ignore[return-value]


def _write_json(directory: str | None, name: str, data: dict[str, Any]) -> Path | None:
    """Write `name` into --out DIR (created); an unwritable place is the user's to fix."""
    if directory is None:
        return None
    path = Path(directory) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", file=str(path), field="--out") from None
    return path


def op_rate(args: Namespace, scenario: Scenario) -> float:
    """--rate, else the scenario's open-loop rate (what TTLs and LRU ages run against)."""
    rate = _parsed(parse_rate, args.rate, "--rate") or scenario.load.rate
    if not rate or not math.isfinite(rate) or rate <= 0:
        raise InputError("expected the op rate the model runs at: give --rate OPS "
                         "(the scenario has no open-loop rate)", field="--rate")
    return rate


def memory_nodes(args: Namespace) -> tuple[str, ...]:
    """--target's nodes (a memcached pool), else --nodes N named cache1..N."""
    if args.target:
        info = parse_target(args.target)
        if info.kind != "memcached":
            raise InputError(f"the memory model is memcached's; got a {info.kind} target",
                             field="--target")
        return pool_nodes(len(info.nodes), list(info.nodes))
    return pool_nodes(args.nodes)


def slab_classes(args: Namespace) -> SlabClasses:
    try:
        return SlabClasses(growth_factor=args.growth_factor, min_chunk=args.min_chunk)
    except ValueError as err:
        raise InputError(str(err), field="-f/-n") from None


def memory(args: Namespace) -> int:
    """`bench capacity memory SCENARIO`: the hit-ratio curve, no server needed."""
    scenario = load_scenario(args.scenario)
    target = _parsed(parse_fraction, args.target_hit_ratio, "--target-hit-ratio")
    if target is not None and not 0 < target < 1:
        raise InputError(f"expected a hit ratio between 0% and 100%, got {target:g}",
                         field="--target-hit-ratio")
    console = Console(highlight=False)
    with task_progress("simulating memory sizes", total=None, quiet=args.quiet) as advance:
        report = run_memory(
            scenario, nodes=memory_nodes(args), slabs=slab_classes(args),
            op_rate=op_rate(args, scenario), target=target,
            memories=_sizes(args.memory, "--memory"), ops=args.ops, warmup_ops=args.warmup_ops,
            sample_rate=_parsed(parse_fraction, args.sample_rate, "--sample-rate"),
            budget=args.budget, seed=args.seed, progress=lambda done, total: advance(1))
    for part in view.memory_tables(report):
        console.print(part)
    written = _write_json(args.out, MEMORY_JSON, report.to_json())
    if written:
        console.print(f"results: {written}", markup=False)
    return EXIT_OK


# ------------------------------------------------------------------------------ search


def probe_runner(args: Namespace, parent: Path, url: str) -> Callable[[float, str, int],
                                                                       tuple[dict[str, Any], str]]:
    """Each probe is `bench run` at one rate into parent/NN-phase-RATE, its output
    kept out of the terminal; only the first probe prefills (the cache stays warm).

    Through `driver.run_command`, the code of `bench run` itself. When the driver
    takes plain arguments (RunOptions), this is `driver.drive` + `summarize_run`.
    """
    from bench import driver

    def run(rate: float, phase: str, number: int) -> tuple[dict[str, Any], str]:
        out = parent / f"{number:02d}-{phase}-{rate:.0f}"
        flags = Namespace(
            scenario=args.scenario, target=url, rate=f"{rate:.3f}", closed=False,
            duration=args.probe_duration, warmup=args.probe_warmup,
            prefill=args.prefill if number == 1 else False, arrival=None, think=None,
            users=args.users, processes=args.processes, seed=None, out=str(out),
            slo=args.slo, timeout=args.timeout, ui=False, web_port=8089, master=False,
            master_bind_host="127.0.0.1", master_bind_port=5557, expect_workers=1,
            report=False, quiet=True)
        with contextlib.redirect_stdout(io.StringIO()):
            driver.run_command(flags)
        return json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8")), str(out)

    return run


def search(args: Namespace) -> int:
    """`bench capacity search SCENARIO --target URL`: the max rate within the SLO."""
    from bench import driver
    from bench.capacity.search import Search, SearchSettings

    scenario = load_scenario(args.scenario)
    slo = driver.resolve_slo(args, scenario)
    if slo is None or not (slo.objectives or slo.errors or slo.hit_ratio):
        raise InputError("the search needs an SLO to stay within: give --slo FILE or an "
                         "slo: block in the scenario", field="--slo")
    url = driver.resolve_target_url(args, scenario)
    nodes = len(parse_target(url).nodes)
    settings = SearchSettings(
        start_rate=_parsed(parse_rate, args.start_rate, "--start-rate")
        or scenario.load.rate or 1000.0,
        step=args.step, resolution=_parsed(parse_fraction, args.resolution, "--resolution"),
        confirmations=args.confirm,
        budget_s=_parsed(parse_duration, args.budget, "--budget"),
        max_rate=_parsed(parse_rate, args.max_rate, "--max-rate"),
        processes=(os.cpu_count() or 1) if args.processes == -1 else args.processes or 1)
    parent = rundir.new_run_dir(RESULTS_ROOT, f"search-{scenario.name}", out=args.out)
    console = Console(highlight=False)
    console.print(view.search_intro(scenario.name, url, settings, parent), markup=False)
    try:
        finder = Search(probe_runner(args, parent, url), settings, nodes,
                        progress=lambda probe, elapsed: console.print(
                            view.probe_line(probe, elapsed, settings.budget_s)))
    except ValueError as err:
        raise InputError(str(err), field="--step/--resolution/--confirm") from None
    result = finder.run()
    for part in view.search_tables(result):
        console.print(part)
    written = _write_json(str(parent), SEARCH_JSON, result.to_json())
    console.print(f"results: {written}", markup=False)
    return EXIT_INVALID if result.generator_limited else EXIT_OK


# ------------------------------------------------------------------------------ plan


def _growth(value: str) -> float:
    """`30%` or `0.3` a year, any size (150% is allowed: growth is not a fraction)."""
    text = value.strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < -1:
        raise ValueError(f"expected a yearly growth like 30%, got {value!r}")
    return number


def _years(value: str) -> float:
    """`1y`, `18mo`, `6m` (months), `90d` or a bare number of years."""
    text = value.strip().lower()
    suffix, per_year = next(((s, n) for s, n in (("mo", 12), ("y", 1), ("m", 12), ("d", 365))
                             if text.endswith(s)), ("", 1))
    try:
        years = float(text[:len(text) - len(suffix)]) / per_year
    except ValueError:
        years = math.nan
    if not math.isfinite(years) or years < 0:
        raise ValueError(f"expected a horizon like 1y, 18mo or 90d, got {value!r}")
    return years


def _measured(args: Namespace) -> Any:
    from bench.capacity.plan import Measured, measured_from_dir

    if (args.measured is None) == (args.node_rate is None):
        raise InputError("expected one of --measured DIR (a search or run directory) or "
                         "--node-rate OPS", field="--measured")
    if args.measured is not None:
        return measured_from_dir(args.measured)
    return Measured(node_rate=_parsed(parse_rate, args.node_rate, "--node-rate"),
                    source="--node-rate")


def plan(args: Namespace) -> int:
    """`bench capacity plan SCENARIO`: nodes, memory, network, connections, what binds."""
    from bench.capacity.plan import Forecast, Limits, make_plan
    from bench.capacity.stream import StreamSettings, sample_stream

    scenario = load_scenario(args.scenario)
    measured = _measured(args)
    forecast = Forecast(peak=_parsed(parse_rate, args.peak, "--peak"),
                        growth=_parsed(_growth, args.growth, "--growth"),
                        horizon_years=_parsed(_years, args.horizon, "--horizon"))
    target = _parsed(parse_fraction, args.target_hit_ratio, "--target-hit-ratio")
    budget = _parsed(parse_size, args.memory_budget, "--memory-budget")
    limits = Limits(node_memory=_parsed(parse_size, args.node_memory, "--node-memory"),
                    nic_bytes_per_s=_parsed(parse_bandwidth, args.nic, "--nic"),
                    headroom=_parsed(parse_fraction, args.headroom, "--headroom"),
                    spare=args.spare, target_hit_ratio=None if budget else target,
                    memory_budget=budget, gutter=args.gutter)
    if limits.node_memory < 2**20 or args.spare < 0 or limits.headroom >= 1:
        raise InputError("expected --node-memory of at least 1MiB, --spare >= 0 and "
                         "--headroom below 100%", field="--node-memory/--spare/--headroom")
    ops = args.ops or default_ops(scenario)
    stream = sample_stream(scenario, StreamSettings(
        ops=ops, warmup_ops=int(ops * WARMUP_SHARE), op_rate=forecast.planned_rate,
        sample_rate=_parsed(parse_fraction, args.sample_rate, "--sample-rate"),
        budget=args.budget, seed=args.seed), slab_classes(args))
    result = make_plan(scenario, stream, measured, forecast, limits, pool_nodes)
    console = Console(highlight=False)
    for part in view.plan_tables(result):
        console.print(part)
    out = rundir.new_run_dir(RESULTS_ROOT, f"plan-{scenario.name}", out=args.out)
    written = view.render_plan(result, out)
    _write_json(str(out), PLAN_JSON, result.to_json())
    console.print(f"report:  {written[1]}\nresults: {out}", markup=False)
    return EXIT_OK


def benchmark(args: Namespace) -> int:
    """`bench capacity benchmark` (make perf): exit 1 when a check misses its bound."""
    from bench.capacity import benchmark as checks

    console = Console(highlight=False)
    results = [checks.sampling_error()] + ([] if args.quick else [checks.speed()])
    console.print(view.benchmark_table(results))
    return EXIT_OK if all(c.passed for c in results) else EXIT_FAILED


def command(args: Namespace) -> int:
    """Dispatch `bench capacity <command>` (bench/cli.py defines the flags)."""
    handlers = {"memory": memory, "search": search, "plan": plan, "benchmark": benchmark}
    return handlers[args.capacity_command](args)
