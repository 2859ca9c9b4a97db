"""Scenario files: validation messages, the library, `bench scenarios`, previews, traces."""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.scenario.distributions import Zipf
from bench.errors import InputError
from bench.scenario.model import (SCENARIO_DIRS, Scenario, load_scenario, parse_scenario,
                            scenario_names)
from bench.workload.preview import preview
from bench.targets import open_target, parse_target
from bench.workload.executor import Executor
from bench.workload.ops import BLOCK_OPS, Workload

TESTS = Path(__file__).parent
BAD = sorted((TESTS / "scenarios_bad").glob("*.yaml"))
DATA = TESTS / "data"
LIBRARY = sorted(SCENARIO_DIRS[0].glob("*.yaml"))
EXPECT = re.compile(r"# expect: (?P<line>\S+) (?P<field>\S+) \| (?P<text>.+)")


def bench(*argv: str) -> int:
    return main(list(argv))


# ----------------------------------------------------------------------------- library


def test_the_library_validates_through_the_cli(capsys) -> None:
    assert bench("scenarios", "validate", *map(str, LIBRARY)) == 0
    out = capsys.readouterr().out
    assert all(f"ok  {path}" in out for path in LIBRARY)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_scenarios_say_what_they_model(path: Path) -> None:
    text = path.read_text()
    assert text.startswith(f"# {path.stem}: "), "first line: what the scenario models"
    scn = load_scenario(path.stem)
    assert scn.name == path.stem and scn.description


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_resolved_scenario_is_valid_input_again(path: Path) -> None:
    scn = load_scenario(path)
    again = Scenario.from_json(json.loads(json.dumps(scn.to_json())))
    assert again.to_json() == scn.to_json()
    assert again.model_dump() == scn.model_dump()


def test_mediawiki_and_smoke_have_an_slo() -> None:
    for name in ("mediawiki", "smoke"):
        slo = load_scenario(name).slo
        assert slo is not None and slo.objectives and slo.errors


def test_named_scenarios_resolve_and_unknown_names_list_the_known_ones() -> None:
    assert {"mediawiki", "smoke", "fb-etc", "twitter-c52"} <= set(scenario_names())
    with pytest.raises(InputError, match="unknown scenario 'nope'; .*mediawiki"):
        load_scenario("nope")


# ----------------------------------------------------------------------------- bad input


def expectation(path: Path) -> tuple[str | None, str | None, str]:
    """(line, field, text) from the file's `# expect:` first line; `-` means none."""
    match = EXPECT.fullmatch(path.read_text().splitlines()[0]) if path.stat().st_size else None
    assert match, f"{path.name}: first line must be '# expect: LINE FIELD | TEXT'"
    none = lambda v: None if v == "-" else v  # noqa: E731
    return none(match["line"]), none(match["field"]), match["text"]


def test_there_are_enough_malformed_scenarios() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_malformed_scenario_gives_one_clear_message_and_exit_2(path: Path, capsys) -> None:
    line, field, text = expectation(path)
    assert bench("scenarios", "validate", str(path)) == 2
    captured = capsys.readouterr()
    message = captured.err.strip()
    assert "Traceback" not in message and "\n" not in message
    where = f"bench: {path}" + (f":{line}" if line else "")
    assert message.startswith(where + ": "), message
    if field:
        assert message.startswith(f"{where}: {field}: "), message
    assert text in message


def test_errors_inside_a_distribution_point_at_the_parameter() -> None:
    text = """\
        name: x
        load: {rate: 10}
        keyspaces:
          - name: a
            keys: 10
            value_size:
              dist: gpareto
              scale: -3
              shape: 0.3
            mix: {get: 1}
        """
    with pytest.raises(InputError) as err:
        parse_scenario(textwrap.dedent(text), "x.yaml")
    assert str(err.value).startswith("x.yaml:8: keyspaces[0].value_size.scale: ")
    assert "greater than 0" in str(err.value)


def test_shorthands_mean_their_long_forms() -> None:
    short = parse_scenario(textwrap.dedent("""\
        name: x
        load: {rate: 5k/s, duration: 2m}
        keyspaces:
          - name: a
            keys: 10
            popularity: uniform
            value_size: 4KiB
            ttl: 1h
            mix: {get: 90%, set: 10%}
        """))
    long = parse_scenario(textwrap.dedent("""\
        name: x
        load: {rate: 5000, duration: 120}
        keyspaces:
          - name: a
            keys: 10
            popularity: {dist: uniform}
            value_size: {dist: fixed, size: 4096}
            ttl: {choices: {3600: 1}}
            mix: {get: {weight: 0.9}, set: {weight: 0.1}}
        """))
    assert short.to_json() == long.to_json()


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=True)
    | st.text(max_size=12) | st.sampled_from(["30s", "4KiB", "99.9%", "20k/s", "zipf", "get",
                                              "{wiki}:x:{id}", "lognormal", "uniform"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "load", "keyspaces", "keys", "mix", "get", "rate", "mode",
                         "popularity", "dist", "alpha", "value_size", "ttl", "slo", "weight",
                         "template", "vars", "trace", "batch", "objectives", "min", "max"])
        | st.text(max_size=6), inner, max_size=5),
    max_leaves=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), yaml_values.map(
    lambda v: yaml.safe_dump(v, default_flow_style=None))))
