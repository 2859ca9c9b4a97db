"""`make gate-power`: how good the `bench regress` gate is on this machine, measured.

    python scripts/gate_power.py [--budget 60m] [--aa 20] [--per-delay 10]
                                 [--delays 50us,100us,200us,500us,1ms] [--rounds N]
                                 [--tolerances 5%,10%,20%] [--out DIR]

A benchmark, not a test: it prints rates, it does not assert them. What it does:

1. Starts two memcached nodes with the same flags and, in front of them, delaying TCP
   proxies on loopback (bench.proxy): the baseline's adds nothing, the candidate's adds
   nothing (A/A) or one of --delays. Both sides go through a proxy, so the proxy's own
   cost is on both and the added delay is the only difference.
2. Measures what each delay really adds to a round trip: a plain client loop through
   each proxy (bench.machine.calibrate) minus the loop through the 0-delay one. A sleep
   has a floor (timer slack, wake-up), so the real figure is printed beside the asked one.
3. Runs the gate, `bench.regress.run_rounds` (the code of `bench regress`), for --aa A/A
   comparisons and --per-delay comparisons at each delay, interleaved (A/A, 50us, 100us,
   ..., A/A, ...) so that a drift of the machine reaches every kind alike; each
   comparison has --rounds rounds (default: bench regress's).
4. Judges every comparison again for 3..N rounds (the first n rounds of an ABBA gate
   are an ABBA gate of n rounds) at each of --tolerances, and prints per setting the
   false-positive rate, the detection rate at each delay, the smallest delay caught in
   >= 95% of comparisons with <= 5% false positives, and the time the gate takes.

--budget bounds the whole: a comparison is started only while the time used plus the
mean time of a comparison so far fits in it; the output says what was done. A full run
(20 A/A + 10 x 5 delays, 6 rounds of 2 s) takes about an hour on a 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench import cluster, machine
from bench.analysis.compare import Row, Tolerance, compare, compare_rounds
from bench.analysis.runs import RunData, load_runs
from bench.cli import build_parser
from bench.proxy import DelayProxy
from bench.regress import DEFAULT_TOLERANCE, RoundPlan, Side, run_rounds
from bench.scenario.model import load_scenario
from bench.targets import open_target, parse_target
from bench.units import parse_duration, parse_fraction

SCENARIO = "smoke"
CAUGHT = 0.95          # "caught": flagged in at least this share of comparisons
FALSE_POSITIVES = 0.05  # ... while A/A comparisons are flagged at most this often
TIMEOUT_S = 1.0        # both sides' client timeout, bench regress's default


@dataclass
class Comparison:
    """One run of the gate: A/A (delay 0) or against a delayed candidate."""

    delay_s: float
    out: Path
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def kind(self) -> str:
        return "A/A" if self.delay_s == 0 else _us(self.delay_s)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:g}us" if seconds < 1e-3 else f"{seconds * 1e3:g}ms"


def _parse(argv: list[str]) -> argparse.Namespace:
    defaults = build_parser().parse_args(["regress", SCENARIO, "--baseline", "memcached://x:1"])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="60m", help="bound on the whole run (default 60m)")
    parser.add_argument("--aa", type=int, default=20, help="A/A comparisons (default 20)")
    parser.add_argument("--per-delay", type=int, default=10,
                        help="comparisons per added delay (default 10)")
    parser.add_argument("--delays", default="50us,100us,200us,500us,1ms",
                        help="added delays (default 50us,100us,200us,500us,1ms)")
    parser.add_argument("--rounds", type=int, default=defaults.rounds,
                        help=f"rounds per comparison (default {defaults.rounds}, bench "
                             f"regress's); 3..N are judged")
    parser.add_argument("--round-duration", default=defaults.round_duration,
                        help=f"measured time per run (default {defaults.round_duration})")
    parser.add_argument("--tolerances", default="5%,10%,20%",
                        help="tolerances to judge at (default 5%%,10%%,20%%)")
    parser.add_argument("--out", help="where the rounds go (default results/gate-power-<time>)")
    parser.add_argument("--from", dest="previous", metavar="DIR",
                        help="measure nothing: judge the rounds of an earlier run in DIR again")
    args = parser.parse_args(argv)
    args.budget_s = parse_duration(args.budget)
    args.delays_s = [parse_duration(d) for d in args.delays.split(",")]
    args.tolerance_list = [parse_fraction(t) for t in args.tolerances.split(",")]
    args.default_rounds = defaults.rounds
    args.default_tolerance = parse_fraction(DEFAULT_TOLERANCE)
    return args


@contextmanager
def _proxied_nodes(delays: list[float], workdir: Path) -> Iterator[tuple[str, dict[float, str]]]:
    """Two memcached nodes behind proxies: the baseline's URL (no delay), and the
    candidate's URL per delay (0: the A/A candidate)."""
    with ExitStack() as stack:
        nodes = []
        for name in ("baseline", "candidate"):
            server = cluster.start_memcached(0, workdir, 256, name=name)
            stack.callback(server.stop)
            nodes.append(server.address)

        def proxied(node: str, delay: float) -> str:
            return f"memcached://{stack.enter_context(DelayProxy(node, delay)).address}"

        yield proxied(nodes[0], 0.0), {d: proxied(nodes[1], d) for d in (0.0, *delays)}


