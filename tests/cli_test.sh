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
  for n in "$P-q" "$P-stdin" "$P-lock" "$P-dead" "$P-held" "$P-stale" "$P-drained" "$P-typo" "$P-lines" "$P-sleeper" \
           "$P-excl"; do "$MPROC" rm "$n" 2>/dev/null; done
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
t queue put "$P-drained" "read later"; check "another one" 0 $?
check "... read by a later script" "read later" "$(t queue get "$P-drained")"
t queue get "$P-held" --create --timeout 20 > "/tmp/$P.held" &
getter=$!  # it creates $P-held and keeps it open while it waits
for _ in $(seq 200); do [ -e "/dev/shm/mproc.$P-held" ] && break; sleep 0.05; done
stale_out=$(t rm --stale --prefix "$P-"); check "rm --stale" 0 $?
echo "$stale_out" | grep -qx "removed $P-drained"; check "rm --stale removed the drained, abandoned queue" 0 $?
[ ! -e "/dev/shm/mproc.$P-drained" ]; check "its file is gone" 0 $?
# No automatic removal discards a message whose put returned.
[ -e "/dev/shm/mproc.$P-stale" ]; check "rm --stale kept the abandoned queue that holds a message" 0 $?
echo "$stale_out" | grep -q "^kept $P-stale: it holds 1 unread message"; check "and says why" 0 $?
t ls | grep -E "^Queue +$P-stale .*1 waiting" > /dev/null; check "ls shows its depth" 0 $?
check "the message is still there" "left behind" "$(t queue get "$P-stale")"
t queue put "$P-stale" "one"; t queue put "$P-stale" "two"
stale_out=$(t rm --stale --discard --prefix "$P-"); check "rm --stale --discard" 0 $?
echo "$stale_out" | grep -qx "removed $P-stale (a Queue; discarded 2 unread messages)"
check "rm --stale --discard removes it and says what it discarded" 0 $?
[ ! -e "/dev/shm/mproc.$P-stale" ]; check "its file is gone" 0 $?
t rm --discard 2> /dev/null; check "--discard without --stale is a usage error" 2 $?
[ -e "/dev/shm/mproc.$P-held" ]; check "rm --stale kept the queue a live process has open" 0 $?
t queue put "$P-held" "still here"; wait "$getter"; check "the waiting reader got its message" 0 $?
check "intact" "still here" "$(cat "/tmp/$P.held")"
t rm --stale --prefix "$P-" > "/tmp/$P.out"
grep -qx "removed $P-held" "/tmp/$P.out"; check "once its users are gone, it is stale too" 0 $?

# queue get on a name that does not exist: an error naming it, unless --create
t queue get "$P-typo" --timeout 1 > /dev/null 2> "/tmp/$P.err"; check "get on a missing queue exits 3" 3 $?
grep -q "no queue named \"$P-typo\"" "/tmp/$P.err"; check "and names the missing queue" 0 $?
[ ! -e "/dev/shm/mproc.$P-typo" ]; check "and creates nothing" 0 $?
t queue get "$P-typo" --create --timeout 0.1 > /dev/null 2> "/tmp/$P.err"; check "get --create waits on a new queue" 1 $?
grep -q "timed out after 0.1 s: \"$P-typo\" stayed empty" "/tmp/$P.err"; check "a get that times out says so" 0 $?
[ -e "/dev/shm/mproc.$P-typo" ]; check "get --create made the queue" 0 $?

# unknown subcommands name the ones that exist
t queue pop "$P-typo" 2> "/tmp/$P.err"; check "an unknown queue subcommand exits 2" 2 $?
grep -q 'mproc queue: unknown subcommand "pop"; the subcommands are: put, get' "/tmp/$P.err"
check "and lists put and get" 0 $?
t frobnicate 2> "/tmp/$P.err"
grep -q 'mproc: unknown subcommand "frobnicate"; the subcommands are: ls, rm, lock, queue' "/tmp/$P.err"
check "an unknown top-level subcommand lists them all" 0 $?

