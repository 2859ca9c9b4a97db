"""The shared vocabulary holds together: every op a scenario may ask for runs and is
recorded under a name that SLOs accept, on a real Redis (the one target with every op)."""

from __future__ import annotations

import itertools

import pytest

from bench.errors import InputError
from bench.scenario.model import Scenario
from bench.scenario.slo import parse_slo
from bench.scenario.trace import TRACE_OPS
from bench.targets import open_target, parse_target
from bench.vocabulary import (ALL_OPS, COUNTER_OPS, LOOKUP_OPS, PATTERN_OPS, RECORDED_OPS,
                              SIMPLE_OPS)
from bench.workload.executor import Executor
from bench.workload.ops import Workload

#: A scenario with every op of the vocabulary, so an op added there is exercised here.
EVERY_OP = Scenario.from_json({
    "name": "every-op", "load": {"rate": 10},
    "keyspaces": [
        {"name": "blobs", "keys": 20,
         "mix": {op: 1 for op in ALL_OPS if op not in COUNTER_OPS}},
        {"name": "counters", "keys": 20, "values": "counter",
         "mix": {op: 1 for op in COUNTER_OPS}}]})


def recorded_names(url: str, op_name: str) -> list[str]:
    """The names the executor records for the first two ops of mix entry `op_name`."""
    stream = (op for op in Workload(EVERY_OP).stream() if op.kind == op_name)
    with open_target(parse_target(url), timeout=1.0) as target:
        executor = Executor(target, EVERY_OP, sleep=lambda _: None)
        samples = [s for op in itertools.islice(stream, 2) for s in executor.execute(op)]
    assert samples and not any(s.error for s in samples)
    return [s.name for s in samples]


@pytest.mark.parametrize("op_name", ALL_OPS)
def test_every_op_is_recorded_under_names_an_slo_accepts(op_name: str, redis_server) -> None:
    names = recorded_names(redis_server.url, op_name)
    assert set(names) <= set(RECORDED_OPS)
    if op_name in SIMPLE_OPS:
        assert names[0] == op_name
    parse_slo({"objectives": [{"ops": sorted(set(names)), "percentile": "99%",
                               "under": "1ms"}]})


@pytest.mark.parametrize("pattern", PATTERN_OPS)
def test_an_slo_refuses_a_pattern_name_results_never_carry(pattern: str) -> None:
    with pytest.raises(InputError, match=f"unknown op '{pattern}'"):
        parse_slo({"objectives": [{"ops": [pattern], "percentile": "99%", "under": "1ms"}]})


def test_derived_op_lists_stay_inside_the_op_names() -> None:
    assert set(LOOKUP_OPS) <= set(RECORDED_OPS)
    assert set(COUNTER_OPS) <= set(ALL_OPS)
    assert set(TRACE_OPS.values()) <= set(SIMPLE_OPS)
