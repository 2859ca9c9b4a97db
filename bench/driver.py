"""`bench run` and `bench worker`: plan a run, prefill, launch Locust, analyze the result.

This process never imports Locust (which monkey-patches the standard library); it
builds a Locust command line around `bench/loadgen/locustfile.py`, hands it the resolved run
configuration as JSON in an environment variable (Locust forwards it to workers), and
watches the run directory that the Locust master writes. When Locust has finished, the
run directory is analyzed like any other, offline, by `bench.analysis.runs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from argparse import Namespace
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from bench import __version__, cluster, preflight
from bench.analysis import runs as analyze
from bench.output import console
from bench.output import report
from bench.results import rundir
from bench.errors import InputError, OutputError, TargetError
from bench.loadgen import launch
from bench.preflight import parse_flag
from bench.loadgen.runconfig import CONFIG_ENV, LoadPlan, RunConfig
from bench.scenario.model import Scenario, load_scenario
from bench.scenario.slo import SloSpec, load_slo
from bench.targets import (TargetInfo, open_target, parse_target, server_versions,
                           unsupported_ops)
from bench.units import parse_duration, parse_rate
from bench.workload.ops import Workload

LOCUSTFILE = Path(__file__).parent / "loadgen" / "locustfile.py"
RESULTS_ROOT = Path("results")
DEFAULT_TARGET = "local:memcached"
#: Locust's own time limit is a safety net; the run normally ends when every worker
#: has shipped its last interval.
RUN_TIME_MARGIN_S = 30.0
PACKAGES = ("locust", "pymemcache", "redis", "hiredis", "numpy", "hdrhistogram", "gevent")


def plan_load(args: Namespace, scenario: Scenario) -> LoadPlan:
    """Merge flags over the scenario; a flag's bad value names the flag."""
    load = scenario.load
    mode = "closed" if args.closed else ("open" if args.rate else load.mode)
    rate = parse_flag(parse_rate, args.rate, "--rate") if args.rate else load.rate
    if mode == "open" and not rate:
        raise InputError("open-loop load needs a rate: give --rate OPS or load.rate in the "
                         "scenario, or use --closed", field="--rate")
    plan = LoadPlan(
        mode=mode, rate=rate if mode == "open" else None,
        arrival=args.arrival or load.arrival,
        users=args.users if args.users is not None else load.users,
        think_s=parse_flag(parse_duration, args.think, "--think") if args.think else load.think,
        warmup_s=parse_flag(parse_duration, args.warmup, "--warmup") if args.warmup
        else load.warmup,
        duration_s=parse_flag(parse_duration, args.duration, "--duration") if args.duration
        else load.duration,
        prefill=load.prefill if args.prefill is None else args.prefill,
        seed=args.seed if args.seed is not None else scenario.seed,
    )
    preflight.check_plan(plan, args, scenario)
    check_user_split(plan.users, args)
    return plan


def check_user_split(users: int, args: Namespace) -> None:
    """Every Locust process must get the same number of users.

    User i of n sends blocks i, i+n, ... of the op stream; a process's users are numbered
    from its worker index (local * processes + index), which covers 0..n-1 exactly when
    the users split evenly, whatever order Locust hands them out in.
    """
    if args.master:
        processes, what = args.expect_workers, "workers"
    elif args.processes is not None:
        processes, what = preflight.local_processes(args.processes), "processes"
    else:
        return
    if users % processes:
        raise InputError(f"{users} users do not split evenly over {processes} {what}; "
                         f"give --users a multiple of {processes}", field="--users")


class Prepared(NamedTuple):
    """What `bench run` knows before it touches the network."""

    scenario: Scenario
    plan: LoadPlan
    workload: Workload
    timeout_s: float
    space_bytes: list[float]  # per key space: keys x (mean key + mean value) bytes


