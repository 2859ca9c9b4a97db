"""Property: whatever numbers a user types, `bench run` either refuses them in one line
(exit 2) or plans a run whose every quantity is finite and within its bounds.

Random values go to every numeric flag of `bench run` and to the numeric fields of a
scenario file, through the same parse and validate path as a real run (`cli` argument
parsing, `commands` turning flags into `RunOptions`, the scenario loaded, then
`driver.prepare`), which stops before anything touches the network. A
traceback, a multi-line message, an unbounded quantity or a value that strict JSON
cannot hold (run.json) fails the property.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import commands, driver, preflight
from bench.cli import build_parser
from bench.errors import InputError
from bench.loadgen.runconfig import LIMITS
from bench.scenario.model import load_scenario

#: Numbers as people (and typos) write them: huge, tiny, negative, inf, nan, exponents.
NUMBERS = st.one_of(
    st.integers(-10, 10**6),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e400, -1e400, 1e-400, 2**63, 2**63 - 1, 2**64, 65535, 65536]),
)
UNITS = ["", "", "s", "ms", "us", "m", "h", "d", "k", "k/s", "M", "%", "B", "KiB", "GiB",
         "x", " "]


def number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


#: What a flag's argument may look like: a number, maybe with a unit, or garbage.
FLAG_TEXT = st.one_of(
    NUMBERS.map(number_text),
    st.tuples(NUMBERS.map(number_text), st.sampled_from(UNITS)).map("".join),
    st.sampled_from(["1e400s", "1e12", "inf", "nan", "-1", "", "1h30m", "5k/s", "0x10"]),
)
NUMERIC_FLAGS = ["--duration", "--warmup", "--rate", "--think", "--users", "--processes",
                 "--seed", "--timeout", "--web-port", "--master-bind-port",
                 "--expect-workers"]


def yaml_value(value: Any) -> str:
    """A YAML scalar: numbers as YAML writes them (.inf, .nan), strings quoted."""
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if isinstance(value, (int, float)):
        return number_text(value)
    return json.dumps(value)


SCENARIO_VALUE = st.one_of(NUMBERS, FLAG_TEXT)
SCENARIO_FIELDS = {  # field -> where it goes in the template below
    "rate": "load", "users": "load", "duration": "load", "warmup": "load", "think": "load",
    "seed": "top", "keys": "space", "value_size": "space", "ttl": "space"}


def scenario_text(values: dict[str, Any]) -> str:
    load = {"rate": 100, "users": 2, "duration": "2s", "warmup": "0s", **{
        k: v for k, v in values.items() if SCENARIO_FIELDS[k] == "load"}}
    space = {"name": "a", "keys": 100, "mix": None, **{
        k: v for k, v in values.items() if SCENARIO_FIELDS[k] == "space"}}
    fields = ", ".join(f"{k}: {yaml_value(v)}" for k, v in load.items())
    space_fields = ", ".join(f"{k}: {yaml_value(v)}" if k != "mix" else "mix: {get: 1}"
                             for k, v in space.items())
    seed = f"seed: {yaml_value(values['seed'])}\n" if "seed" in values else ""
    return f"name: prop\n{seed}load: {{{fields}}}\nkeyspaces:\n  - {{{space_fields}}}\n"


def check_planned(ready: driver.Prepared) -> None:
    """Every quantity of a planned run finite and within its LIMITS; run.json material
    holds only what strict JSON can."""
    plan = ready.plan
    for attribute, (name, _) in preflight.PLAN_SOURCES.items():
        value = getattr(plan, attribute)
        if value is not None:
            LIMITS[name].check(value, name)  # raises when out of range
    LIMITS["timeout"].check(ready.timeout_s, "timeout")
    assert all(math.isfinite(b) and b >= 0 for b in ready.space_bytes)
    json.dumps(dataclasses.asdict(plan), allow_nan=False)
    json.dumps(ready.scenario.to_json(), allow_nan=False)


def prepare(args: argparse.Namespace) -> driver.Prepared:
    """What `bench run` does with its arguments before it contacts the target."""
    return driver.prepare(load_scenario(args.scenario), commands._run_options(args))


def prepare_or_refuse(argv: list[str]) -> None:
    """The property itself: a clean refusal or a bounded plan, nothing else."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse: a non-integer for an int flag
        assert exit_.code == 2
        return
    try:
        ready = prepare(args)
    except InputError as err:
        assert err.exit_code == 2 and "\n" not in str(err), str(err)
        return
    check_planned(ready)


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prop") / "prop.yaml"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flags=st.dictionaries(st.sampled_from(NUMERIC_FLAGS), FLAG_TEXT, max_size=5),
       modes=st.sets(st.sampled_from(["--closed", "--master"])))
def test_random_flags_are_refused_cleanly_or_bounded(flags: dict[str, str],
                                                     modes: set[str]) -> None:
    argv = ["run", "smoke", *sorted(modes)]
    for flag, text in flags.items():
        argv += [f"{flag}={text}"]  # `=`: a value that starts with `-` stays a value
    prepare_or_refuse(argv)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(st.sampled_from(sorted(SCENARIO_FIELDS)), SCENARIO_VALUE,
                              min_size=1, max_size=4),
       closed=st.booleans())
def test_random_scenario_numbers_are_refused_cleanly_or_bounded(
        scenario_file: Path, values: dict[str, Any], closed: bool) -> None:
    scenario_file.write_text(scenario_text(values))
    prepare_or_refuse(["run", str(scenario_file), *(["--closed"] if closed else [])])


def test_the_property_can_fail() -> None:
    """The checker rejects what the property forbids (a guard against a vacuous test)."""
    ready = prepare(build_parser().parse_args(["run", "smoke"]))
    check_planned(ready)
    for bad in ({"duration_s": math.inf}, {"users": 10**20}, {"rate": 1e12}):
        with pytest.raises(InputError):
            check_planned(ready._replace(plan=dataclasses.replace(ready.plan, **bad)))