def test_no_yaml_input_gives_a_traceback(text: str) -> None:
    try:
        parse_scenario(text, "fuzz.yaml")
    except InputError as err:
        assert str(err).startswith("fuzz.yaml")


@settings(max_examples=60, deadline=None)
@given(keys=st.integers(-3, 10**4), alpha=st.one_of(st.floats(-2, 5), st.text(max_size=5)),
       size=st.one_of(st.integers(-5, 10**7), st.text(max_size=6)),
       rate=st.one_of(st.floats(allow_nan=True), st.text(max_size=6)))
def test_near_miss_scenarios_give_input_errors_only(keys, alpha, size, rate) -> None:
    data = {"name": "f", "load": {"rate": rate},
            "keyspaces": [{"name": "a", "keys": keys, "value_size": size,
                           "popularity": {"dist": "zipf", "alpha": alpha},
                           "mix": {"get": 1}}]}
    try:
        Workload(parse_scenario(yaml.safe_dump(data), "f.yaml"))
    except InputError as err:
        assert str(err).startswith("f.yaml:")


# ----------------------------------------------------------------------------- cli


def test_list_show_schema(capsys) -> None:
    assert bench("scenarios", "list") == 0
    assert "mediawiki" in capsys.readouterr().out
    assert bench("scenarios", "show", "smoke") == 0
    shown = capsys.readouterr().out
    again = parse_scenario(shown, "shown.yaml")
    assert again.to_json() == load_scenario("smoke").to_json()
    assert bench("scenarios", "schema") == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) >= {"name", "load", "keyspaces", "slo"}
    assert "SloSpec" in schema["$defs"]


def test_show_unknown_scenario_exits_2(capsys) -> None:
    assert bench("scenarios", "show", "no-such-scenario") == 2
    assert "unknown scenario 'no-such-scenario'" in capsys.readouterr().err


def test_preview_prints_tables_and_writes_the_op_stream(tmp_path, capsys) -> None:
    out = tmp_path / "ops.csv"
    assert bench("scenarios", "preview", "smoke", "--ops", "3000", "--csv", str(out)) == 0
    printed = capsys.readouterr().out
    for title in ("op shares", "popularity", "working set", "sizes", "TTL shares"):
        assert title in printed
    lines = out.read_text().splitlines()
    assert lines[0] == "op,key,value_size,ttl" and len(lines) == 3001
    first = list(itertools.islice(Workload(load_scenario("smoke")).stream(), 1))[0]
    assert lines[1] == f"{first.action},{first.keys[0]},{first.value_size},{first.ttl:g}"


# ----------------------------------------------------------------------------- preview


ZIPF = """\
    name: zipf-preview
    load: {rate: 10}
    keyspaces:
      - name: z
        keys: 10000
        template: "bench:z:{id}"
        popularity: {dist: zipf, alpha: 0.99}
        value_size: 1000B
        ttl: {1h: 75%, 1d: 25%}
        mix: {get: 90%, set: 10%}
    """


def test_preview_numbers_match_the_distributions() -> None:
    scn = parse_scenario(textwrap.dedent(ZIPF))
    result = preview(scn, 100 * BLOCK_OPS)
    [space] = result.spaces
    exact = Zipf(10_000, 0.99).top_keys_share(100)
    assert space.top_share_expected == pytest.approx(exact)
    assert space.top_share_observed == pytest.approx(exact, abs=0.02)
    assert result.op_shares["z/get"] == pytest.approx(0.9, abs=0.01)
    assert result.ttl_shares[3600.0] == pytest.approx(0.75, abs=0.01)
    assert result.value_size == {50: 1000, 90: 1000, 99: 1000, 100: 1000}
    mean_key = np.mean([len(f"cb:bench:z:{i}") for i in range(10_000)])
    assert space.working_set_bytes == pytest.approx(10_000 * (mean_key + 1000))


@pytest.mark.parametrize("per", ["key", "request"])
def test_preview_shows_sizes_per_request_and_per_key(per: str) -> None:
    """A distribution `per: request` is what the requests carry (popularity-weighted), one
    `per: key` what the keys store; the preview shows both and they differ as they should."""
    scn = parse_scenario(textwrap.dedent(f"""\
        name: sizes
        load: {{rate: 10}}
        keyspaces:
          - name: s
            keys: 200000
            popularity: {{dist: zipf, alpha: 0.8}}
            value_size: {{dist: lognormal, median: 500B, p99: 20KiB, per: {per}}}
            mix: {{get: 1}}
        """))
    result = preview(scn, 100 * BLOCK_OPS)
    described = result.value_size if per == "request" else result.value_size_per_key
    expected = Workload(scn).plans[0].value_size.quantile(np.array([0.5, 0.9]))
    assert [described[50], described[90]] == pytest.approx(expected.tolist(), rel=0.1)


