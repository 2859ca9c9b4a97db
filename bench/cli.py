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
                    "met, 1 when not, 2 on bad input, 3 when the target is unreachable or the "
                    "run was stopped early (Ctrl-C, SIGTERM, a lost worker), 4 when the "
                    "measurement is invalid (the load generator fell behind).")
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
    p.add_argument("--force", action="store_true",
                   help="prefill even when it is larger than the target's memory")
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
                                    "Exit 0 met, 1 missed, 2 bad input, 3 met over a run "
                                    "that did not complete (not a pass) or summary.json "
                                    "could not be written, 4 invalid measurement.")
    an.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories to merge")
    an.add_argument("--slo", metavar="FILE", help="SLO file (default: the one in run.json)")
    an.add_argument("--json", action="store_true", help="print summary.json instead of a table")
    an.add_argument("--out", metavar="FILE",
                    help="write summary.json here (default: into the run directory, when "
                         "there is one; use it for a read-only run directory)")
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
    cmp_.add_argument("--allow-other-machine", action="store_true",
                      help="compare even when run.json says the baseline was measured on "
                           "another machine class; the calibration ratio is printed beside "
                           "the verdict (default: refuse, exit 2)")
    _add_verdict_flags(cmp_, "10%")
    cmp_.set_defaults(handler=commands.compare)

    exp = sub.add_parser("export", help="Prometheus text or CSV from a run directory")
    exp.add_argument("run", metavar="RUN_DIR", help="the run directory")
    fmt = exp.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--prometheus", action="store_true",
                     help="Prometheus text exposition of the summary")
    fmt.add_argument("--csv", action="store_true", help="the timeline with per-interval percentiles")
    exp.add_argument("--out", metavar="FILE", help="default: standard output")
    exp.set_defaults(handler=commands.export)


def _add_verdict_flags(p: argparse.ArgumentParser, default_tolerance: str) -> None:
    """What `bench compare` and `bench regress` share: tolerances and report files."""
    default = default_tolerance.replace("%", "%%")
    p.add_argument("--slo", metavar="FILE", help="tolerances from this SLO file")
    p.add_argument("--tolerance", default=None,
                   help="relative increase of a percentile tolerated (default: the --slo "
                        f"file's regression.tolerance, else {default})")
    p.add_argument("--min-delta", default="0us", metavar="TIME",
                   help="smallest absolute increase that can count as a regression, "
                        "e.g. 50us (default 0: the relative tolerance alone)")
    p.add_argument("--markdown", metavar="FILE", help="also write a Markdown table")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML")


def _add_regress(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "regress", help="same-machine A/B gate: alternate rounds, exit 1 on a regression",
        description="Run SCENARIO in short rounds against the baseline and the candidate "
                    "in turn (ABBA...), each round an ordinary run directory OUT/round-NN-A "
                    "or -B, and judge every op and percentile on the paired rounds. Output "
                    "and exit codes as `bench compare`: 0 no regression, 1 regression, 2 "
                    "bad input, 3 a side unreachable or a run aborted.")
    p.add_argument("scenario", help="scenario name (from scenarios/) or path to a YAML file")
    p.add_argument("--baseline", required=True, metavar="URL",
                   help="target URL of the reference side (A)")
    p.add_argument("--candidate", metavar="URL",
                   help="target URL of the side to judge (B; default: the baseline's, to "
                        "compare client settings such as --candidate-timeout)")
    p.add_argument("--rounds", type=int, default=6, metavar="N",
                   help="runs per side (default 6; at least 3)")
    p.add_argument("--round-duration", default="2s", metavar="TIME",
                   help="measured time of each run (default 2s)")
    p.add_argument("--warmup", metavar="TIME", help="warm-up of each run (default: scenario's)")
    p.add_argument("--rate", metavar="OPS", help="open-loop rate (default: scenario's)")
    p.add_argument("--users", type=int, metavar="N", help="Locust users (default: scenario's)")
    p.add_argument("--timeout", metavar="TIME", default="1s",
                   help="per-request client timeout of both sides (default: 1s)")
    p.add_argument("--candidate-timeout", metavar="TIME",
                   help="the candidate's client timeout (default: --timeout)")
    p.add_argument("--out", metavar="DIR",
                   help="parent of the round directories (default: "
                        "results/<UTC time>-regress-<scenario>)")
    _add_verdict_flags(p, "10%")
    p.set_defaults(handler=commands.regress)


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


