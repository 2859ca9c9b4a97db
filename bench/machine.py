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

`bench compare` refuses a baseline whose machine differs from the candidate's unless
told to go on, and then prints the calibration ratio beside its verdict.
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

#: What makes two machines the same for comparing latencies (keys of `fingerprint()`).
FINGERPRINT_FIELDS = ("cpu_model", "cpus", "kernel", "virtualisation")
CALIBRATION_ROUND_TRIPS = 1000
CALIBRATION_WARMUP = 100


def fingerprint() -> dict[str, Any]:
    """The machine class of this host, as run.json's `machine` records it."""
    return {"cpu_model": _cpu_model(), "cpus": _usable_cpus(), "kernel": platform.release(),
            "virtualisation": _virtualisation(), "arch": platform.machine()}


def differences(baseline: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    """`field: baseline value vs candidate value` for each fingerprint field that differs."""
    return [f"{name} {baseline.get(name)!r} vs {candidate.get(name)!r}"
            for name in FINGERPRINT_FIELDS if baseline.get(name) != candidate.get(name)]


class _Getter(Protocol):
    def get(self, key: str) -> bytes | None: ...


def calibrate(client: _Getter, key: str,
              round_trips: int = CALIBRATION_ROUND_TRIPS) -> dict[str, Any]:
    """Round-trip time of single gets of `key` through `client` (a `bench.targets.Target`
    on its own connection), one after the other: p50/p99 in us.

    A failing target is recorded as such ({"error": ...}), not raised: the run that
    follows reports the target's errors itself.
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


def calibration_ratio(baseline: dict[str, Any] | None,
                      candidate: dict[str, Any] | None) -> str:
    """`candidate's plain-client round trip is 3.78x the baseline's at p50, 2.10x at p99`,
    or why that cannot be said."""
    if not _calibrated(baseline) or not _calibrated(candidate):
        return "calibration: not recorded in both runs, so no ratio of the machines"
    assert baseline is not None and candidate is not None
    ratios = ", ".join(f"{candidate[k] / baseline[k]:.2f}x at {k.removesuffix('_us')}"
                       for k in ("p50_us", "p99_us"))
    return (f"calibration: the candidate machine's plain-client round trip is {ratios} "
            f"the baseline machine's ({baseline['p50_us']:g} -> {candidate['p50_us']:g} us "
            f"p50)")


def _calibrated(calibration: dict[str, Any] | None) -> bool:
    return bool(calibration) and all(calibration.get(k) for k in ("p50_us", "p99_us"))


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
