"""`bench compare` on REAL runs: a slowed server is a regression, a second run of the
same configuration is not (the issue's "done when").

Three runs of tests/scenarios/compare.yaml, each against its own memcached:

  baseline  normal
  same      normal, the same configuration and seed as baseline
  slowed    the server is frozen (SIGSTOP) for PAUSE_S every PERIOD_S

The three run AT THE SAME TIME, on purpose. On a shared 2-core machine, two identical
runs made one after the other often differ significantly in their sub-100 us p50/p90
(in 3 of 20 ordered pairs of five such runs, by up to +76%) when a neighbour's load
changes between them: a change of the machine, which compare rightly calls real.
Running the three together gives them the same machine, so what is left between
`baseline` and `same` is the run-to-run chance that compare must not flag, and between
`baseline` and `slowed` the stall alone. (Sequential runs against a committed baseline
are tests/test_regress.py's business, with a tolerance sized for that machine noise.)

Both comparisons use one tolerance, TOLERANCE = 20%, the regression size the issue asks
to catch: compare must tell the two cases apart at one setting.

A run whose load generator fell behind is INVALID (exit 4), and compare gives no verdict
on it (exit 4, saying which side). On a loaded machine that is most runs: then each
comparison checks that refusal instead of the regression verdict (`_refused`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

import pytest

from bench import cluster
from bench.cli import main
from bench.errors import EXIT_INVALID, BenchError
from helpers_exits import or_invalid

SCENARIO = Path(__file__).parent / "scenarios" / "compare.yaml"
RUNS = ("baseline", "same", "slowed")
TOLERANCE = "20%"
# A 30 ms freeze every 250 ms: ~12% of the ops are due while the server is frozen and
# wait up to 30 ms (latency counts from the intended start), so p99 goes from well under
# a millisecond to ~25 ms: far beyond 20%, in every interval, whatever the machine does.
PAUSE_S = 0.030
PERIOD_S = 0.250

pytestmark = pytest.mark.slow


def _stall_until(server: cluster.LocalServer, done: threading.Event) -> None:
    """Freeze the server for PAUSE_S every PERIOD_S until `done`; always leave it running."""
    try:
        while not done.is_set():
            server.pause()
            done.wait(PAUSE_S)
            server.resume()
            done.wait(PERIOD_S - PAUSE_S)
    finally:
        server.resume()


def _run(url: str, out: Path) -> int:
    """One `bench run`, as a user types it (Locust runs in a child process)."""
    return main(["run", str(SCENARIO), "--target", url, "--out", str(out), "--quiet"])


@pytest.fixture(scope="module")
def memcacheds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[cluster.LocalServer]]:
    """Three independent memcached servers, one per run (stalling one must not touch
    the others)."""
    try:
        group = cluster.start_memcached_pool(len(RUNS), tmp_path_factory.mktemp("servers"))
    except BenchError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield group.servers
    finally:
        group.stop()


@pytest.fixture(scope="module")
def runs(memcacheds: list[cluster.LocalServer],
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three run directories, run concurrently while the `slowed` server stalls."""
    base = tmp_path_factory.mktemp("runs")
    dirs = {name: base / name for name in RUNS}
    slowed = memcacheds[RUNS.index("slowed")]
    done = threading.Event()
    staller = threading.Thread(target=_stall_until, args=(slowed, done))
    staller.start()
    try:
        with ThreadPoolExecutor(len(RUNS)) as pool:
            codes = dict(zip(RUNS, pool.map(_run, [s.url for s in memcacheds], dirs.values())))
    finally:
        done.set()
        staller.join()
    # compare.yaml has no SLO: a completed run exits 0, whatever its latencies (4 when
    # its load generator fell behind: what compare does with that is checked below).
    assert all(code in or_invalid(0) for code in codes.values()), codes
    return dirs


def _get_p99_us(run: Path) -> float:
    return json.loads((run / "summary.json").read_text())["ops"]["get"]["latency_us"]["p99"]


def _compare(runs: dict[str, Path], baseline: str, candidate: str,
             tmp_path: Path) -> tuple[int, str, ElementTree.Element]:
    """`bench compare` through the CLI: exit code, Markdown text, JUnit root."""
    md, junit = tmp_path / f"{candidate}.md", tmp_path / f"{candidate}.xml"
    code = main(["compare", str(runs[baseline]), str(runs[candidate]),
                 "--tolerance", TOLERANCE, "--markdown", str(md), "--junit", str(junit)])
    return code, md.read_text(), ElementTree.parse(junit).getroot()


def _refused(runs: dict[str, Path], sides: tuple[str, str], code: int, markdown: str,
             junit: ElementTree.Element) -> bool:
    """When a side is INVALID, compare must refuse a verdict (exit 4) and say which side
    in its reports: checked, and True. False when both sides are valid."""
    invalid = [side for side in sides
               if json.loads((runs[side] / "summary.json").read_text())["validity"]["valid"]
               is False]
    if not invalid:
        return False
    assert code == EXIT_INVALID, markdown
    assert "No regression verdict" in markdown
    assert all(f"{str(runs[side])} is INVALID" in markdown for side in invalid), markdown
    assert [case.get("name") for case in junit.iter("testcase")] == ["validity"]
    return True


def _failed_cases(junit: ElementTree.Element) -> dict[str, str]:
    """`op stat` -> failure message, for every testcase that failed."""
    return {f"{case.get('classname').rsplit('.', 1)[-1]} {case.get('name')}":
            case.find("failure").get("message")
            for case in junit.iter("testcase") if case.find("failure") is not None}


def test_slowed_server_is_a_regression(runs: dict[str, Path], tmp_path: Path) -> None:
    # The setup did what it claims: p99 rose by 20% or more (by far, in fact).
    assert _get_p99_us(runs["slowed"]) >= 1.2 * _get_p99_us(runs["baseline"])
    code, markdown, junit = _compare(runs, "baseline", "slowed", tmp_path)
    if _refused(runs, ("baseline", "slowed"), code, markdown, junit):
        return
    assert code == 1
    failed = _failed_cases(junit)
    assert "get p99" in failed, failed
    assert failed["get p99"].startswith("get p99 +") and "tolerance 20.0%" in failed["get p99"]
    assert junit.get("failures") == str(len(failed))
    assert "REGRESSION:" in markdown and "get p99" in markdown
    assert "| get | p99 |" in markdown and "**regression**" in markdown


def test_same_configuration_is_not_a_regression(runs: dict[str, Path], tmp_path: Path) -> None:
    code, markdown, junit = _compare(runs, "baseline", "same", tmp_path)
    if _refused(runs, ("baseline", "same"), code, markdown, junit):
        return
    assert code == 0, markdown
    assert _failed_cases(junit) == {}
    assert junit.get("failures") == "0" and junit.get("tests") == "5"  # get x 5 statistics
    assert "No regression beyond 20.0% tolerance" in markdown
    assert "| get | p99 |" in markdown and "**regression**" not in markdown
