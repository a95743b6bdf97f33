#!/usr/bin/env python3
"""The seed's last lesson: prefer messages to shared data and locks. Two producers put jobs
into one mproc.Queue, three consumers take them; no lock in sight, and every job is done once.
The same code with multiprocessing.Queue, for the time it takes."""

import multiprocessing as mp
import time

import mproc

JOBS = 20000


def producer(q, first, n):
    for i in range(first, first + n):
        q.put(("job", i))


def consumer(q, results):
    done = 0
    while q.get() is not None:
        done += 1
    results.put(done)


def run(make_queue, label):
    q, results = make_queue(), mp.SimpleQueue()
    producers = [mp.Process(target=producer, args=(q, k * JOBS // 2, JOBS // 2)) for k in range(2)]
    consumers = [mp.Process(target=consumer, args=(q, results)) for _ in range(3)]
    start = time.perf_counter()
    for p in producers + consumers:
        p.start()
    for p in producers:
        p.join()
    for _ in consumers:
        q.put(None)
    done = sum(results.get() for _ in consumers)
    for c in consumers:
        c.join()
    elapsed = time.perf_counter() - start
    print(f"  {label:>22}: {done} jobs by 3 consumers in {elapsed * 1000:.0f} ms")
    q.close()


if __name__ == "__main__":
    run(mproc.Queue, "mproc.Queue")
    run(mp.Queue, "multiprocessing.Queue")
