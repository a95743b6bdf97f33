#!/usr/bin/env bash
# Before/after on a noisy machine: runs two mproc_compare binaries (say, one built from an older
# commit in a git worktree, and build/release's) interleaved, workload by workload, so that a
# slow phase of the machine hits both alike. Prints the rows that matter, one line each; compare
# same-run ratios (mproc vs a pipe, vs the raw ring), not absolute figures.
#   bench/ab.sh BEFORE_BIN AFTER_BIN [REPEATS] [WORKLOADS...]
# e.g. git worktree add /tmp/before eea518e && cmake -S /tmp/before -B /tmp/before/b -G Ninja \
#        -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build /tmp/before/b --target mproc_compare
#      bench/ab.sh /tmp/before/b/bench/mproc_compare build/release/bench/mproc_compare
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
before=$1 after=$2 repeats=${3:-2}
shift $(($# < 3 ? $# : 3))
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(rt8 tp64 tp4k mpmc2 mpmc4 lock2 lock4 seed)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for w in "${workloads[@]}"; do
  for rep in $(seq "$repeats"); do
    for v in before after; do
      bin=$before
      [ $v = after ] && bin=$after
      "$bin" --only "$w" --rounds 3 --no-python --no-plot --out "$out" 2>/dev/null |
        grep -E "^  (mproc::|raw |robust pthread_mutex  |pipe\(2\) )" | sed "s/^/$w $v $rep |/" | cut -c1-120 || true
    done
  done
done
