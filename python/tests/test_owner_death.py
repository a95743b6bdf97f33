"""A lock whose holder is SIGKILLed is not locked forever (multiprocessing's is): the next
acquirer gets it and is told, through OwnerDied, until someone marks it consistent."""

import os
import signal
import unittest

import _support
from _support import START_METHODS, run_child

import mproc


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


def die_holding(lock):
    lock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def die_holding_value_lock(value):
    value.get_lock().acquire()
    value.get_obj()[0] = 13  # half-way through an update
    os.kill(os.getpid(), signal.SIGKILL)


class OwnerDeath(unittest.TestCase):
    def test_the_next_acquire_reports_the_death_with_the_lock_held(self):
        for method in START_METHODS:
            for make in (mproc.Lock, mproc.RLock):
                with self.subTest(method=method, lock=make.__name__):
                    lock = make()
                    self.assertEqual(run_child(method, die_holding, lock), -signal.SIGKILL)
                    with self.assertRaises(mproc.OwnerDied) as cm:
                        lock.acquire(timeout=30)
                    self.assertTrue(cm.exception.held)
                    self.assertTrue(lock._is_mine())
                    lock.mark_consistent()
                    lock.release()
                    self.assertTrue(lock.acquire(timeout=30))  # consistent again: no report
                    lock.release()
                    lock.close()

    def test_until_marked_consistent_every_acquirer_is_told(self):
        lock = mproc.Lock()
        self.assertEqual(run_child("fork", die_holding, lock), -signal.SIGKILL)
        for _ in range(2):
            with self.assertRaises(mproc.OwnerDied):
                lock.acquire()
            lock.release()  # released without repair: still inconsistent
        with self.assertRaises(mproc.OwnerDied):
            lock.acquire()
        lock.mark_consistent()
        lock.release()
        lock.close()

    def test_with_releases_the_lock_again_before_raising(self):
        lock = mproc.Lock()
        self.assertEqual(run_child("fork", die_holding, lock), -signal.SIGKILL)
        with self.assertRaises(mproc.OwnerDied) as cm:
            with lock:
                self.fail("the body must not run on torn state")
        self.assertFalse(cm.exception.held)
        self.assertFalse(lock._is_mine())
        try:
            lock.acquire()
        except mproc.OwnerDied:  # recovery: repair, then mark consistent
            lock.mark_consistent()
        lock.release()
        with lock:
            pass
        lock.close()

    def test_a_value_whose_lock_holder_died_says_so(self):
        v = mproc.Value("i", 0)
        self.assertEqual(run_child("spawn", die_holding_value_lock, v), -signal.SIGKILL)
        with self.assertRaises(mproc.OwnerDied):
            v.value
        with self.assertRaises(mproc.OwnerDied):
            v.get_lock().acquire()
        self.assertEqual(v.get_obj()[0], 13)  # repair
        v.get_obj()[0] = 0
        v.get_lock().mark_consistent()
        v.get_lock().release()
        self.assertEqual(v.value, 0)
        v.close()

    def test_a_named_lock_reports_to_another_opener(self):
        name = _support.name("lock")
        lock = mproc.Lock.create(name)
        self.assertEqual(run_child("spawn", die_holding, lock), -signal.SIGKILL)
        other = mproc.Lock.open(name)
        with self.assertRaises(mproc.OwnerDied):
            other.acquire()
        other.mark_consistent()
        other.release()
        del lock, other


if __name__ == "__main__":
    unittest.main()
