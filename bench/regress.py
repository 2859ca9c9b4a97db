"""`bench regress`: the latency gate that holds on any machine, because both sides are
measured on it, in the same run, taking turns.

Why: a candidate run compared with a baseline recorded elsewhere compares machines, not
changes (issue 9: every percentile of a fresh machine was "a regression" against the
committed baseline). CI runners differ from run to run, so the gate measures the
baseline and the candidate itself, one after the other, under the same noise.

Rounds. Round k runs the scenario once against each side: baseline (A) first in odd
rounds, candidate (B) first in even rounds, so the run order is A B B A A B B A ...
and a drift of the machine (a neighbour starting, caches warming) falls on both sides
alike. Each run is an ordinary `bench run` (`bench.driver.drive` and `summarize_run`
with the round's `RunOptions`), written to OUT/round-01-A, OUT/round-01-B, ...: `bench
analyze`, `bench report` and `bench compare` read any of them like any other run. The
two sides may be two servers (old and new image, old and new flags) or one server
driven with two client settings (`--candidate-timeout`, or `?timeout=` in the URLs).

Verdict, per op and statistic (p50, p90, p99, p99.9, max): a PAIRED test over rounds,
`bench.analysis.compare.compare_rounds`. Round k gives one log ratio
ln(candidate_k / baseline_k) of the two runs' whole-run percentiles; a one-sample t-test
of those ratios against 0 (p < 0.01, Holm-adjusted over every row judged, so that
0.01 bounds the chance of any false alarm in the whole gate:
compare.family_adjusted) with a 95% CI that excludes 0 makes a change real, and a real
increase beyond the tolerance (the geometric mean ratio - 1, and
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
0 no regression, 1 regression, 2 bad input, 3 a side unreachable or a run aborted
(`bench.commands.regress` turns the flags into the plain values taken here and
publishes the rows as `bench compare` does).
The rounds' own SLO verdicts do not decide the gate (a slow CI machine misses an SLO on
both sides alike); a line names the rounds that missed it. The defaults (rounds, round
length, tolerance) come from `make gate-power` (scripts/gate_power.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import driver
from bench.analysis.compare import MIN_ROUNDS, Row, Tolerance, compare_rounds
from bench.analysis.runs import exit_code, load_runs
from bench.errors import EXIT_FAILED, BenchError, InputError, TargetError
from bench.results import rundir
from bench.scenario.model import Scenario
from bench.targets import parse_target
from bench.units import format_duration

#: The gate's default tolerance, as `make gate-power` chose it (compare's is the same).
DEFAULT_TOLERANCE = "10%"


@dataclass(frozen=True)
class Side:
    """One side of the comparison: where the load goes and with which client timeout."""

    label: str    # A (baseline) or B (candidate): the suffix of its round directories
    role: str     # baseline | candidate
    url: str
    timeout_s: float

    def describe(self) -> str:
        """`memcached://127.0.0.1:11211 (timeout 1s)`, as the reports name the side."""
        return f"{parse_target(self.url).redacted} (timeout {format_duration(self.timeout_s)})"


@dataclass(frozen=True)
class RoundPlan:
    """What every round runs: the scenario for `duration_s` (after its warm-up), with
    these overrides of the scenario's load (None: the scenario's), judged by the
    scenario's own SLO (for the note on missed ones only)."""

    scenario: Scenario
    duration_s: float
    warmup_s: float | None = None
    rate: float | None = None
    users: int | None = None

    def options(self, side: Side, out: Path) -> driver.RunOptions:
        """The run options of one round against `side`, written to `out`."""
        return driver.RunOptions(target=side.url, timeout_s=side.timeout_s,
                                 duration_s=self.duration_s, warmup_s=self.warmup_s,
                                 rate=self.rate, users=self.users, out=str(out), quiet=True)


def sides(baseline: str, candidate: str | None, timeout_s: float,
          candidate_timeout_s: float | None = None) -> tuple[Side, Side]:
    """Baseline and candidate, URLs validated (exit 2 on a bad one, naming its flag).
    Without a candidate URL both sides are the baseline's server (two client settings);
    the candidate's timeout defaults to the baseline's."""
    candidate_url = candidate or baseline
    for flag, url in (("--baseline", baseline), ("--candidate", candidate_url)):
        try:
            parse_target(url)
        except InputError as err:
            raise InputError(str(err), field=flag) from None
    candidate_timeout_s = timeout_s if candidate_timeout_s is None else candidate_timeout_s
    for flag, timeout in (("--timeout", timeout_s), ("--candidate-timeout", candidate_timeout_s)):
        if timeout <= 0:
            raise InputError(f"expected a timeout > 0, e.g. 1s, got {timeout:g}s", field=flag)
    return (Side("A", "baseline", baseline, timeout_s),
            Side("B", "candidate", candidate_url, candidate_timeout_s))


def check_rounds(rounds: int) -> None:
    """A paired test needs at least MIN_ROUNDS rounds (exit 2 otherwise)."""
    if rounds < MIN_ROUNDS:
        raise InputError(f"expected at least {MIN_ROUNDS} rounds (a paired test needs them), "
                         f"got {rounds}", field="--rounds")


def out_dir(out: str | None, scenario_name: str) -> Path:
    """`out` (new or empty, created), else results/<UTC time>-regress-<scenario>."""
    if out is None:
        return rundir.new_run_dir(driver.RESULTS_ROOT, f"regress-{scenario_name}")
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError("expected a new or empty directory for the rounds", file=str(path),
                         field="--out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def schedule(rounds: int) -> list[tuple[int, int]]:
    """(round, side index) in run order: A B in odd rounds, B A in even ones (ABBA)."""
    return [(k, side) for k in range(1, rounds + 1)
            for side in ((0, 1) if k % 2 else (1, 0))]


def round_dir(out: Path, k: int, side: Side) -> Path:
    """OUT/round-01-A: round k's run directory for `side`."""
    return out / f"round-{k:02d}-{side.label}"


def run_round(plan: RoundPlan, side: Side, run_dir: Path) -> int:
    """One run of the plan against `side`, as `bench run` does it (summary.json written,
    no report); its SLO exit code (0 met or none, 1 missed). A run that did not complete
    is an error; one interrupted (Ctrl-C, SIGTERM) interrupts the gate."""
    slo = plan.scenario.slo
    path = driver.drive(plan.scenario, slo, plan.options(side, run_dir))
    status = rundir.read_run_info(path).status
    if status == "interrupted":
        raise KeyboardInterrupt
    if status != "completed":
        raise TargetError(f"the run ended {status}; see {path}")
    _, summary = driver.summarize_run(path, slo)
    return exit_code(summary)


def run_rounds(plan: RoundPlan, pair: tuple[Side, Side], rounds: int, out: Path,
               say: Callable[[str], None] = print) -> list[tuple[Path, Path]]:
    """Every round in ABBA order; (baseline dir, candidate dir) per round. A failing
    round stops the gate with its error, named by round and side."""
    dirs: dict[tuple[int, int], Path] = {}
    missed = []
    for k, index in schedule(rounds):
        side = pair[index]
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


def gate(plan: RoundPlan, pair: tuple[Side, Side], rounds: int, out: Path,
         tolerance: Tolerance, say: Callable[[str], None] = print) -> list[Row]:
    """Run the rounds and judge them: every op and statistic, a regression among the rows
    when the candidate is worse beyond the tolerance."""
    check_rounds(rounds)
    return judge(run_rounds(plan, pair, rounds, out, say), tolerance)