def prepare(args: Namespace) -> Prepared:
    """Every check `bench run` makes before it contacts the target: flags, scenario, load
    plan, value sizes. Bad input fails here, with one line, before anything is sent."""
    preflight.check_flags(args)
    timeout_s = preflight.client_timeout(args)
    scenario = load_scenario(args.scenario)
    plan = plan_load(args, scenario)
    workload = Workload(scenario, plan.seed)
    return Prepared(scenario, plan, workload, timeout_s, preflight.space_bytes(workload))


def resolve_target_url(args: Namespace, scenario: Scenario) -> str:
    """--target, else the scenario's target, else the local cluster's memcached pool."""
    url = args.target or scenario.target or DEFAULT_TARGET
    return cluster.resolve_local(url) if url.startswith("local:") else url


def check_ops_supported(scenario: Scenario, info: TargetInfo) -> None:
    """Refuse before the run what the protocol cannot do (hashes on memcached)."""
    unsupported = unsupported_ops(info)
    for space in scenario.keyspaces:
        for name, entry in space.mix.items():
            if (entry.op or name) in unsupported:
                raise InputError(f"{entry.op or name} needs a Redis target, got {info.redacted}",
                                 file=scenario.source,
                                 field=f"keyspaces.{space.name}.mix.{name}")


def check_reachable(info: TargetInfo, probe_key: str) -> dict[str, str]:
    """Server versions per node; exit 3 when the target does not answer at all.

    A proxy (nutcracker) answers no `version`/`INFO`, so when no node gives a version, a
    get of `probe_key` decides: it goes through any proxy. A Redis database other than 0
    is probed too: only a client's own connection selects it, and a server refuses a
    number beyond its `databases`, which would make every op of the run an error.
    """
    versions = server_versions(info)
    answered = any(not str(v).startswith("error") for v in versions.values())
    if answered and not (info.kind == "redis" and info.db):
        return versions
    target = open_target(info, timeout=2.0)
    try:
        target.get(probe_key)
    except Exception as exc:  # any failure of the probe means unusable, said in one line
        detail = "; ".join(f"{node}: {v}" for node, v in versions.items())
        what = f"refuses database {info.db}" if answered else "is unreachable"
        raise TargetError(f"target {info.redacted} {what} ({detail}; "
                          f"get: {type(exc).__name__}: {exc})") from None
    finally:
        target.close()
    return versions


def resolve_slo(args: Namespace, scenario: Scenario) -> SloSpec | None:
    if args.slo:
        return load_slo(args.slo)
    return scenario.slo


def prefill(info: TargetInfo, workload: Workload, quiet: bool) -> int:
    """Write every key once, pipelined, before the run; returns the number of keys."""
    target = open_target(info, timeout=5.0)
    written = 0
    try:
        with console.task_progress("prefill", quiet=quiet) as advance:
            for items, ttl in workload.prefill_batches():
                target.set_many(items, ttl)
                written += len(items)
                advance(len(items))
    except Exception as exc:  # a failing server during prefill: report, don't trace
        down = [node for node, v in server_versions(info).items() if str(v).startswith("error")]
        nodes = f" (not answering: {', '.join(down)})" if down else ""
        raise TargetError(f"prefill of {info.redacted} failed after {written} keys{nodes}: "
                          f"{exc}") from exc
    finally:
        target.close()
    return written


def run_info(args: Namespace, scenario: Scenario, plan: LoadPlan, info: TargetInfo,
             slo: SloSpec | None, versions: dict[str, str]) -> dict[str, Any]:
    """run.json's content at the start; the master adds status and end time."""
    return {
        "harness": {"name": "cachebench", "version": __version__},
        "scenario": {"name": scenario.name, "file": str(scenario.source or ""),
                     "seed": plan.seed, "resolved": scenario.to_json()},
        "target": {"url": info.redacted, "kind": info.kind, "nodes": list(info.nodes)},
        "load": {**dataclasses.asdict(plan), "processes": args.processes or 1},
        "slo": slo.to_data() if slo is not None else None,
        "versions": {"python": platform.python_version(), **_package_versions(),
                     "servers": versions},
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                 "cpus": os.cpu_count()},
        "argv": sys.argv,
        "interval_s": 1.0,
        "run_id": uuid.uuid4().hex,  # `bench analyze` refuses the same run given twice
    }


