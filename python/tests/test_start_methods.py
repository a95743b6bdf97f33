"""Every class re-attaches by name in a spawned or forkserver child, is inherited by a forked
one, and works from concurrent.futures and plain os.fork; anonymous names are removed by their
creator. Pipe ends and a Condition over a lock of the caller's travel as descriptors (with
multiprocessing's DupFd), to children and through queues."""

import collections
import concurrent.futures
import multiprocessing as mp
import os
import pickle
import signal
import unittest

import _support
from _support import START_METHODS, run_child

import mproc


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


def make_all():
    return {
        "queue": mproc.Queue(), "joinable": mproc.JoinableQueue(), "simple": mproc.SimpleQueue(),
        "lock": mproc.Lock(), "rlock": mproc.RLock(), "sem": mproc.Semaphore(0),
        "bsem": mproc.BoundedSemaphore(1), "event": mproc.Event(), "cond": mproc.Condition(),
        "barrier": mproc.Barrier(1), "value": mproc.Value("i", 0), "array": mproc.Array("d", 3),
    }


def touch_all(objs, shm_name):
    """Uses each object once; the parent checks the effects."""
    objs["queue"].put("q")
    objs["joinable"].put("j")
    objs["simple"].put("s")
    with objs["lock"], objs["rlock"]:
        pass
    objs["sem"].release()
    objs["bsem"].acquire()
    objs["event"].set()
    with objs["cond"]:
        objs["cond"].notify_all()
    objs["barrier"].wait(30)
    objs["value"].value = 7
    objs["array"][2] = 2.5
    shm = mproc.SharedMemory(shm_name)
    shm.buf[0] = 9
    shm.close()


def square_into(q, x):
    q.put(x * x)
    return x * x


def forward(inbox):
    """Receives a queue through a queue, and answers on it."""
    reply_to = inbox.get(timeout=30)
    reply_to.put("through a queue")
    reply_to.close()


def answer_on(conn):
    """Answers one request on a Pipe end the parent sent."""
    request = conn.recv()
    conn.send(("answer", request, os.getpid()))
    conn.close()


def send_on(writer):
    """Sends on the sending end of a one-way Pipe."""
    writer.send_bytes(b"one way")
    writer.close()


def report_then_block(conn):
    """Says it is alive, then blocks in recv() until it is killed."""
    conn.send("alive")
    conn.recv()


def reply_through(inbox):
    """Gets a Pipe end through a queue, and answers on it."""
    conn = inbox.get(timeout=30)
    conn.send(("through a queue", os.getpid()))
    conn.close()


def talk_to_self(a, b):
    """Both ends of one Pipe in one child: they talk to each other."""
    a.send("across")
    assert b.recv() == "across"
    b.send_bytes(b"back")
    assert a.recv_bytes() == b"back"


def answer_on_queued_condition(inbox, flag, done):
    """Gets a lock and a Condition over it through a queue, then answers the parent on it."""
    lock, cond = inbox.get(timeout=30)
    done.put((answer_on_condition(cond, flag), cond._lock_arg is lock))


def answer_on_condition(cond, flag):
    """Sets the flag to 1 and notifies, then waits for the parent's 2: every wake a notify's
    (a wait that times out returns False), as the parent holds the lock until it waits."""
    with cond:
        flag.value = 1
        cond.notify_all()
        while flag.value != 2:
            if not cond.wait(30):
                return False
    return True


def open_fds():
    return sorted(os.listdir("/proc/self/fd"))


def descriptor_targets():
    """How many of this process's descriptors refer to each thing (a socket's inode, a file)."""
    targets = collections.Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets[os.readlink("/proc/self/fd/" + fd)] += 1
        except OSError:  # closed meanwhile: listdir's own descriptor, or another thread's
            pass
    return targets


