#!/usr/bin/env python3
"""mproc.Queue against multiprocessing.Queue, SimpleQueue and Pipe, in the same run.

Workloads (each in a fresh runner process, so peak RSS is per contender; median of --repeat):
  small 1->1   one producer, one consumer: (int, short str) tuples (also with mproc's
               put_many/get_many, 64 at a time)
  small 4->4   four producers, four consumers (Pipe: not shareable that way, skipped)
  1 MiB 1->1   bytes payloads
  numpy 1->1   1 MiB float64 arrays (only if numpy is installed)
  round trip   parent and child ping-pong one small object (latency, not throughput)
Throughput counts messages from the moment every process is ready (an Event) until the last
consumer took its last message (CLOCK_MONOTONIC, shared by the processes). Each round runs
every contender once; the last column is the median of the rounds' mproc/mp.Queue ratios
(their range in parentheses).

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/queue_bench.py
"""

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time

import mproc

try:
    import numpy
except ImportError:
    numpy = None

CTX = mp.get_context("fork")
SMALL = (12345, "hello world")
MIB = 1 << 20


class PipeQueue:
    """A one-to-one Pipe with the queue interface (the fastest thing multiprocessing has)."""

    def __init__(self):
        self.r, self.w = CTX.Pipe(duplex=False)

    def put(self, obj):
        self.w.send(obj)

    def get(self):
        return self.r.recv()


class Batched:
    """mproc.Queue through put_many/get_many, 64 at a time (small objects 1->1 only)."""

    BATCH = 64

    def __init__(self):
        self.q = mproc.Queue(capacity=16 * MIB)


CONTENDERS = {
    "mproc.Queue": lambda: mproc.Queue(capacity=16 * MIB),
    "mproc batches of 64": Batched,
    "mp.Queue": lambda: CTX.Queue(),
    "mp.SimpleQueue": lambda: CTX.SimpleQueue(),
    "mp.Pipe": PipeQueue,
}


def producer(q, n, item, go, consumers_share):
    go.wait()
    if isinstance(q, Batched):
        batch = [item] * Batched.BATCH
        for _ in range(n // Batched.BATCH):
            q.q.put_many(batch)
        q.q.put_many([item] * (n % Batched.BATCH) + [None] * consumers_share)
        return
    for _ in range(n):
        q.put(item)
    for _ in range(consumers_share):
        q.put(None)


def consumer(q, results):
    count = 0
    if isinstance(q, Batched):
        while True:
            got = q.q.get_many(Batched.BATCH)
            if None in got:  # one producer, one consumer: the sentinel comes last
                count += got.index(None)
                break
            count += len(got)
        results.put((count, time.monotonic()))
        return
    while q.get() is not None:
        count += 1
    results.put((count, time.monotonic()))


def throughput(make, n, item, pairs):
    q = make()
    go, results = CTX.Event(), CTX.SimpleQueue()
    procs = [CTX.Process(target=producer, args=(q, n // pairs, item, go, 1)) for _ in range(pairs)]
    procs += [CTX.Process(target=consumer, args=(q, results)) for _ in range(pairs)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # benchmark only: let every process reach go.wait()
    t0 = time.monotonic()
    go.set()
    got = [results.get() for _ in range(pairs)]
    for p in procs:
        p.join()
    total = sum(c for c, _ in got)
    assert total == (n // pairs) * pairs, (total, n)
    return total / (max(t for _, t in got) - t0)


def echo(a, b, n):
    for _ in range(n):
        b.put(a.get())


def round_trip(make, n):
    a, b = make(), make()
    p = CTX.Process(target=echo, args=(a, b, n))
    p.start()
    a.put(SMALL)
    b.get()  # warm up: the child is running
    t0 = time.perf_counter()
    for _ in range(n - 1):
        a.put(SMALL)
        b.get()
    elapsed = time.perf_counter() - t0
    p.join()
    return elapsed / (n - 1) * 1e6


def peak_rss_mib():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def run_one(workload, contender, scale, out):
    make = CONTENDERS[contender]
    if workload == "round trip":
        value = round_trip(make, int(20000 * scale))
    else:
        n, item, pairs = WORKLOADS[workload](scale)
        value = throughput(make, n, item, pairs)
    out.put((value, peak_rss_mib()))


WORKLOADS = {
    "small 1->1": lambda s: (int(200000 * s), SMALL, 1),
    "small 4->4": lambda s: (int(200000 * s), SMALL, 4),
    "1 MiB 1->1": lambda s: (int(1000 * s), b"x" * MIB, 1),
}
if numpy is not None:
    WORKLOADS["numpy 1->1"] = lambda s: (int(1000 * s), numpy.ones(MIB // 8), 1)


def measure_once(workload, contender, scale):
    out = CTX.SimpleQueue()
    runner = CTX.Process(target=run_one, args=(workload, contender, scale, out))
    runner.start()
    v, r = out.get()
    runner.join()
    return v, r


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--workload", action="append", help="run only these (repeatable)")
    args = parser.parse_args()
    print(f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, median of {args.repeat}")
    workloads = [w for w in list(WORKLOADS) + ["round trip"]
                 if not args.workload or w in args.workload]
    print(f"| workload | {' | '.join(CONTENDERS)} | mproc vs mp.Queue (range) |")
    print("|---" * (len(CONTENDERS) + 2) + "|")
    for workload in workloads:
        contenders = [c for c in CONTENDERS
                      if not (workload == "small 4->4" and c == "mp.Pipe")
                      and not (c.startswith("mproc batches") and workload != "small 1->1")]
        # Every round runs every contender once, so that a swing in the machine's load hits
        # all of them; the ratio is the median of the rounds' own ratios.
        values = {c: [] for c in contenders}
        rss = {c: 0.0 for c in contenders}
        ratios = []
        for _ in range(args.repeat):
            for contender in contenders:
                v, r = measure_once(workload, contender, args.scale)
                values[contender].append(v)
                rss[contender] = max(rss[contender], r)
            ours, base = values["mproc.Queue"][-1], values["mp.Queue"][-1]
            ratios.append(base / ours if workload == "round trip" else ours / base)
        cells = []
        for contender in CONTENDERS:
            if contender not in values:
                cells.append("n/a")
                continue
            value, peak = statistics.median(values[contender]), rss[contender]
            if workload == "round trip":
                cells.append(f"{value:.1f} µs ({peak:.0f} MiB)")
            elif workload.startswith("small"):
                cells.append(f"{value / 1e3:.0f} k/s ({peak:.0f} MiB)")
            else:
                cells.append(f"{value:.0f}/s = {value * MIB / 1e9:.2f} GB/s ({peak:.0f} MiB)")
        label = "lower" if workload == "round trip" else "faster"
        spread = f"{min(ratios):.1f}–{max(ratios):.1f}"
        print(f"| {workload} | {' | '.join(cells)} | {statistics.median(ratios):.1f}x {label} "
              f"({spread}) |", flush=True)


if __name__ == "__main__":
    main()
