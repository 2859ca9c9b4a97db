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

import json
import sys
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bench.errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE,
                          InputError)

if TYPE_CHECKING:
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


def _write_text(path: str, text: str, flag: str) -> None:
    """Write an output file; an unwritable path is the user's to fix (exit 2)."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", file=path, field=flag) from None


# ------------------------------------------------------------------------------ run, worker


def _run_options(args: Namespace) -> RunOptions:
    """`bench run`'s flags as the driver's options, times and rates parsed."""
    from bench.driver import RunOptions
    from bench.units import parse_duration, parse_rate

    return RunOptions(
        target=args.target,
        duration_s=_parsed(parse_duration, args.duration, "--duration"),
        warmup_s=_parsed(parse_duration, args.warmup, "--warmup"),
        prefill=args.prefill,
        rate=_parsed(parse_rate, args.rate, "--rate"),
        arrival=args.arrival, closed=args.closed,
        think_s=_parsed(parse_duration, args.think, "--think"),
        users=args.users, processes=args.processes, seed=args.seed, out=args.out,
        slo_file=args.slo,
        timeout_s=_parsed(parse_duration, args.timeout, "--timeout"),  # has a default
        ui=args.ui, web_port=args.web_port, master=args.master,
        master_bind_host=args.master_bind_host, master_bind_port=args.master_bind_port,
        expect_workers=args.expect_workers, quiet=args.quiet)


def run(args: Namespace) -> int:
    """`bench run`: the whole run, from scenario to verdict (exit 0 met, 1 missed, 4 the
    measurement is invalid)."""
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
    return runs.exit_code(summary)


def worker(args: Namespace) -> int:
    """`bench worker`: serve a master's load until it ends; Locust's exit code."""
    from bench import driver

    return driver.serve_worker(args.master_host, args.master_port, args.processes)


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
        if not Path(file).is_file():
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
    1 missed, 4 invalid); summary.json is rewritten when there is one run directory."""
    from bench.analysis import runs
    from bench.output import console

    data = runs.load_runs(args.runs)
    summary = runs.summarize(data, runs.slo_for(data, args.slo))
    if len(data.dirs) == 1:
        runs.write_summary(data.dirs[0], summary)
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
    data = runs.load_runs([args.run])
    summary = runs.summarize(data, runs.slo_for(data, args.slo))
    written = reports.render(data, summary, out)
    print(f"wrote {written[0]} (+{len(written) - 1} PNG beside it)")
    return EXIT_OK


def compare(args: Namespace) -> int:
    """`bench compare BASELINE CANDIDATE`: exit 1 on a regression, 0 otherwise, 4 (no
    verdict, said in the terminal and the files asked for) when either side's
    measurement is invalid."""
    from bench.analysis import compare as comparison
    from bench.units import parse_duration, parse_fraction

    min_delta_s = _parsed(parse_duration, args.min_delta, "--min-delta")
    relative = _parsed(parse_fraction, args.tolerance, "--tolerance")
    tolerance = comparison.tolerance_for(relative, min_delta_s * 1e6, args.slo)
    baseline = comparison.load_with_data(args.baseline)
    candidate = comparison.load_with_data(args.candidate)
    invalid = comparison.invalid_sides({"baseline": (args.baseline, baseline),
                                        "candidate": (args.candidate, candidate)}, args.slo)
    if invalid:
        message = comparison.refusal(invalid)
        print(message)
        if args.markdown:
            _write_text(args.markdown, comparison.refusal_markdown(message), "--markdown")
        if args.junit:
            _write_text(args.junit, comparison.refusal_junit(message), "--junit")
        return EXIT_INVALID
    rows = comparison.compare(baseline, candidate, tolerance)
    comparison.print_table(rows, tolerance)
    if args.markdown:
        _write_text(args.markdown,
                    comparison.to_markdown(rows, tolerance, (args.baseline, args.candidate)),
                    "--markdown")
    if args.junit:
        _write_text(args.junit, comparison.to_junit(rows, tolerance), "--junit")
    return EXIT_FAILED if any(r.regression for r in rows) else EXIT_OK


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
