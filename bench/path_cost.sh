#!/usr/bin/env bash
# Instructions per operation on mproc's fast paths (bench/path_cost.cpp), counted by callgrind:
# independent of the machine's load, so a before/after comparison needs no quiet machine.
#   bench/path_cost.sh [BUILD_DIR]     (default build/release; needs valgrind)
# Each mode runs twice (N and 2N operations); the difference divided by N leaves out start-up.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/release}/bench/path_cost
command -v valgrind >/dev/null || { echo "path_cost.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[ -x "$bin" ] || { echo "path_cost.sh: build $bin first (cmake --build --preset release)" >&2; exit 1; }
n=200000
count() {  # count MODE OPS: instructions of one run
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-12s %12s\n' mode instr/op
for mode in queue-4k queue-1m queue-batch pipe lock pthread; do
  one=$(count "$mode" "$n")
  two=$(count "$mode" $((2 * n)))
  awk -v a="$one" -v b="$two" -v n="$n" -v m="$mode" 'BEGIN { printf "%-12s %12.1f\n", m, (b - a) / n }'
done
