"""mproc: Python's multiprocessing primitives on crash-safe shared memory.

A drop-in for the objects of :mod:`multiprocessing` -- ``Queue``, ``JoinableQueue``,
``SimpleQueue``, ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Event``,
``Condition``, ``Barrier``, ``Pipe``, ``Value``, ``Array``, ``SharedMemory`` -- that live in
shared memory instead of pipes and POSIX semaphores, work with ``multiprocessing.Process``
under every start method, and talk to C++ programs through the same named objects::

    import multiprocessing as mp
    import mproc

    def worker(q, lock):
        with lock:
            q.put(("done", mp.current_process().name))

    if __name__ == "__main__":
        q, lock = mproc.Queue(), mproc.Lock()
        p = mp.Process(target=worker, args=(q, lock))
        p.start()
        print(q.get(timeout=10))
        p.join()

What differs from multiprocessing, and why: docs/python.md.
"""

from multiprocessing import (Process, active_children, cpu_count, current_process,
                             get_context, parent_process, set_start_method)
from queue import Empty, Full
from threading import BrokenBarrierError

from ._mproc import OwnerDied, ShutDown, UsageError
from ._objects import (DEFAULT_CAPACITY, Barrier, BoundedSemaphore, Condition, Connection,
                       Event, JoinableQueue, Lock, Pipe, Queue, RLock, Semaphore, SimpleQueue,
                       wait)
from ._shared import Array, SharedMemory, Value

__all__ = [
    "Array", "Barrier", "BoundedSemaphore", "BrokenBarrierError", "Condition", "Connection",
    "DEFAULT_CAPACITY", "Empty", "Event", "Full", "JoinableQueue", "Lock", "OwnerDied", "Pipe",
    "Process", "Queue", "RLock", "Semaphore", "SharedMemory", "ShutDown", "SimpleQueue",
    "UsageError", "Value", "active_children", "cpu_count", "current_process", "get_context",
    "parent_process", "set_start_method", "wait",
]
