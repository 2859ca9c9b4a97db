#!/bin/sh
# Say what a harness exit code means, then exit with it:
#
#   sh scripts/exit-status.sh bench 1     ->  "bench exited 1: SLO missed", exit 1
#
# make reports any failing recipe as its own exit status 2, which is also the harness's
# code for bad input; this line is how `make bench` and `make regress` show the harness's
# real code (scripts that need the number itself run `bench` directly).
what=$1
code=$2
case $code in
    0)   case $what in
             *regress*|*compare*) meaning="no regression" ;;
             *) meaning="ok (SLO met or none)" ;;
         esac ;;
    1)   case $what in
             *regress*|*compare*) meaning="regression found" ;;
             *) meaning="SLO missed" ;;
         esac ;;
    2)   meaning="bad input (scenario, flags or files)" ;;
    3)   meaning="target unreachable or run aborted" ;;
    4)   meaning="measurement invalid (the load generator fell behind)" ;;
    130) meaning="interrupted" ;;
    143) meaning="terminated" ;;
    *)   meaning="unexpected exit status" ;;
esac
echo "$what exited $code: $meaning" >&2
exit "$code"
