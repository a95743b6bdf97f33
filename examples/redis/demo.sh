#!/usr/bin/env bash
# The Redis demo: starts its own redis-server (unix socket and a loopback port, in a temporary
# directory, stopped on exit), then
#  1. three worker programs square numbers from a JoinableQueue; the producer (a fourth program)
#     puts the jobs, collects the results, joins and closes the queue;
#  2. ten buyer programs race for three tickets in a file under one Redis Lock with fencing.
#   examples/redis/demo.sh BIN_DIR
set -euo pipefail
bin=$1
dir=$(mktemp -d -t "mproc-test-${MPROC_TEST_PREFIX:-}XXXXXX")  # scripts/test checks for servers left here
redis-server --port 0 --unixsocket "$dir/redis.sock" --dir "$dir" --save '' --appendonly no \
  --loglevel warning >"$dir/log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 200); do  # up to ~10 s for the socket
  redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && break
  sleep 0.05
done
at="unix://$dir/redis.sock?name="

echo "-- redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on $dir/redis.sock"
echo "-- 1. jobs: 3 worker programs, 1 producer program, one JoinableQueue on Redis"
workers=()
for _ in 1 2 3; do
  "$bin/redis_jobs" work "${at}jobs" &
  workers+=($!)
done
"$bin/redis_jobs" produce "${at}jobs" 200
for w in "${workers[@]}"; do wait "$w"; done

echo "-- 2. tickets: 10 buyer programs, 3 tickets in a file, one Lock on Redis (with a fence)"
echo "3 0" >"$dir/tickets"
buyers=()
for _ in $(seq 10); do
  "$bin/redis_tickets" "${at}tickets" "$dir/tickets" &
  buyers+=($!)
done
for b in "${buyers[@]}"; do wait "$b"; done
read -r left fence <"$dir/tickets"
echo "tickets left: $left (last fence $fence)"
[ "$left" = 0 ]
