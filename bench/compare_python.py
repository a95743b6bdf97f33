"""Python's multiprocessing on mproc_compare's workloads, measured the way mproc_compare measures.

mproc_compare runs this script (when python3 is present) and merges its results into its table.
Each run forks its processes (the "fork" start method), releases them together from a Barrier,
and takes the time from the release to the last process's end stamp (time.monotonic_ns, the
same CLOCK_MONOTONIC as the C++ side). The message count is calibrated so that a run takes about
--seconds; a figure is the median of --rounds rounds. Every workload checks its result (sequence
numbers, counters, the lines of the file) and the script exits with status 1 if anything was
lost. Output, one line per contender and workload:

  RESULT <workload> <label> <median> <p99|nan> <peak RSS KiB> <hand-offs %|nan> <n> <name>

Usage: python3 compare_python.py [--rounds R] [--seconds S] [--writers W] [--only rt8,tp64,...]
                                 [--inject-fault]   (for the tests: lose one item per workload)
"""
import argparse
import os
import resource
import struct
import sys
import tempfile
import time
import multiprocessing as mp

ctx = mp.get_context("fork")
MAGIC = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1
SENTINEL = MASK
TIMEOUT_S = 120
ERROR_BYTES = 200
# --inject-fault, for the test suite: each workload drops or corrupts one item, so that the test
# can show that the check catches it.
INJECT = False


class Lost(Exception):
    """A workload found lost, duplicated or torn data."""


def now():
    return time.monotonic_ns()


def pin(cpu):
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def run_team(name, bodies, pinned):
    """Runs body(me) in one forked process each; returns (seconds, max peak RSS KiB)."""
    n = len(bodies)
    start = ctx.Barrier(n + 1)
    ends = ctx.RawArray("q", n)
    rss = ctx.RawArray("q", n)
    errors = ctx.RawArray("c", ERROR_BYTES * n)  # why child i failed, for the parent's message

    def child(me):
        if pinned:
            pin(me)
        start.wait()
        try:
            bodies[me](me)
        except Exception as e:
            why = str(e).encode()[: ERROR_BYTES - 1]
            errors[ERROR_BYTES * me : ERROR_BYTES * me + len(why)] = why
            raise
        ends[me] = now()
        rss[me] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    procs = [ctx.Process(target=child, args=(i,), name=f"{name}-{i}") for i in range(n)]
    for p in procs:
        p.start()
    start.wait()
    t0 = now()
    deadline = time.monotonic() + TIMEOUT_S
    failure = None
    for i, p in enumerate(procs):
        p.join(max(0.0, deadline - time.monotonic()))
        if p.exitcode is None:
            failure = f"{name}: not finished after {TIMEOUT_S} s: a message was lost"
        elif p.exitcode != 0:
            why = bytes(errors[ERROR_BYTES * i : ERROR_BYTES * (i + 1)]).rstrip(b"\0").decode()
            failure = why or f"{name}: {p.name} exited with {p.exitcode}"
        if failure:
            break
    if failure:
        for p in procs:
            p.kill()
        for p in procs:
            p.join()
        raise Lost(failure)
    return (max(ends) - t0) / 1e9, max(rss)


# ---- workloads: each returns (seconds, value, p99 or nan, rss KiB, extra or nan) ----


