#!/usr/bin/env python3
"""The seed's second lesson: ten buyers, three tickets in a JSON file. Reading, deciding and
writing back must happen under one lock, or several buyers see the same last ticket. The lock
is an mproc.Lock: it lives in shared memory, and a buyer killed while holding it would not
block the others (the next one is told, through OwnerDied)."""

import json
import multiprocessing as mp
import os
import tempfile

import mproc


def buy(path, lock, who):
    with lock:
        with open(path) as f:
            left = json.load(f)["tickets"]
        if left > 0:
            with open(path, "w") as f:
                json.dump({"tickets": left - 1}, f)
            print(f"  buyer {who} got a ticket ({left - 1} left)", flush=True)
        else:
            print(f"  buyer {who}: sold out", flush=True)


if __name__ == "__main__":
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"tickets": 3}, f)
    lock = mproc.Lock()
    buyers = [mp.Process(target=buy, args=(path, lock, n)) for n in range(10)]
    for b in buyers:
        b.start()
    for b in buyers:
        b.join()
    with open(path) as f:
        print(f"  tickets left in the file: {json.load(f)['tickets']} (never below 0)")
    os.unlink(path)
    lock.close()
