#!/usr/bin/env python3
"""The seed's first lesson: processes share the terminal, so their lines interleave. Three
processes each print three numbered lines; with one mproc.Lock around each process's lines,
they come out whole."""

import multiprocessing as mp
import sys
import time

import mproc


def count(name, lock):
    if lock is not None:
        lock.acquire()
    try:
        for i in range(1, 4):
            print(f"  {name}: {i}", flush=True)
            time.sleep(0.01)  # a slow printer: the place where another process cuts in
    finally:
        if lock is not None:
            lock.release()


def run(lock):
    procs = [mp.Process(target=count, args=(f"process {n}", lock)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


if __name__ == "__main__":
    mp.set_start_method(sys.argv[1] if len(sys.argv) > 1 else "spawn")
    print("without a lock (lines interleave):")
    run(None)
    print("with mproc.Lock (each process's lines together):")
    lock = mproc.Lock()
    run(lock)
    lock.close()
