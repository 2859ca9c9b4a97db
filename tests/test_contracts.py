"""The typed contracts between stages: run.json (`RunInfo`) and summary.json (`Summary`,
`Verdict`) read back to equal objects, carry a format, refuse one they do not know, and
run.json records the interval length the run was recorded with."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.analysis.runs import load_runs, read_summary, summarize, write_summary
from bench.analysis.summary import PoolFigures, Summary
from bench.cli import main
from bench.errors import InputError
from bench.loadgen.runconfig import LoadPlan, RunConfig
from bench.results.recorder import INTERVAL_S, Recorder
from bench.results.rundir import (RUN_JSON, SUMMARY_JSON, Calibration, FaultWindow,
                                  MachineFingerprint, MeasuredWindow, RunInfo, RunScenario,
                                  RunTarget, RunWriter, read_run, read_run_info)
from bench.scenario.slo import parse_slo
from helpers_rundir import START, make_run_dir, run_info

BASELINES = Path(__file__).resolve().parents[1] / "results" / "baselines"
SLO = {"objectives": [{"ops": ["get"], "percentile": "90%", "under": "1ms"}],
       "errors": {"max": "1%"}, "hit_ratio": {"min": "50%"},
       "window": "2s", "windows_compliant": "50%"}


def _run(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path, {"get": [[100] * 10, [5000] * 10, [100] * 10],
                                   "set": [[300], [400]]},
                        counters={"get": [{"hits": 8, "misses": 2, "errors": {"timeout": 1}}]},
                        slo=SLO)


def _rewrite(path: Path, **changes: object) -> None:
    """Change top-level keys of a JSON file (None removes the key)."""
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))


def test_summary_and_verdict_read_back_equal(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    run = load_runs([run_dir])
    summary = summarize(run, parse_slo(SLO))
    assert summary.slo is not None and summary.slo.errors is not None
    assert summary.slo.errors.windows is not None  # the budget's windows, with burn rate
    write_summary(run_dir, summary)
    written = json.loads((run_dir / SUMMARY_JSON).read_text())
    assert written["format"] == 1 and list(written)[0] == "format"
    assert "worst_burn_rate" in written["slo"]["errors"]["windows"]
    assert "worst_burn_rate" not in written["slo"]["objectives"][0]["windows"]
    assert read_summary(run_dir) == summary
    assert Summary.from_json(summary.to_json()).to_json() == written


def test_unknown_summary_format_is_refused_in_one_line(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100]]})
    write_summary(run_dir, summarize(load_runs([run_dir]), None))
    _rewrite(run_dir / SUMMARY_JSON, format=2)
    with pytest.raises(InputError) as caught:
        read_summary(run_dir)
    assert str(caught.value) == (f"{run_dir / SUMMARY_JSON}: format 2 is not known; "
                                 "this cachebench reads format 1 (was the file written by a "
                                 "newer cachebench?)")


def test_run_json_has_a_format_and_a_newer_one_exits_2(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    run_dir = _run(tmp_path)
    assert json.loads((run_dir / RUN_JSON).read_text())["format"] == 1
    _rewrite(run_dir / RUN_JSON, format=7)
    assert main(["analyze", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err == (f"bench: {run_dir / RUN_JSON}: format 7 is not known; this "
                   "cachebench reads format 1 (was the file written by a newer cachebench?)\n")
    _rewrite(run_dir / RUN_JSON, format="1")
    with pytest.raises(InputError, match='format "1" is not known'):
        read_run_info(run_dir)


def test_run_json_without_format_is_format_1(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    described = read_run_info(run_dir)
    _rewrite(run_dir / RUN_JSON, format=None)
    assert "format" not in json.loads((run_dir / RUN_JSON).read_text())
    assert read_run_info(run_dir) == described


@pytest.mark.parametrize("name", sorted(p.name for p in BASELINES.iterdir() if p.is_dir()))
def test_committed_baselines_are_read(name: str) -> None:
    """The committed baselines predate formats: their run.json and summary.json read as 1."""
    run = load_runs([BASELINES / name])
    assert run.runs[0].scenario is not None and run.runs[0].status == "completed"
    assert run.runs[0].measured is not None and run.duration_s > 0
    stored = read_summary(BASELINES / name)
    assert stored.total.count == summarize(run, None).total.count


def test_machine_and_calibration_are_typed_and_keep_their_keys(tmp_path: Path) -> None:
    """run.json `machine` and `calibration` (issue 9) read back as records, written with
    the keys they were recorded with; a failed calibration keeps only its error."""
    machine = MachineFingerprint(cpu_model="CPU X", cpus=2, kernel="6.1", virtualisation="none",
                                 arch="x86_64")
    description = RunInfo(argv=["bench", "run"], machine=machine,
                          calibration=Calibration(round_trips=1000, p50_us=10.4, p99_us=20.0))
    with RunWriter(tmp_path, description, START) as writer:
        writer.finish("completed", ended=START + 1)
    written = json.loads((tmp_path / RUN_JSON).read_text())
    assert written["machine"] == {"cpu_model": "CPU X", "cpus": 2, "kernel": "6.1",
                                  "virtualisation": "none", "arch": "x86_64"}
    assert written["calibration"] == {"round_trips": 1000, "p50_us": 10.4, "p99_us": 20.0}
    info = read_run_info(tmp_path)
    assert info.machine == machine and info.calibration == description.calibration
    assert info.calibration.measured
    assert machine.differences(replace(machine, kernel="6.2", arch="arm64")) == [
        "kernel '6.1' vs '6.2'"]
    failed = Calibration(error="ConnectionRefusedError: nope")
    assert failed.to_json() == {"error": "ConnectionRefusedError: nope"}
    assert not failed.measured
    baseline = read_run_info(BASELINES / "smoke-memcached")
    assert baseline.machine is not None and baseline.calibration is not None
    assert baseline.calibration.measured


def test_malformed_run_json_is_input_error(tmp_path: Path) -> None:
    """A field of the wrong type is named (RunInfo.check_json); what the types allow but
    the record cannot take is "malformed", in one line all the same."""
    run_dir = _run(tmp_path)
    _rewrite(run_dir / RUN_JSON, measured={"from": 1.0})
    with pytest.raises(InputError, match=r"run.json: measured.to: expected a number, got null"):
        read_run(run_dir)
    _rewrite(run_dir / RUN_JSON, measured=None, faults=[{"kind": "stall"}])
    with pytest.raises(InputError, match=r"run.json: malformed: KeyError: 'node'"):
        read_run(run_dir)


def test_writer_owns_run_json_and_records_its_interval(tmp_path: Path) -> None:
    """What the caller describes is kept; interval, times, status and the measured window
    are the writer's, whatever the description said."""
    description = RunInfo(scenario=RunScenario(name="x", seed=3),
                          target=RunTarget(url="memcached://h:1", kind="memcached"),
                          interval_s=9.0, status="completed", reason="not yours")
    with RunWriter(tmp_path, description, START, interval_s=0.5) as writer:
        started = json.loads((tmp_path / RUN_JSON).read_text())
        writer.set_measured(START + 1, START + 3)
        writer.finish("interrupted", ended=START + 4, reason="Ctrl-C")
    assert started == {"format": 1, "scenario": {"name": "x", "seed": 3},
                       "target": {"url": "memcached://h:1", "kind": "memcached"},
                       "interval_s": 0.5, "started": "2025-11-25T12:00:00.000Z",
                       "ended": None, "status": "running", "completed": False}
    info = read_run_info(tmp_path)
    assert info.to_json() == json.loads((tmp_path / RUN_JSON).read_text())
    assert (info.interval_s, info.status, info.reason) == (0.5, "interrupted", "Ctrl-C")
    assert info.measured == MeasuredWindow(START + 1, START + 3)
    assert info.to_json()["measured"] == {"from": START + 1, "to": START + 3}
    assert info.scenario == description.scenario and info.target == description.target


