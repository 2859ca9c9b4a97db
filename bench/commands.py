"""The `bench` sub-commands: one handler each, from parsed flags to an exit code.

A handler only translates flags into plain arguments (parsing times, rates and sizes
there, so that a bad value names its flag), calls the stages, prints through
`bench.output` and chooses the exit code. The stages never see an argparse
`Namespace`, so each can be used as a library. `bench.cli` defines the flags and points
each sub-command at its handler.

Each handler imports the stages it uses in its first lines. The imports are static
(import-linter checks them against the layers, and a reader sees what each command
uses), and only the command that runs pays for them: `bench --help` imports this module,
and loading every stage (numpy, pydantic, redis, rich, matplotlib) would make it ten
times slower.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from argparse import Namespace
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bench.errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE,
                          InputError)

if TYPE_CHECKING:
    from bench.analysis.compare import Method, Row, Tolerance
    from bench.analysis.runs import RunData
    from bench.analysis.summary import Summary
    from bench.driver import RunOptions
    from bench.scenario.model import Scenario

T = TypeVar("T")


# ------------------------------------------------------------------------------ helpers


def _parsed(parse: Callable[[str], T], value: str | None, flag: str) -> T | None:
    """A flag's value parsed (None when not given); a bad value names the flag (exit 2)."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as err:
        raise InputError(str(err), field=flag) from None


def _bounded(value: T | None, limit: str, flag: str) -> T | None:
    """A flag's value within its bounds (`bench.loadgen.runconfig.LIMITS[limit]`), so that
    `--users 1e20` or `--duration 1e400s` is refused as it is parsed, saying the accepted
    range (exit 2); None when not given."""
    from bench.loadgen.runconfig import LIMITS

    if value is not None:
        LIMITS[limit].check(value, flag)  # type: ignore[arg-type]
    return value


