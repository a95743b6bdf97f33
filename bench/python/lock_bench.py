#!/usr/bin/env python3
"""mproc.Lock against multiprocessing.Lock, in the same run (median of --repeat):
  uncontended   acquire + release pairs per second in one process
  with lock:    the same through the with statement
  hand-off      two processes each take the lock N times around a shared counter
                (increments per second; the counter is checked, so no increment is lost)

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/lock_bench.py
"""

import argparse
import multiprocessing as mp
import statistics
import time

import mproc

CTX = mp.get_context("fork")
CONTENDERS = {"mproc.Lock": mproc.Lock, "mp.Lock": CTX.Lock}


def uncontended(make, n):
    lock = make()
    t0 = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return n / (time.perf_counter() - t0)


def with_lock(make, n):
    lock = make()
    t0 = time.perf_counter()
    for _ in range(n):
        with lock:
            pass
    return n / (time.perf_counter() - t0)


def worker(lock, counter, n, go):
    go.wait()
    view = counter.get_obj()
    for _ in range(n):
        lock.acquire()
        view[0] += 1
        lock.release()


def hand_off(make, n):
    lock, counter, go = make(), mproc.Array("q", 1, lock=False), CTX.Event()
    procs = [CTX.Process(target=worker, args=(lock, counter, n, go)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # benchmark only: let both reach go.wait()
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    assert counter[0] == 2 * n, counter[0]
    return 2 * n / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n", type=int, default=200000)
    args = parser.parse_args()
    print(f"# median of {args.repeat}; hand-off: 2 processes x {args.n} acquisitions")
    print("| workload | mproc.Lock | mp.Lock | mproc vs mp (range) |")
    print("|---|---|---|---|")
    for label, fn in (("uncontended", uncontended), ("with lock:", with_lock),
                      ("hand-off", hand_off)):
        # Each round measures both, so that a swing in the machine's load hits both; the ratio
        # is the median of the rounds' own ratios (their range in parentheses).
        values = {name: [] for name in CONTENDERS}
        ratios = []
        for _ in range(args.repeat):
            for name, make in CONTENDERS.items():
                values[name].append(fn(make, args.n))
            ratios.append(values["mproc.Lock"][-1] / values["mp.Lock"][-1])
        ours, theirs = (statistics.median(values[n]) for n in ("mproc.Lock", "mp.Lock"))
        print(f"| {label} | {ours / 1e6:.2f} M/s | {theirs / 1e6:.2f} M/s | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