def _added_delays(candidates: dict[float, str]) -> dict[float, float]:
    """Measured round-trip p50 through each delayed proxy minus the 0-delay one, in s."""
    def p50(url: str) -> float:
        with open_target(parse_target(url)) as client:
            return machine.calibrate(client, "gate-power:calibration", 2000)["p50_us"] / 1e6
    zero = p50(candidates[0.0])
    return {d: p50(url) - zero for d, url in candidates.items() if d}


def _plan(args: argparse.Namespace, out: Path) -> list[Comparison]:
    """All comparisons, interleaved so that every kind (A/A, each delay) is spread evenly
    over the whole run: a drift of the machine, or the budget running out, touches each
    kind in proportion."""
    planned = {0.0: args.aa, **dict.fromkeys(args.delays_s, args.per_delay)}
    made = dict.fromkeys(planned, 0)
    plan: list[Comparison] = []
    for _ in range(sum(planned.values())):
        delay = min((d for d in planned if made[d] < planned[d]),
                    key=lambda d: (made[d] + 1) / planned[d])
        made[delay] += 1
        plan.append(Comparison(delay, out / f"{len(plan) + 1:03d}-"
                                            f"{'aa' if delay == 0 else _us(delay)}"))
    return plan


def _run(plan: list[Comparison], baseline_url: str, candidates: dict[float, str],
         args: argparse.Namespace, began: float) -> int:
    """Run comparisons in order while the budget allows; how many were done."""
    rounds = RoundPlan(load_scenario(SCENARIO), parse_duration(args.round_duration))
    baseline = Side("A", "baseline", baseline_url, TIMEOUT_S)
    done: list[Comparison] = []
    for comparison in plan:
        used = time.monotonic() - began
        mean = sum(c.seconds for c in done) / len(done) if done else 0.0
        if used + mean > args.budget_s:
            print(f"budget: stopping after {len(done)} of {len(plan)} comparisons")
            break
        candidate = Side("B", "candidate", candidates[comparison.delay_s], TIMEOUT_S)
        start = time.monotonic()
        comparison.pairs = run_rounds(rounds, (baseline, candidate), args.rounds,
                                      comparison.out, say=lambda line: None)
        comparison.seconds = time.monotonic() - start
        done.append(comparison)
        print(f"[{len(done):3d}/{len(plan)}] {comparison.kind:>6}: {2 * args.rounds} runs in "
              f"{comparison.seconds:.0f} s", flush=True)
    return len(done)


class Judge:
    """Verdicts of finished comparisons for n rounds and a tolerance (runs loaded once)."""

    def __init__(self) -> None:
        self._runs: dict[Path, RunData] = {}

    def _load(self, path: Path) -> RunData:
        if path not in self._runs:
            self._runs[path] = load_runs([path])
        return self._runs[path]

    def regressions(self, comparison: Comparison, rounds: int, tolerance: float) -> list[Row]:
        """What bench regress flags: the paired test over the first `rounds` rounds."""
        pairs = comparison.pairs[:rounds]
        rows = compare_rounds([self._load(a) for a, _ in pairs],
                              [self._load(b) for _, b in pairs], Tolerance(tolerance))
        return [row for row in rows if row.regression]

    def pooled(self, comparison: Comparison, rounds: int, tolerance: float) -> bool:
        """Whether bench compare's rank test over the intervals of all rounds merged
        (the alternative bench regress does not use) flags a regression."""
        sides = [load_runs([pair[i] for pair in comparison.pairs[:rounds]]) for i in (0, 1)]
        return any(row.regression for row in compare(*sides, Tolerance(tolerance)))


def _rate(flags: list[bool]) -> str:
    return f"{sum(flags)}/{len(flags)}" if flags else "-"


