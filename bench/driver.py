"""Drive load for `bench run` and `bench worker`: plan a run, prefill, launch Locust.

This process never imports Locust (which monkey-patches the standard library); it
builds a Locust command line around `bench/loadgen/locustfile.py`, hands it the resolved run
configuration as JSON in an environment variable (Locust forwards it to workers), and
watches the run directory that the Locust master writes. When Locust has finished, the
run directory is analyzed like any other, offline, by `bench.analysis.runs`.

What a run was asked for beyond its scenario comes in as `RunOptions`, plain values
(`bench.commands` builds them from the command line), so a run can be driven from
Python as well.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import __version__, cluster, faults, machine
from bench.analysis import runs as analyze
from bench.analysis.runs import RunData
from bench.analysis.summary import Summary
from bench.output import console
from bench.results import rundir
from bench.errors import InputError, TargetError
from bench.loadgen.runconfig import CONFIG_ENV, LoadPlan, RunConfig
from bench.scenario.model import Scenario
from bench.scenario.slo import SloSpec, load_slo
from bench.targets import (TargetInfo, open_target, parse_target, server_versions,
                           unsupported_ops)
from bench.targets.base import redact_raw
from bench.vocabulary import entry_op
from bench.workload.ops import Workload

LOCUSTFILE = Path(__file__).parent / "loadgen" / "locustfile.py"
RESULTS_ROOT = Path("results")
DEFAULT_TARGET = "local:memcached"
#: Locust's own time limit is a safety net; the run normally ends when every worker
#: has shipped its last interval.
RUN_TIME_MARGIN_S = 30.0
PACKAGES = ("locust", "pymemcache", "redis", "hiredis", "numpy", "hdrhistogram", "gevent")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What a run is asked for beyond its scenario; None means "the scenario's".

    Times are in seconds and rates in ops/s, already parsed. Errors about them name the
    `bench run` flag that sets them, which is how most runs are asked for.
    """

    target: str | None = None  # URL or local:NAME
    duration_s: float | None = None
    warmup_s: float | None = None
    prefill: bool | None = None
    rate: float | None = None  # open loop, total ops/s
    arrival: str | None = None
    closed: bool = False
    think_s: float | None = None
    users: int | None = None
    processes: int | None = None  # Locust processes on this machine, -1: one per core
    seed: int | None = None
    out: str | None = None  # the run directory, default results/<time>-<scenario>
    slo_file: str | None = None
    timeout_s: float = 1.0
    ui: bool = False
    web_port: int = 8089
    master: bool = False
    master_bind_host: str = "127.0.0.1"
    master_bind_port: int = 5557
    expect_workers: int = 1
    quiet: bool = False


def plan_load(options: RunOptions, scenario: Scenario) -> LoadPlan:
    """Merge the options over the scenario; a bad value names its flag."""
    load = scenario.load
    mode = "closed" if options.closed else ("open" if options.rate is not None else load.mode)
    rate = load.rate if options.rate is None else options.rate
    if mode == "open" and not rate:
        raise InputError("open-loop load needs a rate: give --rate OPS or load.rate in the "
                         "scenario, or use --closed", field="--rate")
    users = options.users if options.users is not None else load.users
    if users < 1:
        raise InputError(f"expected at least 1 user, got {users}", field="--users")
    check_user_split(users, options)
    if options.seed is not None and not 0 <= options.seed < 2**63:
        raise InputError(f"expected a seed from 0 to 2^63-1, got {options.seed}", field="--seed")
    plan = LoadPlan(
        mode=mode, rate=rate if mode == "open" else None,
        arrival=options.arrival or load.arrival, users=users,
        think_s=load.think if options.think_s is None else options.think_s,
        warmup_s=load.warmup if options.warmup_s is None else options.warmup_s,
        duration_s=load.duration if options.duration_s is None else options.duration_s,
        prefill=load.prefill if options.prefill is None else options.prefill,
        seed=options.seed if options.seed is not None else scenario.seed,
    )
    if plan.duration_s <= 0:
        raise InputError("expected a duration > 0, e.g. 60s", field="--duration")
    return plan


def check_user_split(users: int, options: RunOptions) -> None:
    """Every Locust process must get the same number of users.

    User i of n sends blocks i, i+n, ... of the op stream; a process's users are numbered
    from its worker index (local * processes + index), which covers 0..n-1 exactly when
    the users split evenly, whatever order Locust hands them out in.
    """
    if options.master:
        flag, processes = "--expect-workers", options.expect_workers
    elif options.processes is not None:
        flag, processes = "--processes", os.cpu_count() or 1 if options.processes == -1 \
            else options.processes
    else:
        return
    if processes < 1:
        raise InputError(f"expected at least 1 (or -1 for one per core), got {processes}",
                         field=flag)
    if users % processes:
        raise InputError(f"{users} users do not split evenly over {processes} processes; "
                         f"give --users a multiple of {processes}", field="--users")