def test_run_json_interval_is_the_recorded_one(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100], [200]]}, interval_s=0.5)
    run = read_run(run_dir)
    assert run.info.interval_s == 0.5
    assert {row.length for row in run.timeline} == {0.5}


def test_one_interval_length_from_config_to_recorder() -> None:
    """The default interval is the recorder's constant, and a RunConfig carries it and the
    run's description to the Locust processes unchanged."""
    plan = LoadPlan(mode="open", rate=10.0, arrival="poisson", users=1, think_s=0.0,
                    warmup_s=0.0, duration_s=1.0, prefill=False, seed=1)
    description = RunInfo(scenario=RunScenario(name="x", resolved={"name": "x"}),
                          slo={"objectives": []}, argv=["bench", "run"])
    config = RunConfig(scenario={"name": "x"}, load=plan, target_url="memcached://h:1",
                       timeout_s=1.0, run_info=description)
    assert config.interval_s == INTERVAL_S == Recorder().interval_s
    assert RunConfig.from_json(config.to_json()) == config


def test_writer_records_measure_from_at_once_and_the_faults_after_the_run(tmp_path: Path) -> None:
    """measure_from is in the first run.json (bench.faults times the faults by it); the
    fault windows are added once the run finished, the rest of run.json kept."""
    with RunWriter(tmp_path, RunInfo(argv=["bench", "run"]), START,
                   measure_from=START + 2) as writer:
        assert json.loads((tmp_path / RUN_JSON).read_text())["measure_from"] == START + 2
        writer.finish("completed", ended=START + 5)
    finished = read_run_info(tmp_path)
    assert finished.measure_from == START + 2 and finished.faults is None
    kill = FaultWindow(kind="kill", node=2, address="127.0.0.1:2", at_s=1.0,
                       start=START + 3, end=START + 4)
    failed = FaultWindow(kind="stall", node=1, address="127.0.0.1:1", at_s=2.0,
                         start=START + 4, end=START + 4, error="TargetError: gone")
    RunWriter.record_faults(tmp_path, [kill, failed])
    info = read_run_info(tmp_path)
    assert info.faults == [kill, failed] and replace(info, faults=None) == finished
    assert json.loads((tmp_path / RUN_JSON).read_text())["faults"] == [
        {"kind": "kill", "node": 2, "address": "127.0.0.1:2", "at_s": 1.0,
         "from": START + 3, "to": START + 4},
        {"kind": "stall", "node": 1, "address": "127.0.0.1:1", "at_s": 2.0,
         "from": START + 4, "to": START + 4, "error": "TargetError: gone"}]


