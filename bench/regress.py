"""`bench regress`: the latency gate that holds on any machine, because both sides are
measured on it, in the same run, taking turns.

Why: a candidate run compared with a baseline recorded elsewhere compares machines, not
changes (issue 9: every percentile of a fresh machine was "a regression" against the
committed baseline). CI runners differ from run to run, so the gate measures the
baseline and the candidate itself, one after the other, under the same noise.

Rounds. Round k runs the scenario once against each side: baseline (A) first in odd
rounds, candidate (B) first in even rounds, so the run order is A B B A A B B A ...
and a drift of the machine (a neighbour starting, caches warming) falls on both sides
alike. Each run is an ordinary `bench run` (the same argument parsing and
`bench.driver.run_command`), written to OUT/round-01-A, OUT/round-01-B, ...: `bench
analyze`, `bench report` and `bench compare` read any of them like any other run. The
two sides may be two servers (old and new image, old and new flags) or one server
driven with two client settings (`--candidate-timeout`, or `?timeout=` in the URLs).

Verdict, per op and statistic (p50, p90, p99, p99.9, max): a PAIRED test over rounds,
`bench.analysis.compare.compare_rounds`. Round k gives one log ratio
ln(candidate_k / baseline_k) of the two runs' whole-run percentiles; a one-sample t-test
of those ratios against 0 (p < 0.01) with a 95% CI that excludes 0 makes a change
real, and a real increase beyond the tolerance (the geometric mean ratio - 1, and
--min-delta in absolute time) is a regression. A percentile is judged only where every
round has at least 10 samples above it (compare.MIN_TAIL_SAMPLES: never the max, nor
the p99.9 of a rare op, which are one sample's luck). Why rounds and not intervals: the
intervals of one run share its Locust process, its core and its neighbours, so they are
not independent samples of the side (on a shared 2-core VM the get p50 of identical runs
jumps between ~90 and ~230 us from one run to the next, with where the processes
landed); pooling the intervals of several runs, as `bench compare`'s rank test would,
counts such a run-level jump many times over. Pairing also removes what two
neighbouring runs share. Why a t-test and not a signed-rank test: with the few rounds a
gate can afford, a signed-rank test cannot reach p < 0.01 at all (6 rounds: p >= 0.03).
`make gate-power` prints both tests' false-positive and detection rates on the same
rounds.

Outputs and exit codes are `bench compare`'s: the same table, Markdown and JUnit, exit
0 no regression, 1 regression, 2 bad input, 3 a side unreachable or a run aborted.
The rounds' own SLO verdicts do not decide the gate (a slow CI machine misses an SLO on
both sides alike); a line names the rounds that missed it. The defaults (rounds, round
length, tolerance) come from `make gate-power` (scripts/gate_power.py).
"""

from __future__ import annotations

import io
import time
from argparse import Namespace
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from bench import driver
from bench.analysis.compare import (PAIRED_TEST, Row, Tolerance, compare_rounds, publish,
                                    tolerance_for)
from bench.analysis.runs import load_runs
from bench.cli import build_parser
from bench.errors import EXIT_FAILED, BenchError, InputError, TargetError
from bench.results import rundir
from bench.scenario.model import load_scenario
from bench.targets import parse_target

DEFAULT_TOLERANCE = "10%"
MIN_ROUNDS = 3


@dataclass(frozen=True)
class Side:
    """One side of the comparison: where the load goes and with which client timeout."""

    label: str    # A (baseline) or B (candidate): the suffix of its round directories
    role: str     # baseline | candidate
    url: str
    timeout: str

    def describe(self) -> str:
        """`memcached://127.0.0.1:11211 (timeout 1s)`, as the reports name the side."""
        return f"{parse_target(self.url).redacted} (timeout {self.timeout})"


@dataclass(frozen=True)
class RoundPlan:
    """What every round runs: `bench run SCENARIO --duration ...` with these flags."""

    scenario: str
    duration: str
    warmup: str | None = None
    rate: str | None = None
    users: int | None = None

    def run_argv(self, side: Side, out: Path) -> list[str]:
        """The `bench run` command line of one round against `side`."""
        argv = ["run", self.scenario, "--target", side.url, "--timeout", side.timeout,
                "--duration", self.duration, "--out", str(out), "--quiet", "--no-report"]
        for flag, value in (("--warmup", self.warmup), ("--rate", self.rate),
                            ("--users", self.users)):
            if value is not None:
                argv += [flag, str(value)]
        return argv