# put --lines: one message per line of standard input, without the newline; empty lines too
printf 'alpha\nbeta\n\ngamma' | t queue put --lines "$P-lines"; check "put --lines" 0 $?
check "first line" "alpha" "$(t queue get "$P-lines" --timeout 1)"
check "second line" "beta" "$(t queue get "$P-lines" --timeout 1)"
check "an empty line is an empty message" "" "$(t queue get "$P-lines" --timeout 1)"
check "a last line without a newline" "gamma" "$(t queue get "$P-lines" --timeout 1)"
t queue get "$P-lines" --timeout 0.1 > /dev/null 2>&1; check "and nothing more" 1 $?
t queue put --lines "$P-lines" "msg" 2> /dev/null; check "--lines with a MESSAGE is a usage error" 2 $?

# ls reports a blocked consumer only while it is alive
"$MPROC" queue get "$P-sleeper" --create > /dev/null 2>&1 &
sleeper=$!
blocked=1
for _ in $(seq 400); do
  t ls | grep -E "^Queue +$P-sleeper .*a consumer is blocked" > /dev/null && { blocked=0; break; }
  sleep 0.05
done
check "ls shows a consumer blocked in get" 0 $blocked
kill -9 "$sleeper"; wait "$sleeper" 2> /dev/null
t ls | grep -E "^Queue +$P-sleeper " > "/tmp/$P.ls"
grep -q "$P-sleeper" "/tmp/$P.ls"; check "the queue is still listed" 0 $?
grep -q "blocked" "/tmp/$P.ls"; check "but not a dead consumer as blocked" 1 $?

# mproc lock: two commands under one lock never run at once, even when the first `mproc lock`
# is SIGKILLed and its command goes on as an orphan: the next holder waits for that command.
mkfifo "/tmp/$P.go"
"$MPROC" lock "$P-excl" -- sh -c "echo \$\$ > /tmp/$P.first; read x < /tmp/$P.go; echo first-done >> /tmp/$P.order" &
holder=$!
for _ in $(seq 200); do [ -s "/tmp/$P.first" ] && break; sleep 0.05; done
kill -9 "$holder"; wait "$holder" 2> /dev/null
t lock "$P-excl" -- sh -c "echo second-ran >> /tmp/$P.order" 2> "/tmp/$P.err2" &
second=$!
for _ in $(seq 400); do grep -q "still runs" "/tmp/$P.err2" && break; sleep 0.05; done
grep -q "a command that held \"$P-excl\" still runs; waiting for it to end" "/tmp/$P.err2"
check "the next holder waits for the orphaned command" 0 $?
[ ! -s "/tmp/$P.order" ]; check "and has not run its own command meanwhile" 0 $?
echo go > "/tmp/$P.go"  # the orphan's command may finish now
wait "$second"; check "then it runs its command" 0 $?
check "one after the other" "first-done second-ran" "$(tr '\n' ' ' < "/tmp/$P.order" | sed 's/ $//')"
grep -q "died while holding it" "/tmp/$P.err2"; check "and it was told that the holder died" 0 $?
# --timeout covers the wait for an orphaned command too
"$MPROC" lock "$P-excl" -- sh -c "echo \$\$ > /tmp/$P.first2; read x < /tmp/$P.go" &
holder=$!
for _ in $(seq 200); do [ -s "/tmp/$P.first2" ] && break; sleep 0.05; done
kill -9 "$holder"; wait "$holder" 2> /dev/null
t lock "$P-excl" --timeout 0.3 -- true 2> "/tmp/$P.err2"; check "a lock --timeout that expires on an orphan exits 1" 1 $?
grep -q "timed out" "/tmp/$P.err2"; check "and says so" 0 $?
echo go > "/tmp/$P.go"
t lock "$P-excl" --timeout 20 -- true 2> /dev/null; check "then the lock is free again" 0 $?

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
