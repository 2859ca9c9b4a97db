"""The `bench` command: argument parsing and exit codes, nothing else.

Each sub-command is pointed at its handler in `bench.commands`, which takes the parsed
arguments and returns an exit code; handlers raise `BenchError` for anything the user
can fix, which is printed here as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench import __version__, commands
from bench.errors import BenchError

DEFAULT_SCENARIO = "mediawiki"


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="drive load against a target and write a run directory",
        description="Run a scenario through Locust (headless unless --ui) and write "
                    "results/<time>-<scenario>/: run.json, latency.hlog, timeline.csv, "
                    "server-stats.json, loadgen.csv, summary.json. Exit 0 when the SLO is "
                    "met, 1 when not, 2 on bad input, 3 when the target is unreachable, 4 "
                    "when the measurement is invalid (the load generator fell behind).")
    p.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                   help="scenario name (from scenarios/) or path to a YAML file "
                        f"(default: {DEFAULT_SCENARIO})")
    p.add_argument("--target", metavar="URL",
                   help="memcached://h:p[,h:p...], redis://[user:pass@]h:p[/db], "
                        "redis+cluster://h:p (default: the scenario's target, else the "
                        "local cluster started by `bench cluster up`)")
    p.add_argument("--duration", metavar="TIME",
                   help="measured time, e.g. 60s or 5m (default: the scenario's, else 60s)")
    p.add_argument("--warmup", metavar="TIME",
                   help="load before measuring, excluded from results (default: scenario's, else 5s)")
    p.add_argument("--prefill", action=argparse.BooleanOptionalAction, default=None,
                   help="write every key of the key spaces before the run (default: scenario's)")
    p.add_argument("--rate", metavar="OPS",
                   help="open loop: total target rate, e.g. 20000 or 20k/s (default: scenario's)")
    p.add_argument("--arrival", choices=["poisson", "uniform"],
                   help="open-loop arrivals (default: poisson)")
    p.add_argument("--closed", action="store_true",
                   help="closed loop: each user sends as fast as it can (peak throughput)")
    p.add_argument("--think", metavar="TIME", help="closed loop: think time between ops")
    p.add_argument("--users", type=int, metavar="N", help="Locust users (default: scenario's, else 16)")
    p.add_argument("--processes", type=int, metavar="N", default=None,
                   help="Locust worker processes on this machine (-1: one per core)")
    p.add_argument("--seed", type=int, metavar="N", help="random seed (default: scenario's, else 1)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: results/<UTC time>-<scenario>)")
    p.add_argument("--slo", metavar="FILE", help="SLO file (default: the scenario's slo block)")
    p.add_argument("--timeout", metavar="TIME", default="1s",
                   help="per-request client timeout (default: 1s)")
    p.add_argument("--ui", action="store_true", help="serve Locust's web UI instead of running headless")
    p.add_argument("--web-port", type=int, default=8089, help="web UI port (default 8089)")
    p.add_argument("--master", action="store_true",
                   help="be the Locust master for `bench worker` processes on other machines")
    p.add_argument("--master-bind-host", default="127.0.0.1",
                   help="address the master listens on for workers (default 127.0.0.1)")
    p.add_argument("--master-bind-port", type=int, default=5557,
                   help="port the master listens on for workers (default 5557)")
    p.add_argument("--expect-workers", type=int, default=1, metavar="N",
                   help="with --master: wait for N workers before starting (default 1)")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write report.html and its plots into the run directory (default: yes)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(handler=commands.run)


def _add_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker", help="serve load for a `bench run --master` on another machine",
        description="Connect to a master started with `bench run --master` and run the "
                    "users it assigns. The scenario and target come from the master.")
    p.add_argument("--master-host", required=True, metavar="HOST",
                   help="host of the `bench run --master` to serve")
    p.add_argument("--master-port", type=int, default=5557,
                   help="its --master-bind-port (default 5557)")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="worker processes on this machine (-1: one per core)")
    p.set_defaults(handler=commands.worker)


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster", help="start, inspect or stop the local cache cluster",
        description="A local memcached pool, a standalone Redis, a Redis Cluster and "
                    "nutcracker in front of the memcached pool, all on free 127.0.0.1 ports.")
    csub = p.add_subparsers(dest="cluster_command", required=True, metavar="{up,down,status}")
    up = csub.add_parser("up", help="start the servers and wait until they answer")
    up.add_argument("--memcached-nodes", type=int, default=3,
                    help="memcached servers in the pool (default 3)")
    up.add_argument("--redis-cluster-masters", type=int, default=3,
                    help="masters of the Redis Cluster (default 3)")
    up.add_argument("--memory", default="256MiB", help="memory per server (default 256MiB)")
    up.add_argument("--gutter", type=int, default=0, metavar="N",
                    help="also a gutter pool of N memcached nodes, and local:memcached-wmf "
                         "(the pool with mcrouter-style routing, ?preset=wmf) (default 0)")
    up.add_argument("--replicas", type=int, default=0, metavar="N",
                    help="replicas per Redis Cluster master, which take over when it dies "
                         "(default 0)")
    up.set_defaults(handler=commands.cluster_up)
    status = csub.add_parser("status", help="show servers, ports, pids and whether they answer")
    status.set_defaults(handler=commands.cluster_status)
    down = csub.add_parser("down", help="stop what `up` started")
    down.set_defaults(handler=commands.cluster_down)
    for cp in (up, status, down):
        cp.add_argument("--state-dir", default=None,
                        help="where pids, ports and logs are kept (default: "
                             "$CACHEBENCH_CLUSTER_STATE, else .cluster)")
        cp.add_argument("--json", action="store_true", help="machine-readable output")


def _add_scenarios(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenarios", help="list, show, validate and preview scenario files")
    ssub = p.add_subparsers(dest="scenarios_command", required=True,
                            metavar="{list,show,validate,schema,preview}")
    listing = ssub.add_parser("list", help="the scenarios in scenarios/ with what they model")
    listing.set_defaults(handler=commands.scenarios_list)
    show = ssub.add_parser("show", help="a scenario as validated, with defaults filled in")
    show.add_argument("name", help="scenario name or YAML file")
    show.set_defaults(handler=commands.scenarios_show)
    val = ssub.add_parser("validate", help="check scenario files; exit 2 on the first error")
    val.add_argument("files", nargs="+", help="scenario YAML files")
    val.set_defaults(handler=commands.scenarios_validate)
    schema = ssub.add_parser("schema",
                             help="print the JSON Schema of scenario files (for editors)")
    schema.set_defaults(handler=commands.scenarios_schema)
    pre = ssub.add_parser("preview", help="what a scenario generates, without a server")
    pre.add_argument("name", help="scenario name or YAML file")
    pre.add_argument("--ops", type=int, default=100_000,
                     help="ops to generate (default 100000)")
    pre.add_argument("--seed", type=int, default=None, help="default: the scenario's")
    pre.add_argument("--csv", metavar="FILE", help="write the op stream: op,key,value_size,ttl")
    pre.set_defaults(handler=commands.scenarios_preview)


def _add_analysis(sub: argparse._SubParsersAction) -> None:
    an = sub.add_parser("analyze", help="recompute summary and SLO verdict from run directories",
                        description="Merge the histograms of one or more run directories "
                                    "(e.g. from several worker machines) and evaluate the SLO. "
                                    "Exit 0 met, 1 missed, 2 bad input, 4 invalid "
                                    "measurement.")
    an.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories to merge")
    an.add_argument("--slo", metavar="FILE", help="SLO file (default: the one in run.json)")
    an.add_argument("--json", action="store_true", help="print summary.json instead of a table")
    an.set_defaults(handler=commands.analyze)

    rep = sub.add_parser("report", help="write report.html and PNG plots for a run")
    rep.add_argument("run", metavar="RUN_DIR", help="the run directory")
    rep.add_argument("--slo", metavar="FILE", help="SLO file (default: the one in run.json)")
    rep.add_argument("--out", metavar="FILE", help="default: RUN_DIR/report.html")
    rep.set_defaults(handler=commands.report)

    cmp_ = sub.add_parser("compare", help="baseline vs candidate; exit 1 on a regression",
                          description="Compare latency percentiles of two runs. Exit 0 no "
                                      "regression, 1 regression, 2 bad input, 4 no verdict: "
                                      "a side's measurement is invalid.")
    cmp_.add_argument("baseline", metavar="BASELINE_DIR", help="the reference run")
    cmp_.add_argument("candidate", metavar="CANDIDATE_DIR", help="the run to judge")
    cmp_.add_argument("--slo", metavar="FILE",
                      help="tolerance and validity thresholds from this SLO file")
    cmp_.add_argument("--tolerance", default=None,
                      help="relative increase of a percentile tolerated (default: the --slo "
                           "file's regression.tolerance, else 10%%)")
    cmp_.add_argument("--min-delta", default="0us", metavar="TIME",
                      help="smallest absolute increase that can count as a regression, "
                           "e.g. 50us (default 0: the relative tolerance alone)")
    cmp_.add_argument("--markdown", metavar="FILE", help="also write a Markdown table")
    cmp_.add_argument("--junit", metavar="FILE", help="also write JUnit XML")
    cmp_.set_defaults(handler=commands.compare)

    exp = sub.add_parser("export", help="Prometheus text or CSV from a run directory")
    exp.add_argument("run", metavar="RUN_DIR", help="the run directory")
    fmt = exp.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--prometheus", action="store_true",
                     help="Prometheus text exposition of the summary")
    fmt.add_argument("--csv", action="store_true", help="the timeline with per-interval percentiles")
    exp.add_argument("--out", metavar="FILE", help="default: standard output")
    exp.set_defaults(handler=commands.export)


def _add_selftest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("selftest", help="measure the harness itself and print ratios",
                       description="Benchmarks of the harness against plain gevent client "
                                   "loops, alternated in the same run (ratios, not absolute "
                                   "times): the noise floor at 1,000 gets/s, the closed-loop "
                                   "ceiling of one process on memcached and Redis, op "
                                   "generation cost, analysis speed.")
    p.add_argument("--target", metavar="URL", help="memcached URL (default: start one)")
    p.add_argument("--redis-target", metavar="URL",
                   help="Redis URL (default: start one when redis-server is installed)")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="length of each timed run (default 5)")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternated rounds of each comparison (default 3)")
    p.set_defaults(handler=commands.selftest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="cachebench: benchmark memcached and Redis with MediaWiki-like "
                    "workloads, honest latency (no coordinated omission) and SLO verdicts.",
        epilog="Exit codes: 0 ok / SLO met, 1 SLO or regression failed, 2 bad input, "
               "3 target unreachable or run aborted, 4 measurement invalid (the load "
               "generator fell behind its schedule: it measured itself, not the cache).")
    parser.add_argument("--version", action="version", version=f"cachebench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_run, _add_worker, _add_cluster, _add_scenarios, _add_analysis,
                _add_selftest):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