def _write_text(path: str, text: str, flag: str) -> None:
    """Write an output file; an unwritable path is the user's to fix (exit 2)."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", file=path, field=flag) from None


# ------------------------------------------------------------------------------ run, worker


def _run_options(args: Namespace) -> RunOptions:
    """`bench run`'s flags as the driver's options, times and rates parsed, every number
    within its bounds (one line naming the flag and the accepted range, exit 2)."""
    from bench.driver import RunOptions
    from bench.preflight import local_processes
    from bench.units import parse_duration, parse_rate

    def timed(flag: str, limit: str) -> float | None:
        return _bounded(_parsed(parse_duration, getattr(args, limit), flag), limit, flag)

    local_processes(args.processes)  # -1 or 1..LIMITS; the driver resolves -1
    return RunOptions(
        target=args.target,
        duration_s=timed("--duration", "duration"),
        warmup_s=timed("--warmup", "warmup"),
        prefill=args.prefill,
        rate=_bounded(_parsed(parse_rate, args.rate, "--rate"), "rate", "--rate"),
        arrival=args.arrival, closed=args.closed,
        think_s=timed("--think", "think"),
        users=_bounded(args.users, "users", "--users"), processes=args.processes,
        seed=_bounded(args.seed, "seed", "--seed"), out=args.out,
        slo_file=args.slo,
        timeout_s=timed("--timeout", "timeout"),  # has a default
        ui=args.ui, web_port=_bounded(args.web_port, "port", "--web-port"),
        master=args.master, master_bind_host=args.master_bind_host,
        master_bind_port=_bounded(args.master_bind_port, "port", "--master-bind-port"),
        expect_workers=_bounded(args.expect_workers, "workers", "--expect-workers"),
        force=args.force, quiet=args.quiet)


def run(args: Namespace) -> int:
    """`bench run`: the whole run, from scenario to verdict (exit 0 met, 1 missed, 4 the
    measurement is invalid; 3 for a run stopped early, once what it measured is shown)."""
    from bench import driver
    from bench.analysis import runs
    from bench.output import console
    from bench.output import report as reports
    from bench.scenario.model import load_scenario

    options = _run_options(args)
    scenario = load_scenario(args.scenario)
    slo = driver.resolve_slo(options.slo_file, scenario)
    run_dir = driver.drive(scenario, slo, options)
    data, summary = driver.summarize_run(run_dir, slo)
    console.print_summary(summary)
    if args.report:
        reports.render(data, summary, run_dir / reports.REPORT_FILE)
        print(f"report:  {run_dir / reports.REPORT_FILE}")
    print(f"results: {run_dir}")
    driver.check_completed(data)
    return runs.exit_code(summary)


def worker(args: Namespace) -> int:
    """`bench worker`: serve a master's load until it ends; Locust's exit code (130 when
    stopped by Ctrl-C, SIGTERM or SIGHUP)."""
    from bench import driver

    return driver.serve_worker(args.master_host, _bounded(args.master_port, "port",
                                                          "--master-port"), args.processes)


# ------------------------------------------------------------------------------ cluster


def _state_dir(args: Namespace) -> Path:
    from bench import cluster

    return Path(args.state_dir or cluster.state_dir_default())


def _memory_mb(text: str) -> int:
    """--memory as whole MiB, the unit both memcached -m and redis maxmemory take here."""
    from bench.units import parse_size

    mib = _parsed(parse_size, text, "--memory") // 2**20
    if mib < 1:
        raise InputError(f"expected at least 1MiB, got {text!r}", field="--memory")
    return mib


def cluster_up(args: Namespace) -> int:
    """`bench cluster up`: start the fleet unless it already runs (stale state replaced)."""
    from bench import cluster
    from bench.output import cluster_view

    state_dir = _state_dir(args)
    state, how = cluster.ensure_up(state_dir, _memory_mb(args.memory), args.memcached_nodes,
                                   args.redis_cluster_masters, args.gutter, args.replicas)
    if how == "restarted" and not args.json:
        print(f"stale cluster state in {state_dir}: stopped what was left, started afresh")
    cluster_view.print_state(state, args.json, "started" if how == "restarted" else how)
    return EXIT_OK


def cluster_status(args: Namespace) -> int:
    """`bench cluster status`: every recorded server and whether it answers; exit 3
    unless all do."""
    from bench import cluster
    from bench.output import cluster_view

    state, health = cluster.cluster_status(_state_dir(args))
    cluster_view.print_state(state, args.json, "status", health)
    return EXIT_OK if all(h == "answering" for h in health.values()) else EXIT_UNREACHABLE


def cluster_down(args: Namespace) -> int:
    """`bench cluster down`: stop the fleet; nothing running is fine (idempotent)."""
    from bench import cluster
    from bench.output import cluster_view

    state_dir = _state_dir(args)
    cluster_view.print_stopped(state_dir, cluster.cluster_down(state_dir), args.json)
    return EXIT_OK


# ------------------------------------------------------------------------------ scenarios


def _loaded(name: str) -> Scenario | InputError:
    from bench.scenario.model import load_scenario

    try:
        return load_scenario(name)
    except InputError as err:
        return err


def scenarios_list(args: Namespace) -> int:
    """`bench scenarios list`: exit 2 when any scenario in scenarios/ is invalid."""
    from bench.output import scenarios as scenario_view
    from bench.scenario.model import scenario_names

    entries = [(name, _loaded(name)) for name in scenario_names()]
    scenario_view.print_list(entries)
    return EXIT_BAD_INPUT if any(isinstance(s, InputError) for _, s in entries) else EXIT_OK


def scenarios_show(args: Namespace) -> int:
    """`bench scenarios show NAME`: the scenario as validated, as YAML."""
    from bench.output import scenarios as scenario_view
    from bench.scenario.model import load_scenario

    scenario_view.print_yaml(load_scenario(args.name))
    return EXIT_OK


def scenarios_validate(args: Namespace) -> int:
    """`bench scenarios validate FILE...`: in order; the first bad one raises (exit 2)."""
    from bench.output import scenarios as scenario_view
    from bench.scenario.model import load_scenario

    for file in args.files:
        if not Path(file).exists():  # a directory: load_scenario says so
            raise InputError("no such file", file=file)
        scenario_view.print_valid(file, load_scenario(file))
    return EXIT_OK


def scenarios_schema(args: Namespace) -> int:
    """`bench scenarios schema`: the JSON Schema of scenario files."""
    from bench.output import scenarios as scenario_view
    from bench.scenario.model import json_schema

    scenario_view.print_schema(json_schema())
    return EXIT_OK


def scenarios_preview(args: Namespace) -> int:
    """`bench scenarios preview NAME`: the preview tables; with --csv also the op stream."""
    from bench.output import scenarios as scenario_view
    from bench.scenario.model import load_scenario
    from bench.workload.preview import preview, write_csv

    if args.ops < 1:
        raise InputError(f"expected --ops >= 1, got {args.ops}", field="--ops")
    scn = load_scenario(args.name)
    seed = scn.seed if args.seed is None else args.seed
    if not 0 <= seed < 2**63:
        raise InputError(f"expected a seed from 0 to 2^63-1, got {seed}", field="--seed")
    if args.csv:
        write_csv(scn, seed, args.ops, Path(args.csv))
    scenario_view.print_preview(scn, seed, preview(scn, args.ops, seed))
    return EXIT_OK


# ------------------------------------------------------------------------------ analysis


def analyze(args: Namespace) -> int:
    """`bench analyze RUN_DIR...`: merged summary, SLO and validity verdicts (exit 0 met,
    1 missed, 3 met over a run that did not complete, 4 invalid); summary.json is written
    to --out, else rewritten when there is one run directory."""
    from bench.analysis import runs
    from bench.output import console

    data = runs.load_runs(args.runs)
    summary = runs.summarize(data, runs.slo_for(data, args.slo))
    if args.out or len(data.dirs) == 1:
        runs.write_summary(data.dirs[0], summary, args.out)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        console.print_summary(summary)
    return runs.exit_code(summary)


def report(args: Namespace) -> int:
    """`bench report RUN_DIR`: always exit 0 once written."""
    from bench.analysis import runs
    from bench.output import report as reports

    out = Path(args.out) if args.out else Path(args.run) / reports.REPORT_FILE
    if not out.parent.is_dir():
        raise InputError("directory does not exist", file=str(out.parent), field="--out")
    if out.is_dir():
        raise InputError("is a directory; expected the report's file name, e.g. "
                         f"{out / reports.REPORT_FILE}", file=str(out), field="--out")
    data = runs.load_runs([args.run])
    summary = runs.summarize(data, runs.slo_for(data, args.slo))
    written = reports.render(data, summary, out)
    print(f"wrote {written[0]} (+{len(written) - 1} PNG beside it)")
    return EXIT_OK


def _tolerance(args: Namespace, default: str) -> Tolerance:
    """--tolerance, --min-delta and --slo (`bench compare`, `bench regress`) as a
    Tolerance; `default` when neither --tolerance nor the SLO file gives one."""
    from bench.analysis import compare as comparison
    from bench.units import parse_duration, parse_fraction

    min_delta_s = _parsed(parse_duration, args.min_delta, "--min-delta")
    relative = _parsed(parse_fraction, args.tolerance, "--tolerance")
    return comparison.tolerance_for(relative, min_delta_s * 1e6, args.slo, default)


def _publish(rows: list[Row], tolerance: Tolerance, names: tuple[str, str],
             args: Namespace, method: Method, notes: Sequence[str] = ()) -> int:
    """The verdict as `bench compare` and `bench regress` both give it: the table and the
    notes, the --markdown and --junit files; exit 1 on a regression, 0 otherwise."""
    from bench.analysis import compare as comparison

    comparison.print_table(rows, tolerance)
    for note in notes:
        print(note)
    if args.markdown:
        _write_text(args.markdown,
                    comparison.to_markdown(rows, tolerance, names, method, notes), "--markdown")
    if args.junit:
        _write_text(args.junit, comparison.to_junit(rows, tolerance), "--junit")
    return EXIT_FAILED if any(r.regression for r in rows) else EXIT_OK


def compare(args: Namespace) -> int:
    """`bench compare BASELINE CANDIDATE`: exit 1 on a regression, 0 otherwise; exit 2
    for a baseline from another machine unless --allow-other-machine."""
    from bench.analysis import compare as comparison

    tolerance = _tolerance(args, comparison.DEFAULT_TOLERANCE)
    baseline = comparison.load_with_data(args.baseline)
    candidate = comparison.load_with_data(args.candidate)
    names = (args.baseline, args.candidate)
    notes = comparison.machine_notes(baseline.runs[0], candidate.runs[0], names,
                                     args.allow_other_machine)
    refused = _refuse_invalid(args, {"baseline": (args.baseline, baseline),
                                     "candidate": (args.candidate, candidate)})
    if refused is not None:
        return refused
    rows = comparison.compare(baseline, candidate, tolerance)
    return _publish(rows, tolerance, names, args, comparison.RANK_TEST, notes)


def _refuse_invalid(args: Namespace, sides: dict[str, tuple[str, RunData]]) -> int | None:
    """EXIT_INVALID, said in the terminal and the --markdown/--junit files, when any side's
    measurement is invalid (its load generator fell behind, so a difference may be the
    harness's); None when every side is valid."""
    from bench.analysis import compare as comparison

    invalid = comparison.invalid_sides(sides, args.slo)
    if not invalid:
        return None
    message = comparison.refusal(invalid)
    print(message)
    if args.markdown:
        _write_text(args.markdown, comparison.refusal_markdown(message), "--markdown")
    if args.junit:
        _write_text(args.junit, comparison.refusal_junit(message), "--junit")
    return EXIT_INVALID


def regress(args: Namespace) -> int:
    """`bench regress SCENARIO --baseline URL [--candidate URL]`: the same-machine A/B
    gate in alternating rounds; exit 1 on a regression, 0 otherwise."""
    from bench import regress as gate
    from bench.analysis import compare as comparison
    from bench.analysis.runs import load_runs
    from bench.scenario.model import load_scenario
    from bench.units import format_duration, parse_duration, parse_rate

    gate.check_rounds(args.rounds)  # every bad flag fails before any load
    tolerance = _tolerance(args, gate.DEFAULT_TOLERANCE)
    pair = gate.sides(args.baseline, args.candidate,
                      _parsed(parse_duration, args.timeout, "--timeout"),  # has a default
                      _parsed(parse_duration, args.candidate_timeout, "--candidate-timeout"))
    scenario = load_scenario(args.scenario)
    plan = gate.RoundPlan(scenario,
                          _parsed(parse_duration, args.round_duration, "--round-duration"),
                          warmup_s=_parsed(parse_duration, args.warmup, "--warmup"),
                          rate=_parsed(parse_rate, args.rate, "--rate"), users=args.users)
    out = gate.out_dir(args.out, scenario.name)
    names = (pair[0].describe(), pair[1].describe())
    print(f"regress: {scenario.name}, {args.rounds} rounds of "
          f"{format_duration(plan.duration_s)} per side, ABBA; baseline {names[0]}, "
          f"candidate {names[1]}")
    began = time.monotonic()
    rows = gate.gate(plan, pair, args.rounds, out, tolerance)
    rounds = sorted(path for path in out.iterdir() if path.name.startswith("round-"))
    refused = _refuse_invalid(args, {path.name: (str(path), load_runs([path]))
                                     for path in rounds})
    code = refused if refused is not None else _publish(rows, tolerance, names, args,
                                                         comparison.PAIRED_TEST)
    print(f"regress: {2 * args.rounds} runs in {time.monotonic() - began:.0f} s; "
          f"rounds in {out}")
    return code


def export(args: Namespace) -> int:
    """`bench export RUN_DIR --prometheus|--csv [--out FILE]`."""
    from bench.analysis import runs
    from bench.output import export as exports

    data = runs.load_runs([args.run])
    text = (exports.to_prometheus(runs.summarize(data, runs.slo_for(data, None)))
            if args.prometheus else exports.to_csv(data))
    if args.out:
        _write_text(args.out, text, "--out")
    else:
        sys.stdout.write(text)
    return EXIT_OK


# ------------------------------------------------------------------------------ capacity


def _write_json(directory: str | Path | None, name: str, data: dict[str, Any]) -> Path | None:
    """Write `name` into the --out DIR (created); an unwritable place is the user's to fix."""
    if directory is None:
        return None
    path = Path(directory) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", file=str(path), field="--out") from None
    _write_text(str(path), json.dumps(data, indent=2, allow_nan=False) + "\n", "--out")
    return path


def _sizes(value: str | None, flag: str) -> list[int] | None:
    """`1GiB,2GiB,4GiB` -> bytes, each at least 1MiB."""
    from bench.units import parse_size

    if value is None:
        return None
    sizes = [_parsed(parse_size, part.strip(), flag) for part in value.split(",") if part.strip()]
    if not sizes or any(s is None or s < 2**20 for s in sizes):
        raise InputError(f"expected sizes of at least 1MiB separated by commas, got {value!r}",
                         field=flag)
    return sizes  # type: ignore[return-value]


def _memory_nodes(target: str | None, nodes: int) -> tuple[str, ...]:
    """--target's nodes (a memcached pool), else --nodes N named cache1..N."""
    from bench.capacity.memory import pool_nodes
    from bench.targets import parse_target

    if target:
        info = parse_target(target)
        if info.kind != "memcached":
            raise InputError(f"the memory model is memcached's; got a {info.kind} target",
                             field="--target")
        return pool_nodes(len(info.nodes), list(info.nodes))
    return pool_nodes(nodes)


def capacity_memory(args: Namespace) -> int:
    """`bench capacity memory SCENARIO`: the hit-ratio curve, no server needed."""
    import math

    from bench.capacity.memory import run_memory
    from bench.capacity.slabs import SlabClasses
    from bench.output import capacity as view
    from bench.output.console import task_progress
    from bench.scenario.model import load_scenario
    from bench.units import parse_fraction, parse_rate

    scenario = load_scenario(args.scenario)
    target = _parsed(parse_fraction, args.target_hit_ratio, "--target-hit-ratio")
    if target is not None and not 0 < target < 1:
        raise InputError(f"expected a hit ratio between 0% and 100%, got {target:g}",
                         field="--target-hit-ratio")
    rate = _parsed(parse_rate, args.rate, "--rate") or scenario.load.rate
    if not rate or not math.isfinite(rate) or rate <= 0:
        raise InputError("expected the op rate the model runs at: give --rate OPS "
                         "(the scenario has no open-loop rate)", field="--rate")
    try:
        slabs = SlabClasses(growth_factor=args.growth_factor, min_chunk=args.min_chunk)
    except ValueError as err:
        raise InputError(str(err), field="-f/-n") from None
    nodes = _memory_nodes(args.target, args.nodes)
    memories = _sizes(args.memory, "--memory")
    sample_rate = _parsed(parse_fraction, args.sample_rate, "--sample-rate")
    with task_progress("simulating memory sizes", total=None, quiet=args.quiet) as advance:
        report = run_memory(
            scenario, nodes=nodes, slabs=slabs, op_rate=rate, target=target,
            memories=memories, ops=args.ops, warmup_ops=args.warmup_ops,
            sample_rate=sample_rate, budget=args.budget, seed=args.seed,
            progress=lambda done, total: advance(1))
    written = _write_json(args.out, "memory.json", report.to_json())
    view.print_parts(view.memory_tables(report), written)
    return EXIT_OK


def capacity_search(args: Namespace) -> int:
    """`bench capacity search SCENARIO --target URL`: the max rate within the SLO (exit 0
    with an answer, 4 when the load generator was the limit)."""
    import contextlib
    import io
    import os

    from bench import driver
    from bench.capacity.search import Search, SearchSettings
    from bench.output import capacity as view
    from bench.results import rundir
    from bench.scenario.model import load_scenario
    from bench.targets import parse_target
    from bench.units import parse_duration, parse_fraction, parse_rate

    scenario = load_scenario(args.scenario)
    slo = driver.resolve_slo(args.slo, scenario)
    if slo is None or not (slo.objectives or slo.errors or slo.hit_ratio):
        raise InputError("the search needs an SLO to stay within: give --slo FILE or an "
                         "slo: block in the scenario", field="--slo")
    url = driver.resolve_target_url(args.target, scenario)
    nodes = len(parse_target(url).nodes)
    settings = SearchSettings(
        start_rate=_parsed(parse_rate, args.start_rate, "--start-rate")
        or scenario.load.rate or 1000.0,
        step=args.step, resolution=_parsed(parse_fraction, args.resolution, "--resolution"),
        confirmations=args.confirm,
        budget_s=_parsed(parse_duration, args.budget, "--budget"),
        max_rate=_parsed(parse_rate, args.max_rate, "--max-rate"),
        processes=(os.cpu_count() or 1) if args.processes == -1 else args.processes or 1)
    probe = driver.RunOptions(
        target=url, duration_s=_parsed(parse_duration, args.probe_duration, "--probe-duration"),
        warmup_s=_parsed(parse_duration, args.probe_warmup, "--probe-warmup"),
        users=args.users, processes=args.processes, slo_file=args.slo,
        timeout_s=_parsed(parse_duration, args.timeout, "--timeout"), quiet=True)
    parent = rundir.new_run_dir(driver.RESULTS_ROOT, f"search-{scenario.name}", out=args.out)

    def run_probe(rate: float, phase: str, number: int) -> tuple[Summary, str]:
        """`bench run`'s code at one rate into parent/NN-phase-RATE, its output kept out
        of the terminal; only the first probe prefills (the cache stays warm)."""
        out = parent / f"{number:02d}-{phase}-{rate:.0f}"
        options = dataclasses.replace(probe, rate=rate, out=str(out),
                                      prefill=args.prefill if number == 1 else False)
        with contextlib.redirect_stdout(io.StringIO()):
            run_dir = driver.drive(scenario, slo, options)
            _, summary = driver.summarize_run(run_dir, slo)
        return summary, str(out)

    view.print_search_intro(scenario.name, url, settings, parent)
    try:
        finder = Search(run_probe, settings, nodes,
                        progress=lambda p, elapsed: view.print_probe(p, elapsed,
                                                                     settings.budget_s))
    except ValueError as err:
        raise InputError(str(err), field="--step/--resolution/--confirm") from None
    result = finder.run()
    written = _write_json(parent, "search.json", result.to_json())
    view.print_parts(view.search_tables(result), written)
    return EXIT_INVALID if result.generator_limited else EXIT_OK


def _growth(value: str) -> float:
    """`30%` or `0.3` a year, any size (150% is allowed: growth is not a fraction)."""
    import math

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
    import math

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


def capacity_plan(args: Namespace) -> int:
    """`bench capacity plan SCENARIO`: nodes, memory, network, connections, what binds."""
    from bench import driver
    from bench.capacity.memory import WARMUP_SHARE, default_ops, pool_nodes
    from bench.capacity.plan import Forecast, Limits, Measured, make_plan, measured_from_dir
    from bench.capacity.slabs import SlabClasses
    from bench.capacity.stream import StreamSettings, sample_stream
    from bench.output import capacity as view
    from bench.results import rundir
    from bench.scenario.model import load_scenario
    from bench.units import parse_bandwidth, parse_fraction, parse_rate, parse_size

    scenario = load_scenario(args.scenario)
    if (args.measured is None) == (args.node_rate is None):
        raise InputError("expected one of --measured DIR (a search or run directory) or "
                         "--node-rate OPS", field="--measured")
    measured = measured_from_dir(args.measured) if args.measured is not None else Measured(
        node_rate=_parsed(parse_rate, args.node_rate, "--node-rate"), source="--node-rate")
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
    try:
        slabs = SlabClasses(growth_factor=args.growth_factor, min_chunk=args.min_chunk)
    except ValueError as err:
        raise InputError(str(err), field="-f/-n") from None
    ops = args.ops or default_ops(scenario)
    stream = sample_stream(scenario, StreamSettings(
        ops=ops, warmup_ops=int(ops * WARMUP_SHARE), op_rate=forecast.planned_rate,
        sample_rate=_parsed(parse_fraction, args.sample_rate, "--sample-rate"),
        budget=args.budget, seed=args.seed), slabs)
    result = make_plan(scenario, stream, measured, forecast, limits, pool_nodes)
    view.print_parts(view.plan_tables(result))
    out = rundir.new_run_dir(driver.RESULTS_ROOT, f"plan-{scenario.name}", out=args.out)
    written = view.render_plan(result, out)
    _write_json(out, "plan.json", result.to_json())
    view.print_lines(f"report:  {written[1]}\nresults: {out}")
    return EXIT_OK


def capacity_benchmark(args: Namespace) -> int:
    """`bench capacity benchmark` (make perf): exit 1 when a check misses its bound."""
    from bench.capacity import benchmark as checks
    from bench.output import capacity as view

    results = [checks.sampling_error()] + ([] if args.quick else [checks.speed()])
    view.print_parts([view.benchmark_table(results)])
    return EXIT_OK if all(c.passed for c in results) else EXIT_FAILED


def selftest(args: Namespace) -> int:
    """`bench selftest`: the harness against plain loops, alternated, as ratios."""
    from bench.output import console
    from bench.selftest import measure, servers

    if args.rounds < 1:
        raise InputError(f"expected at least 1 round, got {args.rounds}", field="--rounds")
    if not args.seconds > 0:
        raise InputError(f"expected seconds > 0, got {args.seconds:g}", field="--seconds")
    with servers(args.target, args.redis_target) as (memcached_url, redis_url):
        rows = measure(memcached_url, redis_url, args.seconds, args.rounds)
    console.print_rows("cachebench selftest (ratios measured in the same run, alternated)",
                       ("measurement", "value", "ratio / share"), rows)
    return EXIT_OK
