#!/bin/sh
# `make baseline`: re-record results/baselines/smoke-memcached and smoke-redis on this
# machine. Each run.json records the machine it was measured on (CPU model, CPUs,
# kernel, virtualisation) and a calibration of that machine (a plain client loop's round
# trip), so `bench compare` can tell when a baseline comes from another machine. The old
# baselines are replaced only when both new runs completed and met the SLO.
#
# These baselines are for offline comparisons on the machine class that recorded them.
# The CI gate does not use them: `bench regress` (make regress, the workflow) measures
# baseline and candidate side by side on the machine it runs on.
#
# The script starts its own local cluster (`bench cluster up`, ONE memcached node) and
# stops it whatever happens (success, failure, Ctrl-C). Its state directory is
# $CLUSTER_STATE, else a fresh temporary one: never the `.cluster` of `make cluster-up`,
# whose servers this script has no business stopping.
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
staging=""        # where the new runs are written before replacing the baselines
cluster_json=""   # `bench cluster up --json`: the URL of each local target
started=""        # set once `bench cluster up` was called: from then on, stop at exit

die() {
    code=$1
    shift
    echo "baseline: $*" >&2
    exit "$code"
}

# shellcheck disable=SC2317  # run by the EXIT trap, which shellcheck does not follow
cleanup() {
    if [ -n "$started" ]; then
        "$BENCH" cluster down --state-dir "$CLUSTER_STATE" >/dev/null ||
            echo "baseline: could not stop the local cluster in $CLUSTER_STATE" >&2
    fi
    rm -rf ${own_state:+"$own_state"} ${staging:+"$staging"}
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -z "$CLUSTER_STATE" ]; then
    own_state=$(mktemp -d "${TMPDIR:-/tmp}/cachebench-baseline.XXXXXX") || exit 2
    CLUSTER_STATE=$own_state
elif [ -f "$CLUSTER_STATE/state.json" ]; then
    die 2 "a local cluster is already recorded in $CLUSTER_STATE; stop it" \
          "(bench cluster down --state-dir $CLUSTER_STATE) or choose another CLUSTER_STATE"
fi
started=1
cluster_json=$("$BENCH" cluster up --state-dir "$CLUSTER_STATE" --memcached-nodes 1 --json) ||
    exit $?

mkdir -p results
staging=$(mktemp -d results/.baseline.XXXXXX) || exit 2
for kind in memcached redis; do
    # Not `--target local:NAME`: that reads the default state dir, and ours is elsewhere.
    url=$(printf '%s' "$cluster_json" |
          "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["urls"][sys.argv[1]])' "$kind") ||
        exit 2
    "$BENCH" run "$SCENARIO" --target "$url" --out "$staging/$SCENARIO-$kind" --quiet || exit $?
    # Locust's own log and summary, the report and its plots are not part of the
    # run-directory contract; `bench report` remakes the report from the rest.
    rm -f "$staging/$SCENARIO-$kind"/locust.* "$staging/$SCENARIO-$kind"/report*
done
mkdir -p "$BASELINES"
for kind in memcached redis; do
    rm -rf "${BASELINES:?}/$SCENARIO-$kind"
    mv "$staging/$SCENARIO-$kind" "$BASELINES/$SCENARIO-$kind"
done
echo "baseline: recorded $BASELINES/$SCENARIO-memcached and $BASELINES/$SCENARIO-redis;" \
     "commit them with a note on the machine class they come from"
exit 0