def test_phases_and_gutter_read_back_equal(tmp_path: Path) -> None:
    """A run with a fault and a gutter pool: summary.json `phases` and `gutter` in the
    feature's shape, read back to equal records; a plain run has neither key."""
    main_node, gutter_node = "127.0.0.1:11211", "127.0.0.1:11212"
    stats = ({main_node: {"get_hits": 0, "get_misses": 0},
              gutter_node: {"get_hits": 0, "get_misses": 0}},
             {main_node: {"get_hits": 50, "get_misses": 10},
              gutter_node: {"get_hits": 6, "get_misses": 2}})
    run_dir = make_run_dir(tmp_path, {"get": [[100] * 10, [5000] * 10, [100] * 10]},
                           counters={"get": [{"hits": 8, "misses": 2},
                                             {"hits": 5, "misses": 3, "errors": {"timeout": 2}},
                                             {"hits": 8, "misses": 2}]},
                           server_stats=stats)
    stall = FaultWindow(kind="stall", node=1, address=main_node, at_s=1.0,
                        start=START + 1, end=START + 2)
    target = {**run_info(None)["target"], "tls": False, "options": {"gutter": [gutter_node]}}
    _rewrite(run_dir / RUN_JSON, target=target, faults=[stall.to_json()])
    summary = summarize(load_runs([run_dir]), None)
    assert summary.phases is not None and summary.gutter is not None
    assert summary.phases.windows == [stall]
    assert summary.phases.before is not None and summary.phases.before.errors == 0
    assert summary.phases.during is not None and summary.phases.during.errors_by_kind["timeout"] == 2
    assert summary.phases.after is not None and summary.phases.after.hit_ratio == 0.8
    assert summary.phases.timing.first_error_s == 0.0
    assert summary.gutter.gutter == PoolFigures(hits=6, misses=2, hit_ratio=0.75)
    write_summary(run_dir, summary)
    written = json.loads((run_dir / SUMMARY_JSON).read_text())
    assert list(written["phases"]) == ["windows", "before", "during", "after", "timing"]
    assert written["phases"]["windows"][0]["from"] == START + 1
    assert list(written["phases"]["timing"]) == ["first_error_s", "tko_s", "p99_recovered_s",
                                                 "hit_ratio_recovered_s"]
    assert written["gutter"] == {"gutter": {"hits": 6, "misses": 2, "hit_ratio": 0.75},
                                 "main": {"hits": 50, "misses": 10, "hit_ratio": 50 / 60}}
    assert written["target"]["options"] == {"gutter": [gutter_node]}
    assert read_summary(run_dir) == summary
    plain = summarize(load_runs([_run(tmp_path / "plain")]), None).to_json()
    assert "phases" not in plain and "gutter" not in plain