def resolve_target_url(target: str | None, scenario: Scenario) -> str:
    """`target` (--target), else the scenario's target, else the local cluster's
    memcached pool."""
    url = target or scenario.target or DEFAULT_TARGET
    return cluster.resolve_local(url) if url.startswith("local:") else url


def check_ops_supported(scenario: Scenario, info: TargetInfo) -> None:
    """Refuse before the run what the protocol cannot do (hashes on memcached)."""
    unsupported = unsupported_ops(info)
    for space in scenario.keyspaces:
        for name, entry in space.mix.items():
            op = entry_op(name, entry)
            if op in unsupported:
                raise InputError(f"{op} needs a Redis target, got {info.redacted}",
                                 file=scenario.source,
                                 field=f"keyspaces.{space.name}.mix.{name}")


def check_reachable(info: TargetInfo, probe_key: str) -> dict[str, str]:
    """Server versions per node; exit 3 when the target does not answer at all.

    A proxy (nutcracker) answers no `version`/`INFO`, so when no node gives a version, a
    get of `probe_key` decides: it goes through any proxy.
    """
    versions = server_versions(info)
    if any(not str(v).startswith("error") for v in versions.values()):
        return versions
    target = open_target(info, timeout=2.0)
    try:
        target.get(probe_key)
    except Exception as exc:  # any failure of the probe means unreachable, said in one line
        detail = "; ".join(f"{node}: {v}" for node, v in versions.items())
        raise TargetError(f"target {info.redacted} is unreachable ({detail}; "
                          f"get: {type(exc).__name__}: {exc})") from None
    finally:
        target.close()
    return versions


def resolve_slo(slo_file: str | None, scenario: Scenario) -> SloSpec | None:
    """The SLO file (--slo) when given, else the scenario's `slo` block."""
    if slo_file:
        return load_slo(slo_file)
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
        raise TargetError(f"prefill of {info.redacted} failed after {written} keys: {exc}") from exc
    finally:
        target.close()
    return written


def run_info(scenario: Scenario, plan: LoadPlan, info: TargetInfo, slo: SloSpec | None,
             versions: dict[str, str], processes: int | None,
             calibration: rundir.Calibration | None = None) -> rundir.RunInfo:
    """What ran, for run.json, and on which machine (`bench.machine`); the master's
    RunWriter adds the interval, status and times. No password in it: the target URL is
    redacted, in argv and the scenario's too."""
    return rundir.RunInfo(
        harness={"name": "cachebench", "version": __version__},
        scenario=rundir.RunScenario(name=scenario.name, file=str(scenario.source or ""),
                                    seed=plan.seed, resolved=_redacted_scenario(scenario)),
        target=rundir.RunTarget(url=info.redacted, kind=info.kind, nodes=list(info.nodes),
                                tls=info.tls, options=info.options),
        load={**dataclasses.asdict(plan), "processes": processes or 1},
        slo=slo.to_data() if slo is not None else None,
        versions={"python": platform.python_version(), **_package_versions(),
                  "servers": versions},
        host={"hostname": socket.gethostname(), "platform": platform.platform(),
              "cpus": os.cpu_count()},
        machine=rundir.MachineFingerprint(**machine.fingerprint()),
        argv=[redact_raw(arg) for arg in sys.argv],   # a --target may carry a password
        calibration=calibration,
    )


def calibrate(info: TargetInfo, key: str) -> rundir.Calibration:
    """A plain client's round trips against the target, just before the run, on a
    connection of its own (run.json `calibration`)."""
    with open_target(info, timeout=2.0) as target:
        return rundir.Calibration(**machine.calibrate(target, key))


