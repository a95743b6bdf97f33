#!/usr/bin/env bash
# `mproc` with Redis addresses, end to end: queue put/get, lock (with its fence in the command's
# environment), ls. Starts its own redis-server on a unix socket in a temporary directory and
# stops it on any exit.
set -euo pipefail
mproc=$1
dir=$(mktemp -d -t "mproc-test-${MPROC_TEST_PREFIX:-}XXXXXX")  # scripts/test checks for servers left here
redis-server --port 0 --unixsocket "$dir/redis.sock" --dir "$dir" --save '' --appendonly no \
  --loglevel warning >"$dir/log" 2>&1 &
server=$!
trap 'kill -9 $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 200); do  # up to ~10 s for the socket (a condition, polled)
  redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && break
  sleep 0.05
done
at="unix://$dir/redis.sock"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$mproc" queue put "$at?name=jobs" first
printf 'a\nb\n' | "$mproc" queue put --lines "$at?name=jobs"
[ "$("$mproc" queue get "$at?name=jobs")" = first ] || fail "first message"
[ "$("$mproc" queue get "$at?name=jobs")" = a ] || fail "second message"
"$mproc" ls "$at" | grep -q "^Queue .*jobs .*std::string .* 1 " || fail "ls shows one unread message"
[ "$("$mproc" queue get "$at?name=jobs")" = b ] || fail "third message"
set +e
"$mproc" queue get --timeout 0.05 "$at?name=jobs" 2>/dev/null; rc=$?
[ $rc = 1 ] || fail "get on an empty queue: exit $rc, wanted 1"
"$mproc" queue get "$at?name=missing" 2>/dev/null; rc=$?
[ $rc = 3 ] || fail "get on a missing queue: exit $rc, wanted 3"
out=$("$mproc" queue get "rediss://h/q" 2>&1); rc=$?
[ $rc = 3 ] && [[ $out == *TLS* ]] || fail "rediss:// refused naming TLS: exit $rc, $out"
set -e
f1=$("$mproc" lock "$at?name=tickets" -- sh -c 'echo $MPROC_LOCK_FENCE')
f2=$("$mproc" lock "$at?name=tickets" -- sh -c 'echo $MPROC_LOCK_FENCE')
[ "$f2" -gt "$f1" ] || fail "fences $f1 then $f2"
set +e
"$mproc" lock "$at?name=tickets" -- sh -c 'exit 7'; rc=$?
set -e
[ $rc = 7 ] || fail "lock passes the command's status: $rc"
"$mproc" ls "$at" | grep -q "^Lock .*tickets .*fence 3 .*free" || fail "ls shows the lock"

# The holder SIGKILLed while its command runs: the lease it renewed will lapse, so the command
# must die with it instead of running on beside the next holder.
"$mproc" lock "$at?name=held" -- sh -c 'echo $$ > "$0"; exec sleep 600' "$dir/cmd.pid" &
holder=$!
for _ in $(seq 200); do [ -s "$dir/cmd.pid" ] && break; sleep 0.05; done  # a condition, polled
[ -s "$dir/cmd.pid" ] || fail "the command under the lock did not start"
cmd=$(cat "$dir/cmd.pid")
kill -9 $holder
wait $holder 2>/dev/null || true
for _ in $(seq 200); do kill -0 "$cmd" 2>/dev/null || break; sleep 0.05; done  # a condition, polled
if kill -0 "$cmd" 2>/dev/null; then
  kill -9 "$cmd"
  fail "the command outlived its SIGKILLed holder"
fi
echo "redis cli: ok"