def schedule(rounds: int) -> list[tuple[int, int]]:
    """(round, side index) in run order: A B in odd rounds, B A in even ones (ABBA)."""
    return [(k, side) for k in range(1, rounds + 1)
            for side in ((0, 1) if k % 2 else (1, 0))]


def round_dir(out: Path, k: int, side: Side) -> Path:
    """OUT/round-01-A: round k's run directory for `side`."""
    return out / f"round-{k:02d}-{side.label}"


def run_round(plan: RoundPlan, side: Side, run_dir: Path) -> int:
    """One run of the plan against `side`, through the code of `bench run`; its exit
    code (0 SLO met or none, 1 SLO missed). Its console output is not shown: the run
    directory holds everything it printed. A run that did not complete is an error."""
    args = build_parser().parse_args(plan.run_argv(side, run_dir))
    with redirect_stdout(io.StringIO()):
        code = driver.run_command(args)
    status = rundir.read_run_info(run_dir).get("status")
    if status == "interrupted":
        raise KeyboardInterrupt
    if status != "completed":
        raise TargetError(f"the run ended {status}; see {run_dir}")
    return code


def run_rounds(plan: RoundPlan, sides: tuple[Side, Side], rounds: int, out: Path,
               say: Callable[[str], None] = print) -> list[tuple[Path, Path]]:
    """Every round in ABBA order; (baseline dir, candidate dir) per round. A failing
    round stops the gate with its error, named by round and side."""
    dirs: dict[tuple[int, int], Path] = {}
    missed = []
    for k, index in schedule(rounds):
        side = sides[index]
        path = round_dir(out, k, side)
        began = time.monotonic()
        try:
            code = run_round(plan, side, path)
        except BenchError as err:
            raise type(err)(f"round {k:02d} {side.label} ({side.role}): {err}") from None
        if code == EXIT_FAILED:
            missed.append(path.name)
        dirs[k, index] = path
        say(f"round {k:02d} {side.label} {side.role:<9} {time.monotonic() - began:5.1f} s  "
            f"{path}")
    if missed:
        say(f"the scenario's SLO was missed in {', '.join(missed)} (not part of the verdict)")
    return [(dirs[k, 0], dirs[k, 1]) for k in range(1, rounds + 1)]


def judge(pairs: list[tuple[Path, Path]], tolerance: Tolerance) -> list[Row]:
    """The rows of the paired test over the rounds' (baseline, candidate) run directories."""
    return compare_rounds([load_runs([a]) for a, _ in pairs], [load_runs([b]) for _, b in pairs],
                          tolerance)


def _sides(args: Namespace) -> tuple[Side, Side]:
    """Baseline and candidate from the flags, URLs validated (exit 2 on a bad one)."""
    candidate_url = args.candidate or args.baseline
    for flag, url in (("--baseline", args.baseline), ("--candidate", candidate_url)):
        try:
            parse_target(url)
        except InputError as err:
            raise InputError(str(err), field=flag) from None
    return (Side("A", "baseline", args.baseline, args.timeout),
            Side("B", "candidate", candidate_url, args.candidate_timeout or args.timeout))


def _out_dir(args: Namespace, scenario_name: str) -> Path:
    """--out (new or empty), else results/<UTC time>-regress-<scenario>."""
    if args.out is None:
        return rundir.new_run_dir(driver.RESULTS_ROOT, f"regress-{scenario_name}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("expected a new or empty directory for the rounds", file=str(out),
                         field="--out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def command(args: Namespace) -> int:
    """`bench regress --baseline URL --candidate URL SCENARIO`: exit 1 on a regression."""
    if args.rounds < MIN_ROUNDS:
        raise InputError(f"expected at least {MIN_ROUNDS} rounds (a paired test needs them), "
                         f"got {args.rounds}", field="--rounds")
    tolerance = tolerance_for(args, DEFAULT_TOLERANCE)  # a bad value fails before any load
    sides = _sides(args)
    scenario = load_scenario(args.scenario)
    plan = RoundPlan(args.scenario, args.round_duration, args.warmup, args.rate, args.users)
    out = _out_dir(args, scenario.name)
    print(f"regress: {scenario.name}, {args.rounds} rounds of {args.round_duration} per side, "
          f"ABBA; baseline {sides[0].describe()}, candidate {sides[1].describe()}")
    began = time.monotonic()
    pairs = run_rounds(plan, sides, args.rounds, out)
    rows = judge(pairs, tolerance)
    code = publish(rows, tolerance, (sides[0].describe(), sides[1].describe()),
                   args.markdown, args.junit, PAIRED_TEST)
    print(f"regress: {2 * args.rounds} runs in {time.monotonic() - began:.0f} s; rounds in {out}")
    return code
