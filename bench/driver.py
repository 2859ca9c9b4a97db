"""Drive load for `bench run` and `bench worker`: plan a run, prefill, launch Locust.

This process never imports Locust (which monkey-patches the standard library); it
builds a Locust command line around `bench/loadgen/locustfile.py`, hands it the resolved run
configuration as JSON in an environment variable (Locust forwards it to workers), and
watches the run directory that the Locust master writes. When Locust has finished, the
run directory is analyzed like any other, offline, by `bench.analysis.runs`.

What a run was asked for beyond its scenario comes in as `RunOptions`, plain values
(`bench.commands` builds them from the command line), so a run can be driven from
Python as well.

Locust never outlives the run (`bench.loadgen.launch`): a Ctrl-C, SIGTERM or SIGHUP
stops it and leaves an "interrupted" run directory that is analysed like any other,
but never passes.
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
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from bench import __version__, cluster, faults, machine, preflight
from bench.analysis import runs as analyze
from bench.analysis.runs import RunData
from bench.analysis.summary import Summary
from bench.output import console
from bench.results import rundir
from bench.errors import InputError, OutputError, TargetError
from bench.loadgen import launch
from bench.loadgen.runconfig import CONFIG_ENV, LIMITS, LoadPlan, RunConfig
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
    force: bool = False  # prefill even when it is larger than the target's memory
    quiet: bool = False


def plan_load(options: RunOptions, scenario: Scenario) -> LoadPlan:
    """Merge the options over the scenario; every quantity within its bounds
    (`preflight.check_plan`), a bad value naming its flag, or the scenario's field."""
    load = scenario.load
    mode = "closed" if options.closed else ("open" if options.rate is not None else load.mode)
    rate = load.rate if options.rate is None else options.rate
    if mode == "open" and not rate:
        raise InputError("open-loop load needs a rate: give --rate OPS or load.rate in the "
                         "scenario, or use --closed", field="--rate")
    plan = LoadPlan(
        mode=mode, rate=rate if mode == "open" else None,
        arrival=options.arrival or load.arrival,
        users=options.users if options.users is not None else load.users,
        think_s=load.think if options.think_s is None else options.think_s,
        warmup_s=load.warmup if options.warmup_s is None else options.warmup_s,
        duration_s=load.duration if options.duration_s is None else options.duration_s,
        prefill=load.prefill if options.prefill is None else options.prefill,
        seed=options.seed if options.seed is not None else scenario.seed,
    )
    from_options = {name for name, value in (
        ("users", options.users), ("rate", options.rate), ("duration_s", options.duration_s),
        ("warmup_s", options.warmup_s), ("think_s", options.think_s),
        ("seed", options.seed)) if value is not None}
    preflight.check_plan(plan, scenario, from_options)
    check_user_split(plan.users, options)
    return plan


def check_user_split(users: int, options: RunOptions) -> None:
    """Every Locust process must get the same number of users.

    User i of n sends blocks i, i+n, ... of the op stream; a process's users are numbered
    from its worker index (local * processes + index), which covers 0..n-1 exactly when
    the users split evenly, whatever order Locust hands them out in.
    """
    if options.master:
        processes, what = options.expect_workers, "workers"
        LIMITS["workers"].check(processes, "--expect-workers")
    elif options.processes is not None:
        processes, what = preflight.local_processes(options.processes), "processes"
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


def prepare(scenario: Scenario, options: RunOptions) -> Prepared:
    """Every check `bench run` makes before it contacts the target: the load plan, the
    client timeout, value sizes. Bad input fails here, with one line, before anything is
    sent."""
    timeout_s = LIMITS["timeout"].check(options.timeout_s, "--timeout")
    plan = plan_load(options, scenario)
    workload = Workload(scenario, plan.seed)
    return Prepared(scenario, plan, workload, timeout_s, preflight.space_bytes(workload))


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
        down = [node for node, v in server_versions(info).items() if str(v).startswith("error")]
        nodes = f" (not answering: {', '.join(down)})" if down else ""
        raise TargetError(f"prefill of {info.redacted} failed after {written} keys{nodes}: "
                          f"{exc}") from exc
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
        run_id=uuid.uuid4().hex,  # `bench analyze` refuses the same run given twice
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
    return RunConfig(scenario=scenario.to_json(), load=plan, target_url=url,
                     timeout_s=timeout_s,
                     run_dir=str(run_dir), run_info=description, ui=ui)