def _package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def run_config(scenario: Scenario, plan: LoadPlan, url: str, timeout_s: float,
               run_dir: Path, info_json: dict[str, Any], ui: bool) -> RunConfig:
    """What every Locust process reads (bench.loadgen.users)."""
    return RunConfig(scenario=scenario.to_json(), load=plan, target_url=url,
                     timeout_s=timeout_s, run_dir=str(run_dir), run_info=info_json, ui=ui)


def locust_argv(args: Namespace, plan: LoadPlan, run_dir: Path, host_label: str) -> list[str]:
    """The Locust command line for a local, multi-process, master or UI run.

    No --stop-timeout: Locust's default stops users at once, so an early stop (Ctrl-C,
    SIGTERM, the UI's button) ends the load at once; a normal run's users stop by
    themselves at the end of the window.
    """
    total = plan.warmup_s + plan.duration_s + RUN_TIME_MARGIN_S
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
            "-u", str(plan.users), "-r", str(plan.users), "-H", host_label,
            "--loglevel", "WARNING",
            "--logfile", str(run_dir / "locust.log"), "--exit-code-on-error", "0"]
    if args.ui:
        argv += ["--web-host", "127.0.0.1", "--web-port", str(args.web_port)]
    else:
        argv += ["--headless", "--run-time", f"{math.ceil(total)}s", "--only-summary"]
    if args.master:
        argv += ["--master", "--master-bind-host", args.master_bind_host,
                 "--master-bind-port", str(args.master_bind_port),
                 "--expect-workers", str(args.expect_workers)]
    elif args.processes:
        # Locust's default master port is a fixed 5557 on every interface: two runs on
        # one machine would collide. Its own workers find it on loopback.
        port = str(cluster.free_port())
        argv += ["--processes", str(args.processes), "--master-bind-host", "127.0.0.1",
                 "--master-bind-port", port, "--master-port", port]
    return argv


def wait_for_locust(proc: subprocess.Popen, run_dir: Path, plan: LoadPlan,
                    quiet: bool) -> tuple[int, str | None]:
    """Show progress from the run directory until Locust exits. Ctrl-C, SIGTERM or SIGHUP
    stop it (`launch.stop`); returns Locust's exit code and the signal that stopped it.
    A full disk stops it too (OutputError): the run could no longer be recorded."""
    try:
        with launch.terminate_raises(), console.RunProgress(
                run_dir, plan.warmup_s + plan.duration_s, plan.rate, quiet=quiet) as progress:
            while launch.running(proc):
                progress.refresh()
                if rundir.disk_full(run_dir):
                    launch.stop(proc)
                    with contextlib.suppress(OutputError):  # the little room left, if any
                        rundir.mark_interrupted(run_dir, "no space left on device")
                    raise OutputError(f"cannot write {run_dir}: no space left on device; "
                                      "the run was stopped")
                time.sleep(0.2)
    except (KeyboardInterrupt, launch.Terminated) as stop:
        return launch.stop(proc), str(stop) if isinstance(stop, launch.Terminated) else "SIGINT"
    return launch.reap(proc), None


