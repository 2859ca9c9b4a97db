#!/bin/sh
# The latency regression check on a local cache: what `make regress` and `make baseline` run.
#
#   scripts/regress.sh compare OUT_DIR TOLERANCE
#       `bench run smoke` against the local memcached into OUT_DIR, then `bench compare`
#       against results/baselines/smoke-memcached (report: OUT_DIR/compare.md and
#       OUT_DIR/compare.xml). Exit code: compare's (0 no regression, 1 regression,
#       2 bad input, 4 no verdict), else 1 when the run missed the smoke SLO, 2/3/4 when
#       the run itself could not be used (bad input / target unreachable or run aborted /
#       measurement invalid: the load generator fell behind), 130 on Ctrl-C.
#   scripts/regress.sh record
#       Re-record results/baselines/smoke-memcached and smoke-redis on this machine. The
#       old baselines are replaced only when both new runs completed, were valid
#       measurements and met the SLO.
#
# Both start their own local cluster (`bench cluster up`) and stop it whatever happens
# (success, failure, Ctrl-C), so a failed check never leaves servers behind. Its state
# directory is $CLUSTER_STATE, else a fresh temporary one: never the `.cluster` of
# `make cluster-up`, whose servers a regression check has no business stopping.
#
# The cluster gets ONE memcached node, so `local:memcached` has the topology of the
# memcached service container in .github/workflows/cache-regression.yml and of
# compose.yaml: baseline and candidate must differ only by what is being tested.
#
# Environment: BENCH (default .venv/bin/bench), PYTHON (to read `bench cluster up --json`,
# default python3), CLUSTER_STATE (see above).
set -u

BENCH=${BENCH:-.venv/bin/bench}
PYTHON=${PYTHON:-python3}
SCENARIO=smoke
BASELINES=results/baselines
CLUSTER_STATE=${CLUSTER_STATE:-}
own_state=""      # a temporary state dir this script made and removes
staging=""        # where `record` writes before replacing the baselines
cluster_json=""   # `bench cluster up --json`: the URL of each local target
started=""        # set once `bench cluster up` was called: from then on, stop at exit

die() {
    code=$1
    shift
    echo "regress: $*" >&2
    exit "$code"
}

# shellcheck disable=SC2317  # run by the EXIT trap, which shellcheck does not follow
cleanup() {
    if [ -n "$started" ]; then
        "$BENCH" cluster down --state-dir "$CLUSTER_STATE" >/dev/null ||
            echo "regress: could not stop the local cluster in $CLUSTER_STATE" >&2
    fi
    rm -rf ${own_state:+"$own_state"} ${staging:+"$staging"}
}

# Start the local cluster; from here on, any exit stops it (EXIT runs on `exit` too,
# and the INT/TERM traps turn a signal into an exit so that EXIT runs).
start_cluster() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if [ -z "$CLUSTER_STATE" ]; then
        own_state=$(mktemp -d "${TMPDIR:-/tmp}/cachebench-regress.XXXXXX") || exit 2
        CLUSTER_STATE=$own_state
    elif [ -f "$CLUSTER_STATE/state.json" ]; then
        # Not ours to stop at the end: refuse rather than take over someone's cluster.
        die 2 "a local cluster is already recorded in $CLUSTER_STATE; stop it" \
              "(bench cluster down --state-dir $CLUSTER_STATE) or choose another CLUSTER_STATE"
    fi
    started=1
    cluster_json=$("$BENCH" cluster up --state-dir "$CLUSTER_STATE" --memcached-nodes 1 --json) ||
        exit $?
}

# The URL of local target $1 (memcached, redis...) in the cluster started above. Not
# `--target local:NAME`: that reads the default state dir, and ours is elsewhere.
url_of() {
    printf '%s' "$cluster_json" |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["urls"][sys.argv[1]])' "$1"
}

run_smoke() {
    "$BENCH" run "$SCENARIO" --target "$1" --out "$2" --quiet
}

compare_command() {
    out=$1
    tolerance=$2
    baseline=$BASELINES/$SCENARIO-memcached
    # Fail before starting servers when the run could not be judged anyway.
    [ -f "$baseline/summary.json" ] ||
        die 2 "$baseline: no baseline run there; record one with \`make baseline\`"
    [ -e "$out" ] && die 2 "$out: already exists; give a new REGRESS_OUT"
    start_cluster
    url=$(url_of memcached) || exit 2
    run_smoke "$url" "$out"
    run_rc=$?
    case $run_rc in
        0 | 1) ;;  # a completed run (1: SLO missed) can still be compared
        *) exit "$run_rc" ;;
    esac
    "$BENCH" compare "$baseline" "$out" --tolerance "$tolerance" \
        --markdown "$out/compare.md" --junit "$out/compare.xml"
    compare_rc=$?
    echo "regress: $out/compare.md, $out/compare.xml"
    [ "$compare_rc" -ne 0 ] && exit "$compare_rc"
    [ "$run_rc" -ne 0 ] && echo "regress: no regression, but the run missed the $SCENARIO SLO" >&2
    exit "$run_rc"
}

record_command() {
    start_cluster
    mkdir -p results
    staging=$(mktemp -d results/.baseline.XXXXXX) || exit 2
    for kind in memcached redis; do
        url=$(url_of "$kind") || exit 2
        run_smoke "$url" "$staging/$SCENARIO-$kind" || exit $?
        # Locust's own log and summary, the report and its plots are not part of the
        # run-directory contract; `bench report` remakes the report from the rest.
        rm -f "$staging/$SCENARIO-$kind"/locust.* "$staging/$SCENARIO-$kind"/report*
    done
    mkdir -p "$BASELINES"
    for kind in memcached redis; do
        rm -rf "${BASELINES:?}/$SCENARIO-$kind"
        mv "$staging/$SCENARIO-$kind" "$BASELINES/$SCENARIO-$kind"
    done
    echo "regress: recorded $BASELINES/$SCENARIO-memcached and $BASELINES/$SCENARIO-redis;" \
         "commit them with a note on the machine class they come from"
    exit 0
}

case ${1:-} in
    compare)
        [ $# -eq 3 ] || die 2 "usage: $0 compare OUT_DIR TOLERANCE"
        compare_command "$2" "$3"
        ;;
    record)
        [ $# -eq 1 ] || die 2 "usage: $0 record"
        record_command
        ;;
    *)
        die 2 "usage: $0 compare OUT_DIR TOLERANCE | $0 record"
        ;;
esac
