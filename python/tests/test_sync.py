"""Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier: their contracts in
one process, and counted work across processes under every start method."""

import threading
import unittest

import _support
from _support import START_METHODS, join_child, start_child

import mproc


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


def add_under_lock(lock, counter, n):
    for _ in range(n):
        with lock:
            # A read-modify-write in two steps: without mutual exclusion increments are lost.
            v = counter.get_obj()[0]
            counter.get_obj()[0] = v + 1


def take_and_give(sem, inside, most, n):
    for _ in range(n):
        with sem:
            with most.get_lock():
                most.value += 1
                inside.value = max(inside.value, most.value)
            with most.get_lock():
                most.value -= 1


def set_event_after(wait_for, to_set):
    wait_for.wait(30)
    to_set.set()


def wait_condition(cond, flag, done):
    with cond:
        ok = cond.wait_for(lambda: flag.value == 1, timeout=30)
    done.put(ok)


def wait_on_a_condition_over(cond, lock, flag, done):
    """Over the parent's lock: sets the flag to 1 and notifies, then waits for the parent's 2
    (a wait that times out returns False: every wake must be a notify's); reports that, and
    whether the condition's lock arrived as the same object as the lock argument."""
    ok = True
    with cond:
        flag.value = 1
        cond.notify_all()
        while ok and flag.value != 2:
            ok = cond.wait(30)
    done.put((ok, cond._lock_arg is lock))


def barrier_party(barrier, out):
    out.put(barrier.wait(30))


class LockContract(unittest.TestCase):
    def test_acquire_release_and_timeouts(self):
        lock = mproc.Lock()
        self.assertTrue(lock.acquire())
        other = []
        t = threading.Thread(target=lambda: other.append(lock.acquire(timeout=0.05)))
        t.start()
        t.join(30)
        self.assertEqual(other, [False])
        lock.release()
        self.assertTrue(lock.acquire(block=False))
        lock.release()
        lock.close()

    def test_releasing_an_unheld_lock_is_a_usage_error(self):
        lock = mproc.Lock()
        with self.assertRaises(mproc.UsageError):
            lock.release()
        with self.assertRaises(ValueError):  # UsageError is a ValueError, as Python raises
            lock.release()
        lock.close()

    def test_acquiring_a_held_lock_again_from_its_thread_is_an_error_not_a_deadlock(self):
        lock = mproc.Lock()
        with lock:
            with self.assertRaises(mproc.UsageError):
                lock.acquire()
        lock.close()

    def test_rlock_is_recursive_and_owned(self):
        rlock = mproc.RLock()
        with rlock:
            with rlock:
                self.assertTrue(rlock._is_mine())
        self.assertFalse(rlock._is_mine())
        with self.assertRaises(mproc.UsageError):
            rlock.release()
        rlock.close()

    def test_locks_keep_counts_exact_across_processes(self):
        for method in START_METHODS:
            for make in (mproc.Lock, mproc.RLock):
                with self.subTest(method=method, lock=make.__name__):
                    lock, counter = make(), mproc.Array("i", 1, lock=False)
                    kids = [start_child(method, add_under_lock, lock, counter, 300) for _ in range(3)]
                    for k in kids:
                        self.assertEqual(join_child(k), 0)
                    self.assertEqual(counter[0], 900)
                    lock.close()
                    counter.close()


