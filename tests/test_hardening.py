"""Issue 12 on real files: bad input is one line and exit 2, never a traceback; no data,
a duplicate or an interrupted run is never a pass; `bench cluster down` never signals a
process it did not start. (Signals, lost workers and targets: test_hardening_run.py.)"""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from bench import cluster, faults
from bench.cli import main
from bench.errors import OutputError
from bench.results.recorder import histogram_from_values
from bench.results.rundir import RunInfo, RunWriter, new_run_dir, read_run_info
from bench.scenario.yamldoc import MAX_DOCUMENT_BYTES
from helpers_rundir import START, make_run_dir

SLO = {"objectives": [{"ops": ["get"], "percentile": "99%", "under": "1ms"}],
       "errors": {"max": "1%"}}
#: Every command that reads a run directory; RUN is the damaged one, GOOD a sound one.
COMMANDS = [["analyze", "RUN"], ["report", "RUN"], ["export", "RUN", "--csv"],
            ["export", "RUN", "--prometheus"], ["compare", "GOOD", "RUN"]]


def one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture, *expected: str) -> str:
    """Run `bench ARGV`: exit 2 and a one-line message holding every `expected` piece."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: ") and err.count("\n") == 1, err
    for piece in expected:
        assert piece in err, err
    return err


# --------------------------------------------------------------------------- item 1, 11


def test_a_run_stopped_from_outside_is_marked_interrupted(tmp_path: Path) -> None:
    """What `bench run` does to the run directory when a signal stopped it: a run.json
    still "running" (Locust killed before it finished) becomes "interrupted"; one Locust
    finished as "interrupted" keeps its own reason after the signal's; a completed run is
    left alone."""
    writer = RunWriter(tmp_path / "running", RunInfo(), START)
    assert RunWriter.mark_interrupted(tmp_path / "running", "stopped by SIGTERM")
    info = read_run_info(tmp_path / "running")
    assert (info.status, info.completed, info.reason) == ("interrupted", False,
                                                          "stopped by SIGTERM")
    assert info.ended is not None
    writer.finish("interrupted")  # closes its files; run.json is rewritten as it sees it

    with RunWriter(tmp_path / "early", RunInfo(), START) as early:
        early.finish("interrupted", reason="stopped 3.0 s before the end of the window")
    assert RunWriter.mark_interrupted(tmp_path / "early", "stopped by SIGINT")
    assert read_run_info(tmp_path / "early").reason == \
        "stopped by SIGINT: stopped 3.0 s before the end of the window"

    completed = make_run_dir(tmp_path, {"get": [[100]]})
    before = (completed / "run.json").read_text()
    assert not RunWriter.mark_interrupted(completed, "stopped by SIGTERM")
    assert (completed / "run.json").read_text() == before
    assert not RunWriter.mark_interrupted(tmp_path / "nothing", "stopped by SIGTERM")


# --------------------------------------------------------------------------- item 3


@pytest.mark.parametrize("hlog", ["", "header"], ids=["empty", "header-only"])
def test_no_latency_data_is_never_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         hlog: str) -> None:
    """The timeline says ops ran and none failed (the error budget alone would pass), but
    the latency log holds no histogram: the latency objective has no samples."""
    run_dir = make_run_dir(tmp_path, {"get": [[100] * 10]}, slo=SLO)
    log = run_dir / "latency.hlog"
    log.write_text("".join(line for line in log.read_text().splitlines(keepends=True)
                           if hlog and line.startswith(("#", '"'))))
    assert main(["analyze", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "99% of get under 1 ms: no samples" in out
    assert "PASS: SLO met" not in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["slo"]["passed"] is False
    assert summary["slo"]["no_data"] == ["99% of get under 1 ms"]


def test_an_slo_whose_ops_never_ran_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    slo = {"objectives": [{"ops": ["set"], "percentile": "99%", "under": "1ms"}]}
    run_dir = make_run_dir(tmp_path, {"get": [[100]]}, slo=slo)
    assert main(["analyze", str(run_dir)]) == 1
    assert "99% of set under 1 ms: no samples" in capsys.readouterr().out


# --------------------------------------------------------------------------- item 11


def test_an_interrupted_run_is_partial_not_a_pass(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100] * 10]}, slo=SLO, status="interrupted")
    assert main(["analyze", str(run_dir)]) == 3
    out = capsys.readouterr().out
    assert "NOT A PASS: SLO met over what was measured (partial" in out
    assert json.loads((run_dir / "summary.json").read_text())["slo"]["partial"] is True
    assert main(["report", str(run_dir)]) == 0
    assert "NOT A PASS" in (run_dir / "report.html").read_text()
    failing = make_run_dir(tmp_path, {"get": [[5000] * 10]}, slo=SLO, status="interrupted",
                           name="failing")
    assert main(["analyze", str(failing)]) == 1
    assert "FAIL (partial: the run did not complete)" in capsys.readouterr().out


def test_the_same_run_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100]]})
    one_line_exit_2(["analyze", str(run_dir), str(run_dir)], capsys, "the same run as")
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["analyze", str(run_dir), str(copy)]) == 0  # no run_id: two directories
    for path in (run_dir, copy):
        info = json.loads((path / "run.json").read_text())
        (path / "run.json").write_text(json.dumps({**info, "run_id": "abc123"}))
    one_line_exit_2(["analyze", str(run_dir), str(copy)], capsys, str(copy), "RUN_DIR",
                    "the same run as")


# --------------------------------------------------------------------------- item 7


def command_on(command: list[str], run_dir: Path, good: Path) -> list[str]:
    return [{"RUN": str(run_dir), "GOOD": str(good)}.get(part, part) for part in command]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_non_utf8_run_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       command: list[str]) -> None:
    good = make_run_dir(tmp_path, {"get": [[100]] * 10}, name="good")
    run_dir = make_run_dir(tmp_path, {"get": [[100]] * 10})
    (run_dir / "run.json").write_bytes(b"\xff\xfe{\x00}")
    one_line_exit_2(command_on(command, run_dir, good), capsys,
                    f"{run_dir / 'run.json'}: expected UTF-8 JSON")


@pytest.mark.parametrize("field, value, expected", [
    ("interval_s", "abc", 'interval_s: expected a number, got "abc"'),
    ("interval_s", 0, "interval_s: expected a number of seconds > 0"),
    ("interval_s", True, "interval_s: expected a number, got true"),
    ("started", 5, "started: expected a string or null, got 5"),
    ("completed", "yes", "completed: expected true or false"),
    ("measured", {"from": "x", "to": 2}, 'measured.from: expected a number, got "x"'),
    ("target", {"url": "u", "nodes": "a,b"}, "target.nodes: expected a list"),
    ("scenario", ["smoke"], "scenario: expected an object or null"),
    ("argv", "bench run", "argv: expected a list or null"),
])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_wrong_types_in_run_json_name_the_field(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                command: list[str], field: str, value: Any,
                                                expected: str) -> None:
    good = make_run_dir(tmp_path, {"get": [[100]] * 10}, name="good")
    run_dir = make_run_dir(tmp_path, {"get": [[100]] * 10})
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, field: value}))
    one_line_exit_2(command_on(command, run_dir, good), capsys,
                    f"{run_dir / 'run.json'}: {expected}")


def test_report_out_pointing_at_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100]]})
    one_line_exit_2(["report", str(run_dir), "--out", str(tmp_path)], capsys,
                    "--out: is a directory", str(tmp_path / "report.html"))


# --------------------------------------------------------------------------- item 9, 11


def test_oversize_scenario_is_refused_before_parsing(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """The issue's case: a 33 MB scenario with 2M keys of a choice variable."""
    scenario = tmp_path / "big.yaml"
    with open(scenario, "w") as out:
        out.write("name: big\nkeyspaces:\n  - name: a\n    keys: 10\n    mix: {get: 1}\n"
                  "    vars:\n      x:\n")
        out.writelines(f"        - value-{i:08d}\n" for i in range(2_000_000))
    assert scenario.stat().st_size > 30 * MAX_DOCUMENT_BYTES
    for argv in (["scenarios", "validate", str(scenario)], ["run", str(scenario)]):
        one_line_exit_2(argv, capsys, f"{scenario}: larger than 1 MiB")


