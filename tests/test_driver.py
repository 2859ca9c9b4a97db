"""The driver as a library: a run's options are plain values (`RunOptions`), no argparse.

Planning and the Locust command line are pure functions of the scenario and the options,
so they are tested here without a server; `tests/test_run.py` drives real runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.driver import RunOptions, locust_argv, plan_load, resolve_target_url
from bench.errors import InputError
from bench.scenario.model import load_scenario


@pytest.fixture(scope="module")
def smoke():
    return load_scenario("smoke")  # open loop, 2k/s, 4 users, 10 s, 2 s warmup, prefill


def test_no_options_is_the_scenarios_load(smoke) -> None:
    plan = plan_load(RunOptions(), smoke)
    assert (plan.mode, plan.rate, plan.users) == ("open", 2000.0, 4)
    assert (plan.duration_s, plan.warmup_s, plan.prefill, plan.seed) == (10.0, 2.0, True,
                                                                         smoke.seed)


def test_options_override_the_scenario(smoke) -> None:
    plan = plan_load(RunOptions(closed=True, users=2, duration_s=3.0, warmup_s=0.0,
                                prefill=False, seed=7, think_s=0.01), smoke)
    assert (plan.mode, plan.rate, plan.users, plan.think_s) == ("closed", None, 2, 0.01)
    assert (plan.duration_s, plan.warmup_s, plan.prefill, plan.seed) == (3.0, 0.0, False, 7)


@pytest.mark.parametrize("options, field", [
    (RunOptions(users=3, processes=2), "--users"),
    (RunOptions(master=True, expect_workers=0), "--expect-workers"),
    (RunOptions(seed=-1), "--seed"),
    (RunOptions(duration_s=0.0), "--duration"),
])
def test_a_bad_option_names_its_flag(smoke, options: RunOptions, field: str) -> None:
    with pytest.raises(InputError) as caught:
        plan_load(options, smoke)
    assert caught.value.field == field


def test_locust_command_line_follows_the_options(smoke, tmp_path: Path) -> None:
    options = RunOptions(master=True, master_bind_host="127.0.0.2", master_bind_port=6000,
                         expect_workers=2, users=4)
    argv = locust_argv(options, plan_load(options, smoke), tmp_path, "memcached://x")
    at = argv.index("--master-bind-host")
    assert argv[at:at + 5] == ["--master-bind-host", "127.0.0.2", "--master-bind-port",
                               "6000", "--expect-workers"]
    assert "--headless" in argv and "--web-port" not in argv
    ui = RunOptions(ui=True, web_port=9000)
    argv = locust_argv(ui, plan_load(ui, smoke), tmp_path, "memcached://x")
    assert argv[argv.index("--web-port") + 1] == "9000" and "--headless" not in argv


def test_the_target_option_wins_over_the_scenarios(smoke) -> None:
    assert resolve_target_url("memcached://127.0.0.1:1", smoke) == "memcached://127.0.0.1:1"