def _report(done: list[Comparison], args: argparse.Namespace,
            run_seconds: float | None) -> None:
    """The table: one line per (rounds, tolerance); the gate's time from the mean time
    of a run (unknown when judging an earlier run again)."""
    judge = Judge()
    aa = [c for c in done if c.delay_s == 0]
    header = ["rounds", "tol", "false pos", *(_us(d) for d in args.delays_s), "caught>=95%",
              "gate time"]
    print("\n" + "  ".join(f"{h:>11}" for h in header))
    for rounds in range(3, args.rounds + 1):
        for tolerance in args.tolerance_list:
            fp = [bool(judge.regressions(c, rounds, tolerance)) for c in aa]
            cells = [str(rounds), f"{tolerance:.0%}", _rate(fp)]
            caught = []
            for delay in args.delays_s:
                hits = [bool(judge.regressions(c, rounds, tolerance))
                        for c in done if c.delay_s == delay]
                cells.append(_rate(hits))
                caught.append(bool(hits) and sum(hits) >= CAUGHT * len(hits))
            ok_fp = bool(fp) and sum(fp) <= FALSE_POSITIVES * len(fp)
            smallest = next((d for i, d in enumerate(args.delays_s) if all(caught[i:])), None)
            cells.append(_us(smallest) if ok_fp and smallest is not None else "-")
            cells.append("-" if run_seconds is None else f"{2 * rounds * run_seconds:.0f} s")
            mark = " <- bench regress default" if (
                rounds == args.default_rounds and tolerance == args.default_tolerance) else ""
            print("  ".join(f"{c:>11}" for c in cells) + mark)
    rounds, tolerance = min(args.default_rounds, args.rounds), args.default_tolerance

    def pooled(delay: float) -> str:
        return _rate([judge.pooled(c, rounds, tolerance) for c in done if c.delay_s == delay])

    print(f"\nthe same rounds judged by bench compare's pooled rank test instead ({rounds} "
          f"rounds, {tolerance:.0%}): false pos {pooled(0.0)}, "
          + ", ".join(f"{_us(d)} {pooled(d)}" for d in args.delays_s))
    print("\nA/A false positives at the default setting (op stat change):")
    for comparison in aa:
        rows = judge.regressions(comparison, min(args.default_rounds, args.rounds),
                                 args.default_tolerance)
        if rows:
            print(f"  {comparison.out.name}: " + ", ".join(
                f"{r.op} {r.stat} {r.relative:+.0%}" for r in rows))


def _previous(args: argparse.Namespace) -> list[Comparison]:
    """The comparisons of an earlier run (NNN-aa, NNN-50us, ... with their rounds)."""
    found = []
    for path in sorted(Path(args.previous).iterdir()):
        kind = path.name.partition("-")[2]
        pairs = [(a, a.with_name(a.name[:-1] + "B"))
                 for a in sorted(path.glob("round-*-A"))]
        pairs = [(a, b) for a, b in pairs if (b / "summary.json").exists()]
        if kind and len(pairs) >= 3:
            found.append(Comparison(0.0 if kind == "aa" else parse_duration(kind), path, pairs))
    args.rounds = min(len(c.pairs) for c in found)
    args.delays_s = sorted({c.delay_s for c in found} - {0.0})
    return found


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.previous:
        _report(_previous(args), args, None)
        return 0
    began = time.monotonic()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out or f"results/gate-power-{stamp}")
    out.mkdir(parents=True, exist_ok=False)
    fingerprint = machine.fingerprint()
    print(f"gate-power: {SCENARIO}, up to {args.rounds} rounds of {args.round_duration} per "
          f"side; {fingerprint['cpu_model']} x{fingerprint['cpus']}, kernel "
          f"{fingerprint['kernel']}, {fingerprint['virtualisation']}; rounds in {out}")
    with tempfile.TemporaryDirectory(prefix="cachebench-gate-power-") as workdir, \
            _proxied_nodes(args.delays_s, Path(workdir)) as (baseline, candidates):
        added = _added_delays(candidates)
        print("added round trip per delay (plain client, p50, minus the 0-delay proxy): "
              + ", ".join(f"{_us(d)} -> {a * 1e6:+.0f}us" for d, a in added.items()))
        plan = _plan(args, out)
        done = _run(plan, baseline, candidates, args, began)
    finished = plan[:done]
    runs = sum(2 * args.rounds for _ in finished)
    run_seconds = sum(c.seconds for c in finished) / runs if runs else 0.0
    print(f"\ndone: {sum(c.delay_s == 0 for c in finished)} A/A comparisons, "
          f"{done - sum(c.delay_s == 0 for c in finished)} with a delay; "
          f"{run_seconds:.1f} s per run; budget {args.budget}, used "
          f"{(time.monotonic() - began) / 60:.1f} min")
    if finished:
        _report(finished, args, run_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