def test_oversize_slo_file_is_refused_before_parsing(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """An SLO file goes through the same cap as a scenario: one line, exit 2."""
    slo = tmp_path / "big-slo.yaml"
    slo.write_text("objectives:\n" + "# padding\n" * (MAX_DOCUMENT_BYTES // 10 + 1))
    run = make_run_dir(tmp_path, {"get": [[100]]})
    one_line_exit_2(["analyze", str(run), "--slo", str(slo)], capsys,
                    f"{slo}: larger than 1 MiB")


def test_a_directory_given_as_scenario(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    one_line_exit_2(["run", str(tmp_path)], capsys, f"{tmp_path}: is a directory; expected a "
                                                    "scenario YAML file")


def test_expect_workers_split_says_workers(capsys: pytest.CaptureFixture) -> None:
    one_line_exit_2(["run", "smoke", "--master", "--expect-workers", "3", "--users", "4"],
                    capsys, "--users: 4 users do not split evenly over 3 workers")


# --------------------------------------------------------------------------- item 4


@pytest.mark.parametrize("flags, expected", [
    (["--users", "100000000000000000000"], "--users: expected 1 to 100000 users"),
    (["--users", "0"], "--users: expected 1 to 100000 users, got 0"),
    (["--rate", "1e12"], "--rate: expected more than 0 to 10000000 ops/s, got 1e+12"),
    (["--rate", "1e400"], "--rate: expected more than 0 to 10000000 ops/s, got inf"),
    (["--duration", "1e400s"], "--duration: expected more than 0 to 604800 s, got inf"),
    (["--duration", "0s"], "--duration: expected more than 0 to 604800 s, got 0"),
    (["--warmup", "1e400s"], "--warmup: expected 0 to 86400 s, got inf"),
    (["--think", "2h", "--closed"], "--think: expected 0 to 3600 s, got 7200"),
    (["--timeout", "1e400s"], "--timeout: expected more than 0 to 60 s, got inf"),
    (["--timeout", "0s"], "--timeout: expected more than 0 to 60 s, got 0"),
    (["--web-port", "99999"], "--web-port: expected 1 to 65535, got 99999"),
    (["--master-bind-port", "0"], "--master-bind-port: expected 1 to 65535, got 0"),
    (["--processes", "0"], "--processes: expected -1 (one per core) or 1 to 1024, got 0"),
    (["--processes", "5000"], "--processes: expected -1 (one per core) or 1 to 1024"),
    (["--master", "--expect-workers", "0"], "--expect-workers: expected 1 to 10000 workers"),
    (["--seed", str(2**63)], "--seed: expected 0 to 9223372036854775807"),
    (["--seed", "-1"], "--seed: expected 0 to 9223372036854775807, got -1"),
])
def test_absurd_numbers_are_refused_with_the_range(flags: list[str], expected: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Refused at parse time: no target is contacted (none is running here)."""
    one_line_exit_2(["run", "smoke", "--target", "memcached://127.0.0.1:9", *flags], capsys,
                    expected)


def test_scenario_quantities_are_bounded_and_named(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text("name: long\nload: {rate: 100, duration: 1e300s}\n"
                        "keyspaces:\n  - {name: a, keys: 10, mix: {get: 1}}\n")
    one_line_exit_2(["run", str(scenario)], capsys,
                    f"{scenario}: load.duration: expected more than 0 to 604800 s")
    scenario.write_text("name: big\nload: {rate: 100}\n"
                        "keyspaces:\n  - {name: a, keys: 10, value_size: 1024GiB, mix: {get: 1}}\n")
    one_line_exit_2(["run", str(scenario)], capsys,
                    f"{scenario}: keyspaces[0].value_size: values of up to 1,099,511,627,776 "
                    "bytes; expected at most 536,870,912")


def test_worker_flags_are_bounded(capsys: pytest.CaptureFixture) -> None:
    one_line_exit_2(["worker", "--master-host", "127.0.0.1", "--master-port", "0"], capsys,
                    "--master-port: expected 1 to 65535, got 0")


# --------------------------------------------------------------------------- item 10


def test_cluster_down_spares_a_recycled_pid_running_the_same_program(
        memcached_server: cluster.LocalServer, tmp_path: Path) -> None:
    """The state file names a memcached at this pid, but the process there started at
    another time (a recycled pid), or, in a state file without start times, does not
    listen on the recorded port: it is someone else's memcached, left alone."""
    recycled = cluster.LocalServer(**{**vars(memcached_server), "name": "recycled",
                                      "started_ticks": memcached_server.started_ticks - 1})
    old_format = cluster.LocalServer(**{**vars(memcached_server), "name": "old-format",
                                        "started_ticks": None,
                                        "port": cluster.free_port()})
    state = tmp_path / "state"
    state.mkdir()
    cluster.ClusterState(state, [recycled, old_format], {}, "then").save()
    assert cluster.cluster_down(state) == {"recycled": "foreign", "old-format": "foreign"}
    assert memcached_server.alive() and memcached_server.answering()


def test_cluster_down_stops_its_own_servers_from_an_old_state_file(tmp_path: Path) -> None:
    """A state file written before start times were recorded: the port decides."""
    server = cluster.start_memcached(0, tmp_path)
    try:
        old = cluster.LocalServer(**{**vars(server), "started_ticks": None})
        cluster.ClusterState(tmp_path, [old], {}, "then").save()
        assert cluster.cluster_down(tmp_path) == {server.name: "stopped"}
        assert not cluster.pid_alive(server.pid)
    finally:
        server.stop()


def test_cluster_down_stops_a_server_that_a_fault_restarted(tmp_path: Path) -> None:
    """A scenario's restart fault gives a server a new pid; bench.faults writes it into the
    cluster state with its start time, so `bench cluster down` knows the new process as
    its own, while the old record (pid and start time) names no server of ours."""
    server = cluster.start_memcached(0, tmp_path)
    cluster.ClusterState(tmp_path, [server], {}, "then").save()
    restarted = server.restart()
    try:
        assert restarted.pid != server.pid
        assert restarted.started_ticks == cluster.start_ticks(restarted.pid)
        faults._record_pid(tmp_path, restarted)
        saved, = cluster.ClusterState.load(tmp_path).servers
        assert (saved.pid, saved.started_ticks) == (restarted.pid, restarted.started_ticks)
        assert not server.alive() and saved.alive()
        assert cluster.cluster_down(tmp_path) == {server.name: "stopped"}
        assert not cluster.pid_alive(restarted.pid)
    finally:
        restarted.stop()


# --------------------------------------------------------------------------- item 5


def test_full_disk_while_analysing_keeps_the_old_summary(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """/dev/full answers every write with ENOSPC: the summary's temporary file is made to
    land there. One line, exit 3, and the previous summary.json is untouched."""
    run_dir = make_run_dir(tmp_path, {"get": [[100]]})
    (run_dir / "summary.json").write_text("previous")
    (run_dir / ".summary.json.tmp").symlink_to("/dev/full")
    assert main(["analyze", str(run_dir)]) == 3
    err = capsys.readouterr().err
    assert err == f"bench: cannot write {run_dir}: no space left on device\n"
    assert (run_dir / "summary.json").read_text() == "previous"
    elsewhere = tmp_path / "elsewhere.json"
    assert main(["analyze", str(run_dir), "--out", str(elsewhere)]) == 0
    assert json.loads(elsewhere.read_text())["total"]["count"] == 1
    assert (run_dir / "summary.json").read_text() == "previous"


def test_full_disk_while_writing_the_report_leaves_no_truncated_file(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100]] * 3})
    (run_dir / ".report-spectrum.png.tmp").symlink_to("/dev/full")
    assert main(["report", str(run_dir)]) == 3
    assert capsys.readouterr().err == f"bench: cannot write {run_dir}: no space left on device\n"
    assert not list(run_dir.glob("report*"))
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file() and (tmp_path / "r-spectrum.png").stat().st_size


def test_unwritable_results_directory_is_one_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """A results root that cannot be created (a file is in the way): exit 3, one line."""
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write .*file/results: not a directory"):
        new_run_dir(tmp_path / "file" / "results", "smoke")


# --------------------------------------------------------------------------- item 12


def test_interval_histograms_are_freed_without_the_cyclic_gc() -> None:
    """The Locust processes collect cycles rarely; hdrh's histogram <-> encoder cycle
    kept every interval's histograms (~140 KB each) alive until a full collection.
    Without that cycle a histogram goes the moment its last reference does."""
    gc.disable()
    try:
        histogram = histogram_from_values(np.array([100, 200, 300]))
        encoded = histogram.encode()
        gone = weakref.ref(histogram)
        del histogram
        assert gone() is None
    finally:
        gc.enable()
    assert HdrHistogram.decode(encoded).get_total_count() == 3