# ----------------------------------------------------------------------------- traces


def test_sample_trace_is_what_its_script_writes(tmp_path) -> None:
    sys.path.insert(0, str(DATA))
    try:
        import make_trace
    finally:
        sys.path.remove(str(DATA))
    make_trace.main(tmp_path / "trace.csv")
    assert (tmp_path / "trace.csv").read_text() == (DATA / "twitter-sample.csv").read_text()


def test_trace_replay_keeps_order_and_scales_time() -> None:
    scn = load_scenario(DATA / "trace-replay.yaml")
    rows = (DATA / "twitter-sample.csv").read_text().splitlines()
    ops = list(itertools.islice(Workload(scn).stream(), len(rows) + 10))
    stamps = [int(r.split(",")[0]) for r in rows]
    assert [op.kind for op in ops[:len(rows)]] == [r.split(",")[5] for r in rows]
    assert ops[0].at == 0 and all(a.at <= b.at for a, b in zip(ops, ops[1:]))
    span = (stamps[-1] - stamps[0] + 1) / 2          # speed 2
    assert ops[len(rows)].at == pytest.approx(span)  # the second pass starts after the first
    last_second = [op.at for op, s in zip(ops, stamps) if s == stamps[-1]]
    assert last_second[0] == pytest.approx((stamps[-1] - stamps[0]) / 2)
    assert max(last_second) < span
    assert {op.action for op in ops} <= {"get", "set", "add", "delete", "incr"}
    assert all(len(op.keys[0]) >= int(r.split(",")[2]) for op, r in zip(ops, rows))


def test_trace_streams_split_like_generated_ones() -> None:
    scn = load_scenario(DATA / "trace-replay.yaml")
    single = list(itertools.islice(Workload(scn).stream(0, 1), 4 * BLOCK_OPS))
    two = [Workload(scn).stream(i, 2) for i in range(2)]
    rebuilt = [op for b in range(4) for op in itertools.islice(two[b % 2], BLOCK_OPS)]
    assert rebuilt == single


def test_trace_ops_run_on_memcached(memcached_server) -> None:
    scn = load_scenario(DATA / "trace-replay.yaml")
    ops = list(itertools.islice(Workload(scn).stream(), 500))
    with open_target(parse_target(memcached_server.url)) as target:
        executor = Executor(target, scn)
        samples = [s for op in ops for s in executor.execute(op)]
    assert not any(s.error for s in samples)
    assert len(samples) == len(ops)          # trace ops are single calls, no cache-aside
    assert sum(s.hits for s in samples if s.name == "get") > 0


def test_trace_speed_must_be_positive(tmp_path) -> None:
    (tmp_path / "t.csv").write_text((DATA / "twitter-sample.csv").read_text())
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nload: {rate: 1}\nkeyspaces:\n"
                    "  - name: t\n    trace: {file: t.csv, speed: 0}\n")
    with pytest.raises(InputError, match=r"s.yaml:5: keyspaces\[0\].trace.speed: .*greater than 0"):
        load_scenario(path)
    assert math.isfinite(load_scenario(DATA / "trace-replay.yaml").keyspaces[0].trace.speed)


@pytest.mark.parametrize("spec, low, high", [
    ("4KiB", 4096, 4096),
    ("{dist: uniform, min: 100B, max: 200B}", 100, 200),
    ("{dist: weighted, choices: {100B: 1, 1KiB: 3}}", 100, 1024),
    ("{dist: normal, mean: 1000, sd: 100, min: 500B, max: 1500B}", 500, 1500),
    ("{dist: lognormal, mu: 6, sigma: 1, max: 64KiB}", 0, 65536),
    ("{dist: gev, loc: 30.7984, scale: 8.20449, shape: 0.078688, max: 250B}", 0, 250),
    ("{dist: gpareto, scale: 214.476, shape: 0.348238, min: 1B, max: 1MiB}", 1, 2**20),
    ("{dist: empirical, points: [[100B, 0.5], [1KiB, 1.0]]}", 100, 1024),
    ("{dist: empirical, file: stats-sizes.txt}", 64, 1024),
], ids=lambda v: str(v)[:24])
def test_every_size_distribution_draws_within_its_range(spec: str, low: int, high: int,
                                                        tmp_path) -> None:
    (tmp_path / "stats-sizes.txt").write_text((DATA / "stats-sizes.txt").read_text())
    path = tmp_path / "sizes.yaml"
    path.write_text(f"name: s\nload: {{rate: 1}}\nkeyspaces:\n  - name: a\n    keys: 2000\n"
                    f"    value_size: {spec}\n    mix: {{set: 1}}\n")
    sizes = Workload(load_scenario(path)).plans[0].sizes(np.arange(2000))
    assert low <= sizes.min() and sizes.max() <= high
    assert (len(set(sizes.tolist())) == 1) == (low == high)
