"""A scenario's `faults:` run against the local cluster while `bench run` measures.

Why here, in the `bench run` process: it is neither Locust (whose gevent would make
`time.sleep` cooperative and a fault late) nor a server, it knows the cluster state
(pids, ports, argv of every server `bench cluster up` started), and it reads the start
of the measured window from run.json, which the Locust side writes before any op is
sent (`measure_from`). One thread per fault sleeps until `measure_from + at` and acts;
each observed window (when the fault began and ended, as epoch seconds) goes into
run.json `faults` (`RunWriter.record_faults`, once Locust has finished), from which the
analyzer derives the before/during/after phases.

Where it sits: orchestration beside `bench.driver`, which imports it; it uses the
cluster, the run directory, the scenario and the targets, and no stage imports it.

Faults only touch servers this harness started: a target that `bench cluster up` did
not start is refused (exit 2) before anything is sent. `delay` needs the loopback
proxy (`bench.proxy`), which is not wired to faults yet: it is refused the same way for now.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import cluster
from bench.errors import InputError
from bench.results import rundir
from bench.results.rundir import FaultWindow
from bench.scenario.model import Fault
from bench.targets import TargetInfo

#: How often the injector looks for run.json's measure_from while Locust starts.
POLL_S = 0.02


@dataclass
class Window:
    """One fault as it happens: epoch seconds; `to` None while it lasts (a kill).
    Recorded as a `FaultWindow` once over."""

    kind: str
    node: int
    address: str
    at_s: float
    start: float
    to: float | None = None
    error: str | None = None

    def record(self) -> FaultWindow:
        return FaultWindow(kind=self.kind, node=self.node, address=self.address,
                           at_s=self.at_s, start=self.start, end=self.to, error=self.error)


def target_servers(info: TargetInfo, state: cluster.ClusterState) -> list[cluster.LocalServer]:
    """The target's servers in node order (a Redis Cluster: every node of the local
    cluster, by name), or InputError when one of them was not started by the harness."""
    if info.kind == "redis-cluster":
        return sorted((s for s in state.servers if s.kind == "redis-cluster"),
                      key=lambda server: int(server.name.rsplit("-", 1)[1]))
    by_address = {address: server for server in state.servers
                  for address in (server.address, f"{server.host}:{server.tls_port}")}
    foreign = [node for node in info.nodes if node not in by_address]
    if foreign:
        raise InputError(f"faults run only on servers `bench cluster up` started; "
                         f"{', '.join(foreign)} is not one of them", field="faults")
    return [by_address[node] for node in info.nodes]


def plan(faults: list[Fault], info: TargetInfo, state_dir: str | Path, duration_s: float,
         source: str | None = None) -> tuple[list[Fault], list[cluster.LocalServer]]:
    """The faults that fall in the measured window (a shortened run, `--duration`, drops
    the later ones), each checked against the local cluster before the run, and the
    target's servers. InputError (exit 2) for a fault this harness may not run."""
    due = [fault for fault in faults if fault.at < duration_s]
    if not due:
        return [], []
    state = cluster.ClusterState.load(Path(state_dir))
    if state is None:
        raise InputError(f"faults run only on servers `bench cluster up` started, and no "
                         f"local cluster is running in {state_dir}", file=source, field="faults")
    servers = target_servers(info, state)
    for index, fault in enumerate(faults):
        where = f"faults[{index}]"
        if fault.kind == "delay":
            raise InputError("kind delay needs the loopback proxy (bench.proxy), which faults "
                             "do not use yet; use stall", file=source, field=f"{where}.kind")
        if fault.node > len(servers):
            raise InputError(f"expected a node from 1 to {len(servers)}, got {fault.node}",
                             file=source, field=f"{where}.node")
    return due, servers


class Injector:
    """Runs the faults of one run; `stop()` ends them (a stalled server is resumed) and
    returns the windows for run.json."""

    def __init__(self, faults: list[Fault], servers: list[cluster.LocalServer],
                 run_dir: Path, state_dir: str | Path) -> None:
        self._faults = sorted(faults, key=lambda fault: fault.at)
        self._servers = list(servers)
        self._run_dir, self._state_dir = run_dir, Path(state_dir)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stalled: set[int] = set()
        self.windows: list[Window] = []
        self._threads = [threading.Thread(target=self._run, args=(fault,), daemon=True,
                                          name=f"fault-{fault.kind}-{fault.node}")
                         for fault in self._faults]

    def start(self) -> Injector:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[FaultWindow]:
        """End every fault now; a window still open (a kill) ends here."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=cluster.START_TIMEOUT_S)
        with self._lock:
            for node in self._stalled:
                self._servers[node - 1].resume()
            now = time.time()
            for window in self.windows:
                window.to = now if window.to is None else window.to
            return [window.record() for window in sorted(self.windows, key=lambda w: w.start)]

    def _measure_from(self) -> float | None:
        """run.json's measure_from, once the Locust side has written it."""
        while not self._stopping.is_set():
            try:
                start = rundir.read_run_info(self._run_dir).measure_from
            except (OSError, InputError):   # not there yet, or being replaced
                start = None
            if start is not None:
                return float(start)
            time.sleep(POLL_S)
        return None

    def _run(self, fault: Fault) -> None:
        start = self._measure_from()
        if start is None or self._stopping.wait(max(0.0, start + fault.at - time.time())):
            return
        window = Window(fault.kind, fault.node, self._servers[fault.node - 1].address,
                        fault.at, time.time())
        with self._lock:
            self.windows.append(window)
        try:
            {"stall": self._stall, "kill": self._kill, "restart": self._restart}[fault.kind](
                fault, window)
        except Exception as exc:  # noqa: BLE001 - a failed fault is recorded, the run goes on
            window.error, window.to = f"{type(exc).__name__}: {exc}", time.time()

    def _stall(self, fault: Fault, window: Window) -> None:
        server = self._servers[fault.node - 1]
        with self._lock:
            server.pause()
            self._stalled.add(fault.node)
        self._stopping.wait(fault.duration or 0.0)
        with self._lock:
            if fault.node in self._stalled:
                server.resume()
                self._stalled.discard(fault.node)
        window.to = time.time()

    def _kill(self, fault: Fault, window: Window) -> None:
        """The window stays open until a restart of the node (or the run's end)."""
        with self._lock:
            self._servers[fault.node - 1].kill()

    def _restart(self, fault: Fault, window: Window) -> None:
        with self._lock:
            old = self._servers[fault.node - 1]
            self._stalled.discard(fault.node)
        new = old.restart()
        with self._lock:
            self._servers[fault.node - 1] = new
            for other in self.windows:   # the node is back: its kill is over
                if other.kind == "kill" and other.node == fault.node and other.to is None:
                    other.to = time.time()
            _record_pid(self._state_dir, new)
        window.to = time.time()


def _record_pid(state_dir: Path, server: cluster.LocalServer) -> None:
    """Keep the cluster state true after a restart, so `bench cluster down` stops the
    new process rather than looking for the old pid."""
    state = cluster.ClusterState.load(state_dir)
    if state is None:
        return
    state.servers = [server if old.name == server.name else old for old in state.servers]
    state.save()