def round_trip(kind, n):
    nan = float("nan")
    lat = ctx.RawArray("d", 2)
    if kind == "queue":
        ping, pong = ctx.Queue(), ctx.Queue()
        send_a, recv_a = ping.put, pong.get
        send_b, recv_b = pong.put, ping.get
    else:
        a, b = ctx.Pipe()
        send_a, recv_a = a.send_bytes, a.recv_bytes
        send_b, recv_b = b.send_bytes, b.recv_bytes

    def side_a(me):
        times = []
        t_prev = now()
        for i in range(n):
            send_a(struct.pack("<Q", i))
            v = struct.unpack("<Q", recv_a())[0]
            if v != i:
                raise Lost(f"round trip ({kind}): sent {i}, got back {v}")
            t = now()
            times.append(t - t_prev)
            t_prev = t
        times.sort()
        lat[0] = times[len(times) // 2]
        lat[1] = times[min(len(times) - 1, int(0.99 * (len(times) - 1)))]

    def side_b(me):
        for i in range(n):
            m = recv_b()
            if struct.unpack("<Q", m)[0] != i:
                raise Lost(f"round trip ({kind}): expected {i}")
            send_b(struct.pack("<Q", i + 1) if INJECT and i == n // 2 else m)

    secs, rss = run_team("rt8", [side_a, side_b], True)
    return secs, lat[0] / 1e3, lat[1] / 1e3, rss, nan


def check_msg(m, size):
    """Returns (seq, producer) of an intact message, or raises."""
    if len(m) != size:
        raise Lost(f"a message of {len(m)} bytes, expected {size}")
    seq, producer, f0 = struct.unpack_from("<QQQ", m, 0)
    flast, check = struct.unpack_from("<QQ", m, size - 16)
    if check != seq ^ MAGIC ^ producer or f0 != (seq + 1) & MASK or flast != (seq + 2) & MASK:
        raise Lost(f"a torn or corrupt message (producer {producer}, seq {seq})")
    return seq, producer


def stream(kind, k, size, n, pinned):
    """k producers send n messages each (and a sentinel) to k consumers."""
    nan = float("nan")
    body = bytes(size - 40)
    tally = ctx.RawArray("Q", 2 * k * k)  # [consumer][producer] count, sum
    if kind == "queue":
        q = ctx.Queue()
        send, recv = q.put, q.get
    else:
        if k != 1:
            raise ValueError("Pipe connects two processes")
        r, w = ctx.Pipe(duplex=False)
        send, recv = w.send_bytes, r.recv_bytes

    def msg(seq, producer):
        head = struct.pack("<QQQ", seq, producer, (seq + 1) & MASK)
        tail = struct.pack("<QQ", (seq + 2) & MASK, seq ^ MAGIC ^ producer)
        return head + body + tail

    def producer(me):
        for i in range(n):
            if not (INJECT and me == 0 and i == n // 2):
                send(msg(i, me))
        send(msg(SENTINEL, me))

    def consumer(me):
        c = me - k
        expect = [0] * k
        while True:
            seq, p = check_msg(recv(), size)
            if p >= k:
                raise Lost(f"a message from producer {p}")
            if seq == SENTINEL:
                break
            if (seq != expect[p]) if k == 1 else (seq < expect[p]):
                raise Lost(f"producer {p}'s message {seq} arrived where {expect[p]} was due")
            expect[p] = seq + 1
            tally[2 * (c * k + p)] += 1
            tally[2 * (c * k + p) + 1] += seq

    secs, rss = run_team(f"stream {k}x{k}", [producer] * k + [consumer] * k, pinned)
    for p in range(k):
        count = sum(tally[2 * (c * k + p)] for c in range(k))
        total = sum(tally[2 * (c * k + p) + 1] for c in range(k))
        if count != n or total != n * (n - 1) // 2:
            raise Lost(f"producer {p} sent {n} messages, the consumers got {count}: lost or duplicated")
    msgs = k * n
    value = msgs * size / secs / 1e6 if size >= 4096 else msgs / secs / 1e6
    return secs, value, nan, rss, nan


def lock_handoff(procs, n, pinned):
    nan = float("nan")
    lock = ctx.Lock()
    counter = ctx.RawValue("Q", 0)
    switches = ctx.RawValue("Q", 0)
    last = ctx.RawValue("i", -1)

    def body(me):
        for i in range(n):
            with lock:
                if not (INJECT and me == 0 and i == n // 2):
                    counter.value += 1
                if last.value != me:
                    switches.value += 1
                    last.value = me

    secs, rss = run_team(f"lock {procs}", [body] * procs, pinned)
    if counter.value != procs * n:
        raise Lost(f"lock: the counter is {counter.value}, expected {procs * n}")
    return secs, procs * n / secs / 1e6, nan, rss, 100.0 * switches.value / (procs * n)


def verify_seed_file(path, writers, n, name):
    nxt = [0] * writers
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if (len(parts) != 4 or parts[0] != b"writer" or parts[2] != b"line"
                    or not line.endswith(b"\n") or not parts[1].isdigit() or not parts[3].isdigit()):
                raise Lost(f"{name}: line {lineno} of the file is torn: {line!r}")
            w, seq = int(parts[1]), int(parts[3])
            if w >= writers or seq != nxt[w]:
                raise Lost(f"{name}: line {lineno}: writer {w}'s line {seq} out of order")
            nxt[w] += 1
    if nxt != [n] * writers:
        raise Lost(f"{name}: the file holds {nxt} lines per writer, expected {n} each")


def seed(kind, writers, n, path):
    nan = float("nan")
    if kind == "lock":
        lock = ctx.Lock()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)

        def writer(me):
            for i in range(n):
                line = b"writer %d line %09d\n" % (me, 2 if INJECT and me == 0 and i == 1 else i)
                with lock:
                    os.write(fd, line)

        try:
            secs, rss = run_team("seed lock", [writer] * writers, False)
        finally:
            os.close(fd)
    else:
        q = ctx.Queue()

        def writer(me):
            for i in range(n):
                q.put(b"writer %d line %09d\n" % (me, i))
            q.put(None)

        def sink(me):
            with open(path, "wb", buffering=64 * 1024) as f:
                ends = 0
                while ends < writers:
                    line = q.get()
                    if line is None:
                        ends += 1
                    else:
                        f.write(line)

        secs, rss = run_team("seed queue", [writer] * writers + [sink], False)
    verify_seed_file(path, writers, n, f"seed ({kind})")
    return secs, writers * n / secs / 1e6, nan, rss, nan


# ---- calibration and rounds ----


def calibrate(run, n0, n_max, target):
    n = n0
    while True:
        secs = max(run(n)[0], 1e-6)
        if secs >= target / 4 or n >= n_max:
            return max(min(int(n * target / secs), n_max), min(n0, n))
        n = min(n_max, int(n * min(max(target / secs, 2.0), 100.0)))


def median(v):
    s = sorted(v)
    return s[len(s) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.25)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--only", default="rt8,tp64,tp4k,mpmc2,mpmc4,lock2,lock4,seed")
    ap.add_argument("--inject-fault", action="store_true")
    args = ap.parse_args()
    global INJECT
    INJECT = args.inject_fault
    only = set(args.only.split(","))
    tmp = tempfile.TemporaryDirectory(prefix="mproc_compare_py.")
    path = os.path.join(tmp.name, "seed.txt")
    w = args.writers
    # (workload, label, name, run(n), first n, largest n)
    plan = [
        ("rt8", "Py_Queue", "Python mp.Queue x2", lambda n: round_trip("queue", n), 200, 200_000),
        ("rt8", "Py_Pipe", "Python mp.Pipe (send_bytes)", lambda n: round_trip("pipe", n), 200, 200_000),
        ("tp64", "Py_Queue", "Python mp.Queue", lambda n: stream("queue", 1, 64, n, True), 1000, 5_000_000),
        ("tp64", "Py_Pipe", "Python mp.Pipe (send_bytes)", lambda n: stream("pipe", 1, 64, n, True), 1000, 5_000_000),
        ("tp4k", "Py_Queue", "Python mp.Queue", lambda n: stream("queue", 1, 4096, n, True), 500, 1_000_000),
        ("tp4k", "Py_Pipe", "Python mp.Pipe (send_bytes)", lambda n: stream("pipe", 1, 4096, n, True), 500, 1_000_000),
        ("mpmc2", "Py_Queue", "Python mp.Queue", lambda n: stream("queue", 2, 64, n, False), 500, 2_000_000),
        ("mpmc4", "Py_Queue", "Python mp.Queue", lambda n: stream("queue", 4, 64, n, False), 250, 1_000_000),
        ("lock2", "Py_Lock", "Python mp.Lock", lambda n: lock_handoff(2, n, True), 1000, 5_000_000),
        ("lock4", "Py_Lock", "Python mp.Lock", lambda n: lock_handoff(4, n, False), 500, 2_000_000),
        ("seed", "Py_Queue", "Python Queue -> 1 writer", lambda n: seed("queue", w, n, path), 500, 500_000),
        ("seed", "Py_Lock", "Python Lock, each appends", lambda n: seed("lock", w, n, path), 500, 500_000),
    ]
    plan = [p for p in plan if p[0] in only]
    try:
        # Calibrate every contender, then run the rounds of each workload in turn.
        counts = [calibrate(p[3], p[4], p[5], args.seconds) for p in plan]
        samples = [[] for _ in plan]
        for _ in range(args.rounds):
            for i, p in enumerate(plan):
                samples[i].append(p[3](counts[i]))
    except Lost as e:
        print(f"compare_python.py: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        tmp.cleanup()
    for i, p in enumerate(plan):
        cols = list(zip(*samples[i]))
        value, p99, rss, extra = (median(c) for c in cols[1:])
        print(f"RESULT {p[0]} {p[1]} {value:.6g} {p99:.6g} {rss:.0f} {extra:.6g} {counts[i]} {p[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
