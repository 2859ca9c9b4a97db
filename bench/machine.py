"""Which machine a run was measured on, and how fast a plain client is there.

Why: a latency belongs to the machine that measured it as much as to the server. The
same build measured on two machines differs by the machines (issue 9: a smoke run's get
p50 was 0.121 ms on one machine, 0.032 ms in a baseline recorded on another), so a
comparison across machines says nothing about a change unless it says which machines.
Every run therefore records in run.json

  machine      the machine class: CPU model, usable CPUs, kernel, virtualisation. Not
               the host name: two CI runners of one class are one machine here, and
               the same laptop after a kernel update is another.
  calibration  round trips of a plain client loop (the target adapter alone: no
               Locust, no recorder, one connection) against the run's target just
               before the run, p50 and p99 in us. Two runs' calibrations, set side by
               side, say how much of a difference the machine and the path to the
               server make on their own.

Both are plain values here, in run.json's form; `bench.results.rundir` holds them as
the typed records `MachineFingerprint` and `Calibration` (which fields make two machines
one: `rundir.FINGERPRINT_FIELDS`). `bench compare` refuses a baseline whose machine
differs from the candidate's unless told to go on, and then prints the calibration ratio
beside its verdict (`bench.analysis.compare.machine_notes`).

Nothing here imports the rest of bench: it sits beside `cluster` in the layers.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

CALIBRATION_ROUND_TRIPS = 1000
CALIBRATION_WARMUP = 100


def fingerprint() -> dict[str, Any]:
    """The machine class of this host: the fields of run.json's `machine`."""
    return {"cpu_model": _cpu_model(), "cpus": _usable_cpus(), "kernel": platform.release(),
            "virtualisation": _virtualisation(), "arch": platform.machine()}


class _Getter(Protocol):
    def get(self, key: str) -> bytes | None: ...


def calibrate(client: _Getter, key: str,
              round_trips: int = CALIBRATION_ROUND_TRIPS) -> dict[str, Any]:
    """Round-trip time of single gets of `key` through `client` (a `bench.targets.Target`
    on its own connection), one after the other: p50/p99 in us.

    Returns the fields of run.json's `calibration`. A failing target is recorded as such
    ({"error": ...}), not raised: the run that follows reports the target's errors itself.
    """
    times = np.empty(round_trips, dtype=np.float64)
    try:
        for _ in range(CALIBRATION_WARMUP):
            client.get(key)
        for i in range(round_trips):
            began = time.perf_counter_ns()
            client.get(key)
            times[i] = (time.perf_counter_ns() - began) / 1000
    except Exception as exc:  # any client error: the calibration did not happen
        return {"error": f"{type(exc).__name__}: {exc}"}
    p50, p99 = np.percentile(times, [50, 99])
    return {"round_trips": round_trips, "p50_us": round(float(p50), 1),
            "p99_us": round(float(p99), 1)}


def _cpu_model() -> str:
    """/proc/cpuinfo's model name (x86) or Model/CPU part (ARM), else what platform says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for wanted in ("model name", "Model", "CPU part"):
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip() == wanted and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _virtualisation() -> str:
    """`none`, or what the machine runs in, outermost last: e.g. `docker, vm`."""
    found = [kind for kind in (_container(), _vm()) if kind]
    return ", ".join(found) or "none"


def _container() -> str | None:
    detected = _detect_virt("--container")
    if detected is not None:
        return detected or None
    if Path("/.dockerenv").exists():
        return "docker"
    if Path("/run/.containerenv").exists():
        return "podman"
    return None


def _vm() -> str | None:
    detected = _detect_virt("--vm")
    if detected is not None:
        return detected or None
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return "vm" if " hypervisor" in flags else None


def _detect_virt(which: str) -> str | None:
    """systemd-detect-virt's answer: a name, "" for none, None when it cannot tell
    (not installed, or failed to run)."""
    binary = shutil.which("systemd-detect-virt")
    if binary is None:
        return None
    try:
        result = subprocess.run([binary, which], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = result.stdout.strip()
    if not answer:
        return None
    return "" if answer == "none" else answer