class StartMethods(unittest.TestCase):
    def check_effects(self, objs, shm):
        self.assertEqual(objs["queue"].get(timeout=30), "q")
        self.assertEqual(objs["joinable"].get(timeout=30), "j")
        self.assertEqual(objs["simple"].get(), "s")
        self.assertEqual(objs["sem"].get_value(), 1)
        self.assertEqual(objs["bsem"].get_value(), 0)
        self.assertTrue(objs["event"].is_set())
        self.assertEqual(objs["value"].value, 7)
        self.assertEqual(objs["array"][2], 2.5)
        self.assertEqual(shm.buf[0], 9)

    def test_every_object_reaches_a_child_under_each_start_method(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                objs = make_all()
                shm = mproc.SharedMemory(create=True, size=8)
                self.assertEqual(run_child(method, touch_all, objs, shm.name), 0)
                self.check_effects(objs, shm)
                for o in objs.values():
                    o.close()
                shm.close()
                shm.unlink()

    def test_concurrent_futures_workers_get_queues_by_pickle(self):
        for method in ("fork", "spawn"):
            with self.subTest(method=method):
                q = mproc.Queue()
                ctx = mp.get_context(method)
                with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
                    results = list(pool.map(square_into, [q] * 5, range(5)))
                self.assertEqual(results, [0, 1, 4, 9, 16])
                self.assertEqual(sorted(q.get(timeout=30) for _ in range(5)), [0, 1, 4, 9, 16])
                q.close()

    def test_plain_os_fork_inherits_objects(self):
        q, lock = mproc.Queue(), mproc.Lock()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with lock:
                    q.put(("child", os.getpid()))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(q.get(timeout=30), ("child", pid))
        q.close()
        lock.close()

    def test_a_queue_travels_through_another_queue(self):
        inbox, reply = mproc.Queue(), mproc.Queue()
        kid = _support.start_child("spawn", forward, inbox)
        inbox.put(reply)
        self.assertEqual(reply.get(timeout=30), "through a queue")
        self.assertEqual(_support.join_child(kid), 0)
        inbox.close()
        reply.close()

    def test_a_pipe_end_reaches_a_child_under_each_start_method(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                mine, theirs = mproc.Pipe()
                kid = _support.start_child(method, answer_on, theirs)
                theirs.close()  # the child's copy is the last: its exit is our end of stream
                mine.send(("question", method))
                self.assertEqual(mine.recv(), ("answer", ("question", method), kid.pid))
                self.assertEqual(_support.join_child(kid), 0)
                with self.assertRaises(EOFError):
                    mine.recv()
                mine.close()

    def test_a_one_way_pipe_end_reaches_a_child_under_each_start_method(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                reader, writer = mproc.Pipe(duplex=False)
                kid = _support.start_child(method, send_on, writer)
                writer.close()
                self.assertEqual(reader.recv_bytes(), b"one way")
                self.assertEqual(_support.join_child(kid), 0)
                with self.assertRaises(EOFError):
                    reader.recv_bytes()
                reader.close()

    def test_a_pipe_end_in_a_killed_spawned_child_gives_end_of_stream(self):
        for method in ("spawn", "forkserver"):
            with self.subTest(method=method):
                mine, theirs = mproc.Pipe()
                kid = _support.start_child(method, report_then_block, theirs)
                theirs.close()
                self.assertEqual(mine.recv(), "alive")
                os.kill(kid.pid, signal.SIGKILL)
                self.assertEqual(_support.join_child(kid), -signal.SIGKILL)
                with self.assertRaises(EOFError):
                    mine.recv()
                mine.close()

    def test_a_pipe_end_travels_through_a_queue(self):
        inbox = mproc.Queue()
        kid = _support.start_child("spawn", reply_through, inbox)
        mine, theirs = mproc.Pipe()
        inbox.put(theirs)
        theirs.close()
        self.assertEqual(mine.recv(), ("through a queue", kid.pid))
        self.assertEqual(_support.join_child(kid), 0)
        with self.assertRaises(EOFError):
            mine.recv()
        mine.close()
        inbox.close()

    def test_both_ends_of_one_pipe_reach_one_child_under_each_start_method(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                a, b = mproc.Pipe()  # one memory, sent once, taken by both ends
                self.assertEqual(_support.run_child(method, talk_to_self, a, b), 0)
                a.send("still mine")
                self.assertEqual(b.recv(), "still mine")
                a.close()
                b.close()

    def test_a_condition_over_a_lock_travels_through_a_queue(self):
        inbox, done = mproc.Queue(), mproc.Queue()
        lock = mproc.RLock()
        cond, flag = mproc.Condition(lock), mproc.Value("i", 0)
        with cond:  # until the wait below, the child cannot take the lock
            kid = _support.start_child("spawn", answer_on_queued_condition, inbox, flag, done)
            inbox.put((lock, cond))
            while flag.value != 1:
                self.assertTrue(cond.wait(30), "the child's notify did not arrive")
            flag.value = 2
            cond.notify_all()
        self.assertEqual(done.get(timeout=30), (True, True))
        self.assertEqual(_support.join_child(kid), 0)
        for o in (inbox, done, cond, lock, flag):
            o.close()

    def test_a_connection_in_a_put_that_fails_stays_offered_nowhere(self):
        q = mproc.Queue(maxsize=1)
        q.put("the one slot")
        a, b = mproc.Pipe()
        b.send("warm up")  # the resource sharer's listener, started once, is not a leak
        self.assertEqual(a.recv(), "warm up")
        pickle.loads(pickle.dumps(b)).close()
        # Counted by what they refer to: the sharer's thread may still be closing the warm-up's
        # connection, and a collection may close an earlier test's descriptors meanwhile.
        before = descriptor_targets()
        for _ in range(5):
            with self.assertRaises(mproc.Full):
                q.put_nowait(b)
            with self.assertRaises(mproc.Full):
                q.put(("in a tuple", b), timeout=0.01)
            with self.assertRaises(mproc.Full):
                q.put_many([b, ("in a batch", b)], block=False)
            unpicklable = (b, lambda: 0)  # b is pickled (offered), then pickling fails
            with self.assertRaises((pickle.PicklingError, AttributeError)):
                q.put(unpicklable)
            with self.assertRaises((pickle.PicklingError, AttributeError)):
                q.put_many([b, unpicklable])
            with self.assertRaises((pickle.PicklingError, AttributeError)):
                a.send(unpicklable)
        after = descriptor_targets()
        copies = {t: after[t] - n for t, n in before.items() if after[t] > n}
        self.assertEqual(copies, {}, "a failed put left copies of the Pipe end open")
        b.close()
        with self.assertRaises(EOFError):  # no copy of b's socket keeps the stream open
            a.recv()
        a.close()
        q.close()

    def answer_once(self, method):
        mine, theirs = mproc.Pipe()
        kid = _support.start_child(method, answer_on, theirs)
        theirs.close()
        mine.send("question")
        self.assertEqual(mine.recv()[0], "answer")
        self.assertEqual(_support.join_child(kid), 0)
        mine.close()

    def test_sending_pipe_ends_leaves_no_descriptor_open_here(self):
        for method in ("spawn", "forkserver"):
            with self.subTest(method=method):
                # The first child of a method may start multiprocessing's helpers (the forkserver,
                # the resource tracker), which keep descriptors of their own.
                self.answer_once(method)
                before = open_fds()
                for _ in range(3):
                    self.answer_once(method)
                self.assertEqual(open_fds(), before)

    def test_the_creator_removes_an_anonymous_name_on_close_even_with_messages(self):
        q = mproc.Queue()
        q.put("unread")
        path = "/dev/shm/mproc." + q.name
        self.assertTrue(os.path.exists(path))
        q.close()
        self.assertFalse(os.path.exists(path))

    def test_garbage_collection_removes_an_anonymous_name(self):
        e = mproc.Event()
        path = "/dev/shm/mproc." + e.name
        self.assertTrue(os.path.exists(path))
        del e
        self.assertFalse(os.path.exists(path))

    def test_named_objects_keep_the_cpp_lifetime_rules(self):
        name = _support.name("named")
        q = mproc.Queue.create(name)
        q.put("kept for a later reader")
        q.close()  # tracked, but holding a message: it stays (docs/design/named.md)
        again = mproc.Queue.open(name)
        self.assertEqual(again.get(timeout=5), "kept for a later reader")
        again.close()  # drained, last user: removed
        self.assertFalse(os.path.exists("/dev/shm/mproc." + name))

    def test_pickled_objects_name_their_segment(self):
        lock = mproc.Lock()
        copy = pickle.loads(pickle.dumps(lock))
        self.assertEqual(copy.name, lock.name)
        self.assertIsInstance(copy, mproc.Lock)
        lock.close()


if __name__ == "__main__":
    unittest.main()
