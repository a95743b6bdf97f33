#!/usr/bin/env bash
# End-to-end tests of the `mproc` command-line tool, from a shell, as a script would use it.
# Usage: cli_test.sh PATH/TO/mproc   (run by CTest; every command has a timeout as a watchdog)
set -u
MPROC=$1
# Every name under the run's prefix (scripts/test sets MPROC_TEST_PREFIX and checks what is left)
P="${MPROC_TEST_PREFIX:-test-$$-}cli-$$"
failures=0
passes=0
t() { timeout 30 "$MPROC" "$@"; }
check() {  # check DESCRIPTION EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then passes=$((passes + 1)); else
    echo "FAIL: $1: expected [$2], got [$3]"; failures=$((failures + 1)); fi
}
cleanup() {
  for n in "$P-q" "$P-stdin" "$P-lock" "$P-dead" "$P-held" "$P-stale"; do "$MPROC" rm "$n" 2>/dev/null; done
  rm -f "/tmp/$P".*
}
trap cleanup EXIT

# --help works everywhere and exits 0
for sub in "" "ls" "rm" "lock" "queue" "queue put" "queue get"; do
  # shellcheck disable=SC2086
  t $sub --help > /dev/null; check "--help for '$sub'" 0 $?
done

# usage errors exit 2, with the reason on stderr
t frobnicate 2> "/tmp/$P.err"; check "unknown subcommand exits 2" 2 $?
grep -q . "/tmp/$P.err"; check "unknown subcommand explains itself on stderr" 0 $?

# a message round trip through a named queue, from an argument and from standard input
t queue put "$P-q" "hello from a shell"; check "queue put" 0 $?
check "queue get returns the message" "hello from a shell" "$(t queue get "$P-q")"
printf 'line one\nline two' | t queue put "$P-stdin"; check "queue put from stdin" 0 $?
check "stdin message intact" "$(printf 'line one\nline two')" "$(t queue get "$P-stdin")"

# ls shows kind, name and depth
t queue put "$P-q" "waiting"
ls_out=$(t ls)
echo "$ls_out" | grep -E "^Queue +$P-q .*1 waiting" > /dev/null; check "ls shows the queue and its depth" 0 $?
# ... and that the tool made it persistent, its creator (that `mproc queue put`) is gone, and
# nobody has it open
echo "$ls_out" | grep -E "^Queue +$P-q .* persistent +[0-9]+ +no +no " > /dev/null
check "ls shows lifetime, creator, creator alive, in use" 0 $?

# get on an empty queue times out with exit 1 and prints nothing
t queue get "$P-q" > /dev/null   # drain the one left
start=$(date +%s%N)
out=$(t queue get "$P-q" --timeout 0.3); rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "get --timeout on an empty queue exits 1" 1 $rc
check "and prints nothing" "" "$out"
[ "$elapsed_ms" -ge 300 ]; check "it waited at least the timeout (${elapsed_ms} ms)" 0 $?

# lock runs the command, passes its exit status through, and serialises concurrent holders
t lock "$P-lock" -- sh -c 'exit 7'; check "lock passes the command's exit status" 7 $?
for i in 1 2 3; do
  t lock "$P-lock" -- sh -c "echo start $i >> /tmp/$P.log; sleep 0.1; echo end $i >> /tmp/$P.log" &
done
wait
interleaved=$(awk '{ if (NR % 2 == 1) s = $2; else if ($1 != "end" || $2 != s) bad = 1 } END { print bad + 0 }' "/tmp/$P.log")
check "three concurrent holders never interleave" 0 "$interleaved"
check "all three ran" 6 "$(wc -l < "/tmp/$P.log")"

# a holder killed with SIGKILL: the next holder gets the lock and is told
"$MPROC" lock "$P-dead" -- sh -c "echo \$\$ > /tmp/$P.child; exec sleep 30" &
holder=$!  # mproc itself, the lock's holder (its command is a child of it)
for _ in $(seq 100); do [ -s "/tmp/$P.child" ] && break; sleep 0.05; done
kill -9 "$holder"; wait "$holder" 2>/dev/null
kill "$(cat "/tmp/$P.child")" 2>/dev/null
t lock "$P-dead" --timeout 5 -- true 2> "/tmp/$P.err"; check "the next holder gets a dead holder's lock" 0 $?
grep -q "died while holding it" "/tmp/$P.err"; check "and is told on stderr" 0 $?
t lock "$P-dead" --timeout 5 -- true 2> "/tmp/$P.err"
grep -q "died" "/tmp/$P.err"; check "a successful command marked it consistent again" 1 $?

# rm removes; errors are exit 3 with a message
t rm "$P-q"; check "rm" 0 $?
[ ! -e "/dev/shm/mproc.$P-q" ]; check "rm removed the file" 0 $?
t rm "$P-q" 2> "/tmp/$P.err"; check "rm of a missing object exits 3" 3 $?
grep -q "No such file" "/tmp/$P.err"; check "and says why" 0 $?
t rm "bad/name" 2> /dev/null; check "an invalid name exits 3" 3 $?

# rm --stale removes what nobody has open and whose creator is dead, and nothing in use
t rm 2> /dev/null; check "rm with neither NAME nor --stale is a usage error" 2 $?
t rm "$P-q" --stale 2> /dev/null; check "rm with both NAME and --stale is a usage error" 2 $?
t rm --prefix "$P-" 2> /dev/null; check "rm --prefix without --stale is a usage error" 2 $?
t queue put "$P-stale" "left behind"; check "a queue left by a finished script" 0 $?
t queue get "$P-held" --timeout 20 > "/tmp/$P.held" &
getter=$!  # it creates $P-held and keeps it open while it waits
for _ in $(seq 200); do [ -e "/dev/shm/mproc.$P-held" ] && break; sleep 0.05; done
stale_out=$(t rm --stale --prefix "$P-"); check "rm --stale" 0 $?
echo "$stale_out" | grep -qx "removed $P-stale"; check "rm --stale removed the abandoned queue" 0 $?
[ ! -e "/dev/shm/mproc.$P-stale" ]; check "its file is gone" 0 $?
[ -e "/dev/shm/mproc.$P-held" ]; check "rm --stale kept the queue a live process has open" 0 $?
t queue put "$P-held" "still here"; wait "$getter"; check "the waiting reader got its message" 0 $?
check "intact" "still here" "$(cat "/tmp/$P.held")"
t rm --stale --prefix "$P-" > "/tmp/$P.out"
grep -qx "removed $P-held" "/tmp/$P.out"; check "once its users are gone, it is stale too" 0 $?

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
