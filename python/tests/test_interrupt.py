"""Ctrl-C in a blocked call: SIGINT raises KeyboardInterrupt in a get (and in the other
blocking waits) within a fraction of a second, because the GIL is released and the wait runs
in slices that handle pending signals."""

import os
import signal
import threading
import unittest

import _support

import mproc


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


class Interrupt(unittest.TestCase):
    def interrupted(self, blocking_call):
        """Sends SIGINT from another thread once the main thread is (about to be) blocked;
        returns whether blocking_call ended in KeyboardInterrupt. The thread needs the GIL to
        send it, which the main thread gives up when it blocks in the call (or at the
        interpreter's switch interval, before: then the interpreter raises it, as for any
        Python code; either way a call that ignored signals would hang and fail the test)."""
        started = threading.Event()

        def fire():
            started.wait(30)
            os.kill(os.getpid(), signal.SIGINT)

        t = threading.Thread(target=fire)
        t.start()
        try:
            started.set()
            blocking_call()
        except KeyboardInterrupt:
            return True
        finally:
            t.join(30)
        return False

    def test_a_blocked_get_raises_keyboard_interrupt(self):
        q = mproc.Queue()
        self.assertTrue(self.interrupted(q.get))
        q.put("still usable")
        self.assertEqual(q.get(), "still usable")
        q.close()

    def test_a_blocked_put_join_acquire_wait_raise_keyboard_interrupt(self):
        full = mproc.Queue(1)
        full.put(0)
        jq = mproc.JoinableQueue()
        jq.put(1)
        sem = mproc.Semaphore(0)
        ev = mproc.Event()
        cond = mproc.Condition()
        calls = {"put": lambda: full.put(1), "join": jq.join, "acquire": sem.acquire,
                 "wait": ev.wait}
        for label, call in calls.items():
            with self.subTest(call=label):
                self.assertTrue(self.interrupted(call))

        def wait_on_condition():
            with cond:
                cond.wait()
        self.assertTrue(self.interrupted(wait_on_condition))
        a, b = mproc.Pipe()
        self.assertTrue(self.interrupted(b.recv))
        for o in (full, jq, sem, ev, cond):
            o.close()


if __name__ == "__main__":
    unittest.main()