def _redacted_scenario(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario for run.json, its `target:` URL without a password."""
    resolved = scenario.to_json()
    if resolved.get("target"):
        resolved["target"] = redact_raw(resolved["target"])
    return resolved


def _package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def run_config(scenario: Scenario, plan: LoadPlan, url: str, run_dir: Path,
               description: rundir.RunInfo, timeout_s: float, ui: bool) -> RunConfig:
    """What every Locust process reads (bench.loadgen.users)."""
    if timeout_s <= 0:
        raise InputError(f"expected a timeout > 0, e.g. 1s, got {timeout_s:g}s",
                         field="--timeout")
    return RunConfig(scenario=scenario.to_json(), load=plan, target_url=url,
                     timeout_s=timeout_s,
                     run_dir=str(run_dir), run_info=description, ui=ui)


def locust_argv(options: RunOptions, plan: LoadPlan, run_dir: Path,
                host_label: str) -> list[str]:
    """The Locust command line for a local, multi-process, master or UI run."""
    total = plan.warmup_s + plan.duration_s + RUN_TIME_MARGIN_S
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
            "-u", str(plan.users), "-r", str(plan.users), "-H", host_label,
            "--stop-timeout", "2", "--loglevel", "WARNING",
            "--logfile", str(run_dir / "locust.log"), "--exit-code-on-error", "0"]
    if options.ui:
        argv += ["--web-host", "127.0.0.1", "--web-port", str(options.web_port)]
    else:
        argv += ["--headless", "--run-time", f"{math.ceil(total)}s", "--only-summary"]
    if options.master:
        argv += ["--master", "--master-bind-host", options.master_bind_host,
                 "--master-bind-port", str(options.master_bind_port),
                 "--expect-workers", str(options.expect_workers)]
    elif options.processes:
        argv += ["--processes", str(options.processes)]
    return argv


def launch_locust(argv: list[str], config: RunConfig, run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, **{CONFIG_ENV: config.to_json()})
    with open(run_dir / "locust.out", "w") as output:  # the child keeps its own copy
        return subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_for_locust(proc: subprocess.Popen, run_dir: Path, plan: LoadPlan, quiet: bool) -> int:
    """Show progress from the run directory until Locust exits; Ctrl-C stops it cleanly."""
    try:
        with console.RunProgress(run_dir, plan.warmup_s + plan.duration_s, plan.rate,
                                 quiet=quiet) as progress:
            while proc.poll() is None:
                progress.refresh()
                time.sleep(0.5)
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def check_finished(run_dir: Path, locust_rc: int) -> None:
    """Exit 3 unless Locust completed the run: it never started, it aborted, or it
    stopped before the end."""
    if not (run_dir / rundir.RUN_JSON).exists():
        raise TargetError(f"the load generator did not start (Locust exit code {locust_rc}); "
                          f"see {run_dir}/locust.out\n{_tail(run_dir / 'locust.out')}")
    info = rundir.read_run_info(run_dir)
    if info.status == "aborted":
        raise TargetError(f"run aborted: {info.reason or 'see ' + str(run_dir / 'locust.log')}")
    if info.status == "running":
        tail = _tail(run_dir / "locust.log") or _tail(run_dir / "locust.out")
        raise TargetError(f"the load generator stopped without finishing the run "
                          f"(Locust exit code {locust_rc}); see {run_dir}/locust.log\n{tail}")


def summarize_run(run_dir: Path, slo: SloSpec | None) -> tuple[RunData, Summary]:
    """Analyze the finished run directory and write its summary.json; exit 3 when no
    operation was recorded (nothing to judge)."""
    run = analyze.load_runs([run_dir])
    summary = analyze.summarize(run, slo)
    if not summary.total.count:
        raise TargetError(f"no operations were recorded; see {run_dir}/locust.log\n"
                          f"{_tail(run_dir / 'locust.log')}")
    analyze.write_summary(run_dir, summary)
    return run, summary


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def drive(scenario: Scenario, slo: SloSpec | None, options: RunOptions) -> Path:
    """Run the scenario's load through Locust; returns the completed run directory
    (exit 2 on bad options, 3 when the target is unreachable or the run did not finish)."""
    plan = plan_load(options, scenario)
    url = resolve_target_url(options.target, scenario)
    info = parse_target(url)
    check_ops_supported(scenario, info)
    planned, fault_servers = faults.plan(scenario.faults, info, cluster.state_dir_default(),
                                         plan.duration_s, scenario.source)
    versions = check_reachable(info, scenario.key_prefix + "reachability-probe")
    run_dir = rundir.new_run_dir(RESULTS_ROOT, scenario.name, out=options.out)
    workload = Workload(scenario, plan.seed)
    if plan.prefill:
        prefill(info, workload, options.quiet)
    description = run_info(scenario, plan, info, slo, versions, options.processes,
                           calibrate(info, scenario.key_prefix + "calibration"))
    config = run_config(scenario, plan, url, run_dir, description, options.timeout_s, options.ui)
    proc = launch_locust(locust_argv(options, plan, run_dir, info.redacted), config, run_dir)
    if options.master:
        print(f"waiting for {options.expect_workers} worker(s) on "
              f"{options.master_bind_host}:{options.master_bind_port} "
              f"(bench worker --master-host <this host>)")
    if options.ui:
        print(f"Locust web UI: http://127.0.0.1:{options.web_port} (Ctrl-C to end)")
    injector = faults.Injector(planned, fault_servers, run_dir,
                               cluster.state_dir_default()).start()
    try:
        rc = wait_for_locust(proc, run_dir, plan, options.quiet or options.ui)
    finally:
        windows = injector.stop()   # never leaves a server stalled
    if planned and (run_dir / rundir.RUN_JSON).exists():
        rundir.RunWriter.record_faults(run_dir, windows)
    check_finished(run_dir, rc)
    return run_dir


def serve_worker(master_host: str, master_port: int, processes: int | None) -> int:
    """A Locust worker whose scenario and target come from the master; its exit code."""
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
            "--master-host", master_host, "--master-port", str(master_port),
            "--loglevel", "WARNING"]
    if processes:
        argv += ["--processes", str(processes)]
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 130