def locust_argv(options: RunOptions, plan: LoadPlan, run_dir: Path,
                host_label: str) -> list[str]:
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
    if options.ui:
        argv += ["--web-host", "127.0.0.1", "--web-port", str(options.web_port)]
    else:
        argv += ["--headless", "--run-time", f"{math.ceil(total)}s", "--only-summary"]
    if options.master:
        argv += ["--master", "--master-bind-host", options.master_bind_host,
                 "--master-bind-port", str(options.master_bind_port),
                 "--expect-workers", str(options.expect_workers)]
    elif options.processes:
        # Locust's default master port is a fixed 5557 on every interface: two runs on
        # one machine would collide. Its own workers find it on loopback.
        port = str(cluster.free_port())
        argv += ["--processes", str(options.processes), "--master-bind-host", "127.0.0.1",
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
                        rundir.RunWriter.mark_interrupted(run_dir, "no space left on device")
                    raise OutputError(f"cannot write {run_dir}: no space left on device; "
                                      "the run was stopped")
                time.sleep(0.2)
    except (KeyboardInterrupt, launch.Terminated) as stop:
        return launch.stop(proc), str(stop) if isinstance(stop, launch.Terminated) else "SIGINT"
    return launch.reap(proc), None


def check_finished(run_dir: Path, locust_rc: int, stopped_by: str | None = None) -> None:
    """Exit 3 unless Locust finished the run directory: it never started, it aborted
    (a lost load process, a lost target), or it stopped without finishing it. A run that
    a signal (`stopped_by`) stopped early is marked "interrupted" here, with the signal
    in its reason, and goes on to be analysed: `check_completed` refuses it as a pass."""
    if stopped_by:
        rundir.RunWriter.mark_interrupted(run_dir, f"stopped by {stopped_by}")
    if not (run_dir / rundir.RUN_JSON).exists():
        if stopped_by:
            raise TargetError(f"stopped by {stopped_by} before the run started; nothing was "
                              f"measured (see {run_dir}/locust.out)")
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


def check_completed(run: RunData) -> None:
    """Exit 3 for a run that was stopped early (Ctrl-C, SIGTERM, the web UI's stop):
    what it measured is shown and kept, but its results are partial, not a pass. Called
    once the summary is shown."""
    for info in run.runs:
        if info.status == "interrupted":
            raise TargetError(f"run interrupted ({info.reason or 'stopped early'}): the "
                              "results are partial, not a pass")


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def drive(scenario: Scenario, slo: SloSpec | None, options: RunOptions) -> Path:
    """Run the scenario's load through Locust; returns the finished run directory
    (exit 2 on bad options, 3 when the target is unreachable, the run was aborted or
    did not finish). A run stopped early by a signal is returned "interrupted"."""
    ready = prepare(scenario, options)
    plan = ready.plan
    url = resolve_target_url(options.target, scenario)
    info = parse_target(url)
    check_ops_supported(scenario, info)
    planned, fault_servers = faults.plan(scenario.faults, info, cluster.state_dir_default(),
                                         plan.duration_s, scenario.source)
    versions = check_reachable(info, scenario.key_prefix + "reachability-probe")
    preflight.check_memory(info, scenario, plan, ready.workload, ready.space_bytes,
                           options.force)
    run_dir = rundir.new_run_dir(RESULTS_ROOT, scenario.name, out=options.out)
    if plan.prefill:
        prefill(info, ready.workload, options.quiet)
    description = run_info(scenario, plan, info, slo, versions, options.processes,
                           calibrate(info, scenario.key_prefix + "calibration"))
    config = run_config(scenario, plan, url, run_dir, description, ready.timeout_s, options.ui)
    env = dict(os.environ, **{CONFIG_ENV: config.to_json()})
    proc = launch.start(locust_argv(options, plan, run_dir, info.redacted), env,
                        run_dir / "locust.out")
    if options.master:
        print(f"waiting for {options.expect_workers} worker(s) on "
              f"{options.master_bind_host}:{options.master_bind_port} "
              f"(bench worker --master-host <this host>)")
    if options.ui:
        print(f"Locust web UI: http://127.0.0.1:{options.web_port} (Ctrl-C to end)")
    injector = faults.Injector(planned, fault_servers, run_dir,
                               cluster.state_dir_default()).start()
    try:
        rc, stopped_by = wait_for_locust(proc, run_dir, plan, options.quiet or options.ui)
    finally:
        windows = injector.stop()   # never leaves a server stalled
    if planned and (run_dir / rundir.RUN_JSON).exists():
        rundir.RunWriter.record_faults(run_dir, windows)
    check_finished(run_dir, rc, stopped_by)
    return run_dir


def serve_worker(master_host: str, master_port: int, processes: int | None) -> int:
    """A Locust worker whose scenario and target come from the master, tied to this
    process (`bench.loadgen.launch`); its exit code, 130 when stopped by a signal.
    `processes` as --processes (-1: one per core)."""
    LIMITS["port"].check(master_port, "--master-port")
    processes = preflight.local_processes(processes)
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
            "--master-host", master_host, "--master-port", str(master_port),
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