class SemaphoreContract(unittest.TestCase):
    def test_counts_and_bounds(self):
        s = mproc.Semaphore(2)
        self.assertTrue(s.acquire())
        self.assertTrue(s.acquire())
        self.assertFalse(s.acquire(timeout=0.05))
        self.assertFalse(s.acquire(False))
        self.assertEqual(s.get_value(), 0)
        s.release()
        s.release()
        s.release()  # unbounded: raises the count
        self.assertEqual(s.get_value(), 3)
        b = mproc.BoundedSemaphore(1)
        b.acquire()
        b.release()
        with self.assertRaises(ValueError):
            b.release()
        s.close()
        b.close()

    def test_a_semaphore_bounds_how_many_processes_are_inside(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                sem = mproc.BoundedSemaphore(2)
                peak, now = mproc.Value("i", 0), mproc.Value("i", 0)
                kids = [start_child(method, take_and_give, sem, peak, now, 100) for _ in range(4)]
                for k in kids:
                    self.assertEqual(join_child(k), 0)
                self.assertLessEqual(peak.value, 2)
                self.assertGreaterEqual(peak.value, 1)
                for o in (sem, peak, now):
                    o.close()


class EventConditionBarrier(unittest.TestCase):
    def test_event_set_clear_wait(self):
        e = mproc.Event()
        self.assertFalse(e.is_set())
        self.assertFalse(e.wait(0.01))
        e.set()
        self.assertTrue(e.wait())
        e.clear()
        self.assertFalse(e.is_set())
        e.close()

    def test_events_signal_across_processes(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                ping, pong = mproc.Event(), mproc.Event()
                kid = start_child(method, set_event_after, ping, pong)
                ping.set()
                self.assertTrue(pong.wait(30))
                self.assertEqual(join_child(kid), 0)
                ping.close()
                pong.close()

    def test_condition_needs_its_lock_and_times_out(self):
        c = mproc.Condition()
        with self.assertRaises(mproc.UsageError):
            c.wait(0.01)
        with self.assertRaises(mproc.UsageError):
            c.notify()
        with c:
            self.assertFalse(c.wait(0.01))
            self.assertEqual(c.wait_for(lambda: 7), 7)
            self.assertFalse(c.wait_for(lambda: False, timeout=0.01))
        c.close()

    def test_condition_wakes_a_waiter_in_another_process(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                cond, flag, done = mproc.Condition(), mproc.Value("i", 0), mproc.Queue()
                kid = start_child(method, wait_condition, cond, flag, done)
                with cond:
                    flag.value = 1
                    cond.notify_all()
                self.assertTrue(done.get(timeout=30))
                self.assertEqual(join_child(kid), 0)
                cond.close()
                flag.close()
                done.close()

    def test_a_condition_over_a_lock_of_ones_own_reaches_a_child_under_each_start_method(self):
        for method in START_METHODS:
            for lock_type in (mproc.Lock, mproc.RLock):
                with self.subTest(method=method, lock=lock_type.__name__):
                    lock = lock_type()
                    cond, flag, done = mproc.Condition(lock), mproc.Value("i", 0), mproc.Queue()
                    with lock:  # the condition's lock: the child takes it once this waits
                        kid = start_child(method, wait_on_a_condition_over, cond, lock, flag, done)
                        while flag.value != 1:
                            self.assertTrue(cond.wait(30), "the child's notify did not arrive")
                        flag.value = 2
                        cond.notify_all()
                    self.assertEqual(done.get(timeout=30), (True, True))
                    self.assertEqual(join_child(kid), 0)
                    for o in (cond, lock, flag, done):
                        o.close()

    def test_barrier_releases_all_parties_with_distinct_indices(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                b, out = mproc.Barrier(3), mproc.Queue()
                kids = [start_child(method, barrier_party, b, out) for _ in range(2)]
                mine = b.wait(30)
                got = sorted([mine] + [out.get(timeout=30) for _ in kids])
                self.assertEqual(got, [0, 1, 2])
                for k in kids:
                    self.assertEqual(join_child(k), 0)
                b.close()
                out.close()

    def test_a_barrier_timeout_breaks_it_until_reset(self):
        b = mproc.Barrier(2)
        with self.assertRaises(mproc.BrokenBarrierError):
            b.wait(0.05)
        self.assertTrue(b.broken)
        with self.assertRaises(threading.BrokenBarrierError):
            b.wait(0.05)
        b.reset()
        self.assertFalse(b.broken)
        self.assertEqual(b.parties, 2)
        b.close()

    def test_a_barrier_action_runs_once_and_its_exception_breaks_the_barrier(self):
        calls = []
        b = mproc.Barrier(1, action=lambda: calls.append(1))
        self.assertEqual(b.wait(), 0)
        self.assertEqual(calls, [1])

        def boom():
            raise KeyError("boom")
        bad = mproc.Barrier(1, action=boom)
        with self.assertRaises(KeyError):
            bad.wait()
        self.assertTrue(bad.broken)
        b.close()
        bad.close()


if __name__ == "__main__":
    unittest.main()
