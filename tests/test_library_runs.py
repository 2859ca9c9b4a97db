"""Every scenario of the library runs end to end against real servers.

Short and slow-rated (this checks that each scenario's ops work on its kind of target
and produce results, not how fast the servers are): 2 s at 300 ops/s, no prefill, no
report. Scenarios that name a Redis target run against the Redis Cluster fixture, the
others against the memcached pool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.scenario.model import load_scenario, scenario_names
from helpers_exits import or_invalid

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", scenario_names())
def test_library_scenario_runs(name: str, memcached_pool: Any, redis_cluster: Any,
                               tmp_path: Path) -> None:
    scenario = load_scenario(name)
    wants_redis = (scenario.target or "").startswith(("redis", "local:redis"))
    target = redis_cluster.url if wants_redis else memcached_pool.url
    out = tmp_path / "run"
    rc = main(["run", name, "--target", target, "--duration", "2s", "--warmup", "0s",
               "--rate", "300", "--no-prefill", "--no-report", "--quiet", "--out", str(out)])
    # the library's SLO thresholds are not what is tested here, nor this machine's load
    assert rc in or_invalid(0, 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] is True
    assert summary["total"]["count"] >= 300
    assert summary["total"]["errors"] == 0, summary["total"]["errors_by_kind"]