def finish(run_dir: Path, slo: SloSpec | None, locust_rc: int, with_report: bool,
           stopped_by: str | None = None) -> int:
    """Analyze the run directory, print the table, write the report, map the verdict
    to an exit code. A run stopped by a signal is analysed too, then exits 3: what it
    measured is shown, but it is not a pass."""
    if stopped_by:
        rundir.mark_interrupted(run_dir, f"stopped by {stopped_by} before Locust finished "
                                         "the run directory")
    if not (run_dir / rundir.RUN_JSON).exists():
        if stopped_by:
            raise TargetError(f"stopped by {stopped_by} before the run started; nothing was "
                              f"measured (see {run_dir}/locust.out)")
        raise TargetError(f"the load generator did not start (Locust exit code {locust_rc}); "
                          f"see {run_dir}/locust.out\n{_tail(run_dir / 'locust.out')}")
    info = rundir.read_run_info(run_dir)
    if info.get("status") == "aborted":
        raise TargetError(f"run aborted: {info.get('reason', 'see ' + str(run_dir / 'locust.log'))}")
    if info.get("status") == "running":
        tail = _tail(run_dir / "locust.log") or _tail(run_dir / "locust.out")
        raise TargetError(f"the load generator stopped without finishing the run "
                          f"(Locust exit code {locust_rc}); see {run_dir}/locust.log\n{tail}")
    run = analyze.load_runs([run_dir])
    summary = analyze.summarize(run, slo)
    if not summary["total"]["count"]:
        raise TargetError(f"no operations were recorded; see {run_dir}/locust.log\n"
                          f"{_tail(run_dir / 'locust.log')}")
    analyze.write_summary(run_dir, summary)
    console.print_summary(summary)
    if with_report:
        report.render(run, summary, run_dir / report.REPORT_FILE)
        print(f"report:  {run_dir / report.REPORT_FILE}")
    print(f"results: {run_dir}")
    if info.get("status") == "interrupted":
        why = f"stopped by {stopped_by}" if stopped_by else info.get("reason") or "stopped early"
        raise TargetError(f"run interrupted ({why}): the results are partial, not a pass")
    return analyze.exit_code(summary)


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_command(args: Namespace) -> int:
    """`bench run`: the whole run, from scenario to verdict."""
    ready = prepare(args)
    scenario, plan = ready.scenario, ready.plan
    url = resolve_target_url(args, scenario)
    info = parse_target(url)
    slo = resolve_slo(args, scenario)
    check_ops_supported(scenario, info)
    versions = check_reachable(info, scenario.key_prefix + "reachability-probe")
    preflight.check_memory(info, scenario, plan, ready.workload, ready.space_bytes, args.force)
    run_dir = rundir.new_run_dir(RESULTS_ROOT, scenario.name, out=args.out)
    if plan.prefill:
        prefill(info, ready.workload, args.quiet)
    info_json = run_info(args, scenario, plan, info, slo, versions)
    config = run_config(scenario, plan, url, ready.timeout_s, run_dir, info_json, args.ui)
    env = dict(os.environ, **{CONFIG_ENV: config.to_json()})
    proc = launch.start(locust_argv(args, plan, run_dir, info.redacted), env,
                        run_dir / "locust.out")
    if args.master:
        print(f"waiting for {args.expect_workers} worker(s) on "
              f"{args.master_bind_host}:{args.master_bind_port} "
              f"(bench worker --master-host <this host>)")
    if args.ui:
        print(f"Locust web UI: http://127.0.0.1:{args.web_port} (Ctrl-C to end)")
    rc, stopped_by = wait_for_locust(proc, run_dir, plan, args.quiet or args.ui)
    return finish(run_dir, slo, rc, args.report, stopped_by)


def worker_command(args: Namespace) -> int:
    """`bench worker`: a Locust worker whose scenario and target come from the master."""
    processes = preflight.check_worker_flags(args)
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
            "--master-host", args.master_host, "--master-port", str(args.master_port),
            "--loglevel", "WARNING"]
    if processes:
        argv += ["--processes", str(processes)]
    proc = launch.start(argv, dict(os.environ))
    try:
        with launch.terminate_raises():
            while launch.running(proc):
                time.sleep(0.2)
    except (KeyboardInterrupt, launch.Terminated):
        launch.stop(proc)
        return 130
    return launch.reap(proc)