def _add_capacity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capacity", help="capacity planning: memory for a hit ratio, max rate, sizing report",
        description="How many nodes, how much memory, for a peak: `memory` simulates the "
                    "scenario through memcached's memory model (no server), `search` finds "
                    "the highest rate a target sustains within the SLO, `plan` sizes a "
                    "fleet from both.")
    csub = p.add_subparsers(dest="capacity_command", required=True,
                            metavar="{memory,search,plan,benchmark}")
    for add in (_add_capacity_memory, _add_capacity_search, _add_capacity_plan):
        add(csub)
    bench_ = csub.add_parser(
        "benchmark", help="the memory model's own speed and sampling error (make perf)",
        description="10 M keys and 100 M ops sampled within 60 s of CPU; a small key "
                    "space sampled within 1 point of simulating every key. Exit 1 when "
                    "a check misses its bound.")
    bench_.add_argument("--quick", action="store_true", help="the sampling check only")
    bench_.set_defaults(handler=commands.capacity_benchmark)


def _model_flags(p: argparse.ArgumentParser) -> None:
    """The memory model's flags (`capacity memory` and `capacity plan`)."""
    p.add_argument("-f", dest="growth_factor", type=float, default=1.25,
                   help="memcached's slab growth factor -f (default 1.25)")
    p.add_argument("-n", dest="min_chunk", type=int, default=48,
                   help="memcached's minimum item data size -n (default 48)")
    p.add_argument("--ops", type=int, metavar="N",
                   help="ops to simulate (default: 10 per key, 1 M to 100 M)")
    p.add_argument("--sample-rate", metavar="R",
                   help="SHARDS sampling rate, 1 = every key (default: chosen for --budget)")
    p.add_argument("--budget", type=int, default=1_000_000, metavar="EVENTS",
                   help="events per simulated size when the rate is chosen (default 1000000)")
    p.add_argument("--seed", type=int, default=None, help="default: the scenario's")


def _add_capacity_memory(csub: argparse._SubParsersAction) -> None:
    mem = csub.add_parser(
        "memory", help="hit ratio against memory per node, simulated (no server)",
        description="Simulate the scenario's op stream through memcached's slab classes and "
                    "segmented LRU on each node of a consistent-hashing pool; print the "
                    "hit-ratio curve, the memory a target hit ratio needs, slab waste and "
                    "the working set. Big key spaces are SHARDS-sampled (rate and expected "
                    "error printed); Che's approximation is shown beside the simulation.")
    mem.add_argument("scenario", help="scenario name or YAML file")
    nodes = mem.add_mutually_exclusive_group()
    nodes.add_argument("--nodes", type=int, default=1, metavar="N",
                       help="memcached nodes in the pool, named cache1..N (default 1)")
    nodes.add_argument("--target", metavar="URL",
                       help="a memcached://h:p,h:p pool: its nodes and their ketama ring")
    mem.add_argument("--memory", metavar="SIZES",
                     help="memory per node to simulate, e.g. 1GiB,2GiB,4GiB (default: chosen "
                          "around the target from Che's approximation)")
    mem.add_argument("--target-hit-ratio", metavar="RATIO", default="95%",
                     help="the hit ratio to size for (default 95%%)")
    _model_flags(mem)
    mem.add_argument("--rate", metavar="OPS",
                     help="op rate of the pool, for TTLs and LRU ages (default: the scenario's)")
    mem.add_argument("--warmup-ops", type=int, metavar="N",
                     help="ops before the hit ratio is counted (default: 30%% of --ops)")
    mem.add_argument("--out", metavar="DIR", help="also write DIR/memory.json")
    mem.add_argument("--quiet", action="store_true", help="no progress display")
    mem.set_defaults(handler=commands.capacity_memory)


