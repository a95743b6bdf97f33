"""Shared by the Python tests: names under the run's prefix, a watchdog, child processes with
timeouts, and the check that a test module left nothing in /dev/shm.

Import it before mproc: it points the names of anonymous objects (MPROC_PYTHON_PREFIX) under
this module's prefix, so that the leftover check sees them too.
"""

import faulthandler
import itertools
import multiprocessing as mp
import os
import sys

_BASE = os.environ.get("MPROC_TEST_PREFIX") or f"py{os.getpid()}-"
PREFIX = _BASE + os.path.splitext(os.path.basename(sys.argv[-1]))[0].replace("_", "")[:12] + "-"
if "MPROC_PYTHON_PREFIX" not in os.environ or not os.environ["MPROC_PYTHON_PREFIX"].startswith(_BASE):
    os.environ["MPROC_PYTHON_PREFIX"] = PREFIX + "anon-"

START_METHODS = ("fork", "spawn", "forkserver")
JOIN_TIMEOUT = 60  # seconds a child may take before a test fails (a deadlock, not slowness)
WATCHDOG = 110     # seconds before a whole test module dumps its stacks and exits

_names = itertools.count()


def name(what="obj"):
    """A fresh name for a named object, under this run's prefix."""
    return f"{PREFIX}{what}-{os.getpid()}-{next(_names)}"


def start_watchdog():
    """A deadlock fails the module with every thread's stack instead of hanging CI."""
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)


def run_child(method, target, *args, timeout=JOIN_TIMEOUT):
    """Runs target(*args) in a child started with `method`; returns its exit code (killing it
    if it outlives `timeout`)."""
    p = start_child(method, target, *args)
    return join_child(p, timeout)


def start_child(method, target, *args):
    p = mp.get_context(method).Process(target=target, args=args)
    p.start()
    return p


def join_child(p, timeout=JOIN_TIMEOUT):
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        raise AssertionError(f"child {p.pid} still running after {timeout} s: killed")
    return p.exitcode


def leftovers():
    """This module's objects still in /dev/shm."""
    return sorted(f for f in os.listdir("/dev/shm")
                  if f.startswith("mproc." + PREFIX) or
                  (f.startswith(".mproc-rm.") and PREFIX in f))
