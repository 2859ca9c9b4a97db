"""`make regress`: the A/B latency gate on this machine, against two local memcached nodes.

    python scripts/local_regress.py --out DIR [--state-dir DIR] [--candidate-args ARGS]
                                    [--scenario smoke] [-- BENCH_REGRESS_FLAGS...]

The baseline node runs memcached with the flags `bench cluster up` gives it; the
candidate node with the same flags followed by --candidate-args (make's CANDIDATE_ARGS,
e.g. `-t 4` or `-o no_lru_crawler`), which override them. `bench regress` alternates
rounds between the two and judges the paired rounds; its Markdown and JUnit reports go
to DIR/regress.md and DIR/regress.xml beside the rounds. With no candidate arguments the
two nodes are identical: an A/A check of the machine and the gate.

Both servers are stopped whatever happens (success, failure, Ctrl-C, SIGTERM). Their
logs stay in --state-dir (default: a temporary directory, removed afterwards).

Exit code: `bench regress`'s (0 no regression, 1 regression, 2 bad input, 3 a node
unreachable or a run aborted, 130 interrupted or terminated); 2 as well when memcached
refuses the candidate's arguments.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import cluster
from bench.cli import main as bench
from bench.errors import EXIT_BAD_INPUT, BenchError, TargetError

MEMORY_MB = 256  # `bench cluster up`'s default --memory


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="parent of the rounds and reports")
    parser.add_argument("--state-dir", help="servers' logs (default: a temporary directory)")
    parser.add_argument("--candidate-args", default="",
                        help="extra memcached arguments of the candidate node")
    parser.add_argument("--scenario", default="smoke", help="scenario of the rounds")
    parser.add_argument("regress_flags", nargs=argparse.REMAINDER,
                        help="after --: more `bench regress` flags, e.g. --rounds 8")
    return parser.parse_args(argv)


def _start(state_dir: Path, name: str, extra: list[str], stack: ExitStack) -> str:
    """Start one node, stopped when `stack` closes; its URL."""
    server = cluster.start_memcached(0, state_dir, MEMORY_MB, name=name, extra_args=extra)
    stack.callback(server.stop)
    return server.url


def run(args: argparse.Namespace) -> int:
    """Start both nodes, run the gate, stop both; the gate's exit code."""
    candidate_args = shlex.split(args.candidate_args)
    flags = [f for f in args.regress_flags if f != "--"]
    out = Path(args.out)
    with ExitStack() as stack:
        state_dir = Path(args.state_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="cachebench-regress-")))
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            baseline = _start(state_dir, "baseline", [], stack)
        except BenchError as err:  # memcached missing, or no free port
            print(f"regress: {err}", file=sys.stderr)
            return err.exit_code
        try:
            candidate = _start(state_dir, "candidate", candidate_args, stack)
        except TargetError as err:
            print(f"regress: memcached refused CANDIDATE_ARGS={args.candidate_args!r}: {err}",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"regress: baseline memcached {baseline}, candidate memcached {candidate}"
              + (f" with {args.candidate_args}" if candidate_args else " (same flags)"))
        return bench(["regress", args.scenario, "--baseline", baseline, "--candidate", candidate,
                      "--out", str(out), "--markdown", str(out / "regress.md"),
                      "--junit", str(out / "regress.xml"), *flags])


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the round in progress stops its Locust cleanly, then the
    # servers are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(run(_parse(sys.argv[1:])))
