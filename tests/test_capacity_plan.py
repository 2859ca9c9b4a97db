"""bench capacity plan: the sizing arithmetic, its inputs, and the report it writes."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from bench.capacity.memory import pool_nodes, request_shares, simulate
from bench.capacity.plan import Forecast, Limits, Measured, make_plan, measured_from_dir
from bench.capacity.slabs import SlabClasses
from bench.capacity.stream import StreamSettings, on_nodes, sample_stream
from bench.cli import main
from bench.errors import InputError
from bench.scenario.model import parse_scenario

SCENARIO = textwrap.dedent("""\
    name: plan-test
    load: {rate: 1000}
    keyspaces:
      - name: k
        keys: 20000
        template: "k:{id}"
        popularity: {dist: zipf, alpha: 0.7}
        value_size: {dist: lognormal, median: 500B, p99: 8KiB, max: 64KiB}
        mix: {get: {weight: 9, on_miss: set}, set: 1}
    """)


def test_plan_takes_the_largest_count_plus_spares() -> None:
    scenario = parse_scenario(SCENARIO)
    forecast = Forecast(peak=100_000, growth=0.3, horizon_years=1)
    stream = sample_stream(scenario, StreamSettings(ops=200_000, warmup_ops=60_000,
                                                    op_rate=forecast.planned_rate),
                           SlabClasses())
    limits = Limits(node_memory=40 * 2**20, nic_bytes_per_s=125e6, headroom=0.2, spare=1,
                    target_hit_ratio=0.9, gutter=True)
    plan = make_plan(scenario, stream, Measured(node_rate=20_000, source="test",
                                                rate_per_connection=1_000),
                     forecast, limits, pool_nodes)
    assert plan.planned_rate == pytest.approx(130_000)
    n = plan.nodes - plan.spare
    assert plan.spare == 1 and n == max(plan.counts.values())
    assert plan.binding == max(plan.counts, key=plan.counts.get)
    assert set(plan.counts) == {"throughput", "memory", "network"}
    throughput = plan.counts["throughput"]
    usable = 20_000 * 0.8
    share = lambda k: request_shares(stream, pool_nodes(k)).max()  # noqa: E731
    assert 130_000 * share(throughput) <= usable < 130_000 * share(throughput - 1)
    memory = plan.counts["memory"]
    pool = lambda k: on_nodes(stream, pool_nodes(k))  # noqa: E731
    assert simulate(pool(memory), limits.node_memory).hit_ratio >= 0.9
    assert memory == 1 or simulate(pool(memory - 1), limits.node_memory).hit_ratio < 0.9
    assert plan.hit_ratio >= 0.9 and plan.memory_per_node <= limits.node_memory
    assert plan.rx_per_node > 0 and plan.tx_per_node > plan.rx_per_node  # gets carry values
    assert plan.connections_per_node == 130
    assert plan.gutter_nodes == math.ceil(130_000 * plan.hottest_share / usable)
    assert any("N+1" in a for a in plan.assumptions)


def test_a_key_hotter_than_a_node_makes_the_plan_refuse() -> None:
    scenario = parse_scenario(SCENARIO.replace("alpha: 0.7", "alpha: 1.2"))
    stream = sample_stream(scenario, StreamSettings(ops=50_000, warmup_ops=10_000,
                                                    op_rate=1e6), SlabClasses())
    with pytest.raises(InputError, match="the hottest key alone gets"):
        make_plan(scenario, stream, Measured(node_rate=20_000, source="test"),
                  Forecast(peak=1e6), Limits(node_memory=2**30), pool_nodes)


def test_measured_rate_from_a_search_directory(tmp_path) -> None:
    (tmp_path / "search.json").write_text(json.dumps({
        "max_rate": 90_000, "max_rate_per_node": 30_000, "confirmed": True,
        "generator_limited": False, "probes": []}))
    measured = measured_from_dir(tmp_path)
    assert measured.node_rate == 30_000 and "confirmed" in measured.source
    (tmp_path / "search.json").write_text(json.dumps({"max_rate": None,
                                                      "generator_limited": True}))
    with pytest.raises(InputError, match="the load generator was the limit"):
        measured_from_dir(tmp_path)
    with pytest.raises(InputError, match="expected a search directory"):
        measured_from_dir(tmp_path / "nothing")


def test_plan_command_writes_the_report_leading_with_the_answer(tmp_path, capsys) -> None:
    out = tmp_path / "plan"
    assert main(["capacity", "plan", "smoke", "--node-rate", "50k", "--peak", "100k",
                 "--growth", "30%", "--horizon", "1y", "--spare", "1",
                 "--node-memory", "64MiB", "--nic", "1Gbit", "--target-hit-ratio", "90%",
                 "--ops", "200000", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "capacity plan: smoke" in printed and "bound by" in printed
    markdown = (out / "capacity.md").read_text()
    assert markdown.startswith("# Capacity plan: smoke\n\n**") and "## Assumptions" in markdown
    page = (out / "capacity.html").read_text()
    assert page.index('class="verdict') < page.index("<img") < page.index("Assumptions")
    plan = json.loads((out / "plan.json").read_text())
    assert plan["planned_rate"] == pytest.approx(130_000)
    assert plan["nodes"] == max(plan["counts"].values()) + 1


@pytest.mark.parametrize("argv, message", [
    (["--peak", "100k", "--node-memory", "64MiB"], "expected one of --measured DIR"),
    (["--node-rate", "50k", "--peak", "100k", "--node-memory", "64MiB", "--nic", "fast"],
     "--nic: expected a bandwidth"),
    (["--node-rate", "50k", "--peak", "100k", "--node-memory", "64MiB", "--horizon", "soon"],
     "--horizon: expected a horizon like 1y"),
])
def test_plan_command_bad_flags_exit_2(argv, message, capsys, tmp_path) -> None:
    assert main(["capacity", "plan", "smoke", "--ops", "20000", "--out", str(tmp_path / "p"),
                 *argv]) == 2
    assert message in capsys.readouterr().err