def _add_capacity_search(csub: argparse._SubParsersAction) -> None:
    srch = csub.add_parser(
        "search", help="the highest open-loop rate a target sustains within the SLO",
        description="Short open-loop probes through `bench run`'s code: step up until an "
                    "objective fails, bisect to the resolution, confirm. Every probe must be "
                    "valid: when the load generator falls behind, the answer says so with "
                    "the highest valid rate. Probes are run directories under one parent. "
                    "Exit 0 with an answer, 4 when the generator was the limit.")
    srch.add_argument("scenario", help="scenario name or YAML file")
    srch.add_argument("--target", metavar="URL",
                      help="the target (default: the scenario's, else the local cluster)")
    srch.add_argument("--slo", metavar="FILE", help="SLO file (default: the scenario's)")
    srch.add_argument("--start-rate", metavar="OPS",
                      help="first probe's rate (default: the scenario's rate, else 1000)")
    srch.add_argument("--max-rate", metavar="OPS", help="never probe above this rate")
    srch.add_argument("--step", type=float, default=2.0,
                      help="factor between the coarse steps (default 2)")
    srch.add_argument("--resolution", default="2%",
                      help="bisect until passing and failing rates are this close (default 2%%)")
    srch.add_argument("--confirm", type=int, default=2, metavar="N",
                      help="confirmation runs at the answer (default 2)")
    srch.add_argument("--budget", default="5m", metavar="TIME",
                      help="time the whole search may take (default 5m)")
    srch.add_argument("--probe-duration", default="10s", metavar="TIME",
                      help="measured time of each probe (default 10s)")
    srch.add_argument("--probe-warmup", default="2s", metavar="TIME",
                      help="warm-up of each probe (default 2s)")
    srch.add_argument("--prefill", action=argparse.BooleanOptionalAction, default=None,
                      help="prefill before the first probe (default: the scenario's)")
    srch.add_argument("--users", type=int, metavar="N", help="Locust users per probe")
    srch.add_argument("--processes", type=int, metavar="N",
                      help="Locust processes per probe (-1: one per core)")
    srch.add_argument("--timeout", metavar="TIME", default="1s",
                      help="per-request client timeout (default: 1s)")
    srch.add_argument("--out", metavar="DIR",
                      help="parent directory of the probes (default: results/<time>-search-<scenario>)")
    srch.set_defaults(handler=commands.capacity_search)


def _add_capacity_plan(csub: argparse._SubParsersAction) -> None:
    pln = csub.add_parser(
        "plan", help="size a fleet for a forecast peak: capacity.md and capacity.html",
        description="Nodes needed as the larger of the throughput-, memory- and "
                    "network-bound counts plus spares (N+k); memory per node, network RX/TX "
                    "and connections per node, which resource binds, a gutter pool if asked. "
                    "Prints a table, writes capacity.md, capacity.html (with plots) and "
                    "plan.json.")
    pln.add_argument("scenario", help="scenario name or YAML file (the production workload)")
    pln.add_argument("--measured", metavar="DIR",
                     help="a `bench capacity search` directory or a max-rate run directory")
    pln.add_argument("--node-rate", metavar="OPS",
                     help="instead of --measured: ops/s one node sustains within the SLO")
    pln.add_argument("--peak", required=True, metavar="OPS",
                     help="today's peak rate of the whole pool, e.g. 1.2M/s")
    pln.add_argument("--growth", default="0%", help="growth a year, e.g. 30%% (default 0%%)")
    pln.add_argument("--horizon", default="1y", help="how far ahead: 1y, 18mo (default 1y)")
    pln.add_argument("--spare", type=int, default=1, metavar="K",
                     help="N+K: nodes that may be down (default 1)")
    pln.add_argument("--headroom", default="20%",
                     help="share of a node's rate and NIC kept free (default 20%%)")
    pln.add_argument("--node-memory", required=True, metavar="SIZE",
                     help="memory per node for memcached (-m), e.g. 64GiB")
    pln.add_argument("--nic", metavar="SPEED", help="NIC per node, e.g. 10Gbit or 25Gb/s")
    pln.add_argument("--target-hit-ratio", default="95%", metavar="RATIO",
                     help="hit ratio to size memory for (default 95%%)")
    pln.add_argument("--memory-budget", metavar="SIZE",
                     help="instead of a hit ratio: total memory to spend, e.g. 2TiB")
    pln.add_argument("--gutter", action="store_true",
                     help="size a gutter pool (mcrouter failover) for the spare nodes' load")
    _model_flags(pln)
    pln.add_argument("--out", metavar="DIR",
                     help="where the report goes (default: results/<time>-plan-<scenario>)")
    pln.set_defaults(handler=commands.capacity_plan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="cachebench: benchmark memcached and Redis with MediaWiki-like "
                    "workloads, honest latency (no coordinated omission) and SLO verdicts.",
        epilog="Exit codes: 0 ok / SLO met, 1 SLO or regression failed, 2 bad input, "
               "3 target unreachable, run aborted or interrupted, or a file could not be "
               "written, 4 measurement invalid (the load generator fell behind its "
               "schedule: it measured itself, not the cache).")
    parser.add_argument("--version", action="version", version=f"cachebench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_run, _add_worker, _add_cluster, _add_scenarios, _add_analysis,
                _add_regress, _add_capacity, _add_selftest):
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


