"""mproc.Queue, JoinableQueue and SimpleQueue: the multiprocessing contract, the extras
(put_many/get_many, capacity, shutdown), and objects of every kind across real processes."""

import errno
import os
import pickle
import queue
import unittest

import _support
from _support import START_METHODS, join_child, run_child, start_child

import mproc

try:
    import numpy
except ImportError:
    numpy = None


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


class Blob:
    """An object that pickles its payload out of band (protocol 5), as numpy arrays do."""

    def __init__(self, data):
        self.data = data

    def __reduce_ex__(self, protocol):
        if protocol >= 5:
            return (Blob, (pickle.PickleBuffer(self.data),))
        return (Blob, (bytes(self.data),))


def produce(q, n, tag):
    for i in range(n):
        q.put((tag, i, "x" * (i % 7)))


def consume_all(q, n, out):
    got = [q.get(timeout=30) for _ in range(n)]
    out.put(got)


def joinable_worker(q, n):
    for _ in range(n):
        q.get(timeout=30)
        q.task_done()


class QueueBasics(unittest.TestCase):
    def setUp(self):
        self.q = mproc.Queue()

    def tearDown(self):
        self.q.close()

    def test_objects_of_every_kind_come_back_equal_and_in_order(self):
        items = [(1, "one"), b"raw bytes", "text \u00e9", bytearray(b"ba"), {"k": [1, 2]},
                 None, 3.5, b"", "", list(range(1000))]
        for item in items:
            self.q.put(item)
        self.assertEqual([self.q.get() for _ in items], items)

    def test_small_scalars_and_tuples_keep_their_exact_types(self):
        # these travel in the compact format (ints beyond 64 bits and lone surrogates by
        # marshal), the rest by pickle: either way the types come back exact
        items = [True, False, 0, -1 << 70, 2.5, None, (), [], (1, "a", 2.5, None, True, b"x"),
                 [1, 2], ("x" * 5000,), (1, (2,)), ("\ud800",), (1 << 63) - 1, -(1 << 63),
                 1 << 63, ("caf\u00e9", "\u65e5\u672c", b"", -0.0, float("inf")),
                 [b"y" * 4095, False], tuple(range(16)), tuple(range(17)), "\u00e9" * 100]
        for item in items:
            self.q.put(item)
        for item in items:
            got = self.q.get()
            self.assertEqual(got, item)
            self.assertIs(type(got), type(item))

    def test_put_many_and_get_many_keep_exact_types_of_small_objects(self):
        items = [b"raw", "text", 7, -(1 << 63), 1 << 64, (1, "a", b"b", None, 0.5), [True],
                 ("\ud800",), {"k": 1}]
        self.assertEqual(self.q.put_many(items), len(items))
        got = []
        while len(got) < len(items):
            got += self.q.get_many(len(items))
        self.assertEqual(got, items)
        self.assertEqual([type(g) for g in got], [type(i) for i in items])

    def test_bytes_and_bytearray_keep_their_types_and_memoryview_arrives_as_bytes(self):
        self.q.put(b"b")
        self.q.put(bytearray(b"ba"))
        self.q.put(memoryview(b"mv"))
        self.assertIs(type(self.q.get()), bytes)
        self.assertIs(type(self.q.get()), bytearray)
        self.assertEqual(self.q.get(), b"mv")

    def test_a_non_contiguous_memoryview_travels_as_its_bytes(self):
        self.q.put(memoryview(b"abcdef")[::2])
        self.assertEqual(self.q.get(), b"ace")

    def test_large_payloads_come_back_whole(self):
        for size in (65 << 10, 1 << 20, 3 << 20):
            payload = os.urandom(size)
            for item in (payload, bytearray(payload), ("wrapped", payload)):
                self.q.put(item)  # one at a time: three would not fit the 4 MiB ring
                got = self.q.get()
                self.assertEqual(got, item)
                self.assertIs(type(got), type(item))

    def test_out_of_band_buffers_arrive_as_writable_views(self):
        for size in (100, 200000):  # through the scratch buffer, and straight into a bytearray
            payload = bytearray(os.urandom(size))
            self.q.put(("blob", Blob(payload), Blob(payload[:10])))
            tag, blob, small = self.q.get()
            self.assertEqual(tag, "blob")
            self.assertIsInstance(blob.data, memoryview)  # a view, not a copy
            self.assertEqual(bytes(blob.data), payload)
            self.assertEqual(bytes(small.data), payload[:10])
            blob.data[0] = 1  # writable

    def test_out_of_band_records_wrap_around_a_small_ring_whole(self):
        # A 16 KiB ring: records of odd sizes land everywhere, so the ring's end falls inside
        # the header, the pickle, the padding and the buffers of one record or another.
        q = mproc.Queue(capacity=16 << 10)
        for i in range(300):
            payloads = [bytes([i % 251]) * (1 + (i * 97 + k * 31) % 3000) for k in range(i % 3 + 1)]
            q.put(("blobs", i, [Blob(p) for p in payloads]))
            tag, n, blobs = q.get(timeout=5)
            self.assertEqual((tag, n), ("blobs", i))
            self.assertEqual([bytes(b.data) for b in blobs], payloads)
        batch = [Blob(bytes([k]) * (500 + k)) for k in range(8)]  # put_many: one block each
        self.assertEqual(q.put_many(batch), 8)
        self.assertEqual([bytes(b.data) for b in q.get_many(8, timeout=5)], [bytes(b.data) for b in batch])
        with self.assertRaises(OSError):  # too big for the ring, however gathered
            q.put(Blob(b"x" * (16 << 10)))
        self.assertTrue(q.empty())
        q.close()

    @unittest.skipIf(numpy is None, "numpy is not installed")
    def test_numpy_arrays_travel_out_of_band_and_come_back_writable(self):
        a = numpy.arange(100000, dtype=numpy.float64)
        self.q.put(a)
        b = self.q.get()
        self.assertTrue(numpy.array_equal(a, b))
        b[0] = 42.0  # writable: backed by its own bytearray

    def test_get_on_an_empty_queue_times_out_with_queue_empty(self):
        with self.assertRaises(queue.Empty):
            self.q.get(timeout=0.05)
        with self.assertRaises(queue.Empty):
            self.q.get(block=False)
        with self.assertRaises(queue.Empty):
            self.q.get_nowait()
        with self.assertRaises(queue.Empty):
            self.q.get(timeout=-1)

    def test_maxsize_bounds_the_count_and_put_raises_queue_full(self):
        q = mproc.Queue(2)
        try:
            q.put(1)
            q.put(2)
            self.assertTrue(q.full())
            with self.assertRaises(queue.Full):
                q.put(3, timeout=0.05)
            with self.assertRaises(queue.Full):
                q.put_nowait(3)
            self.assertEqual(q.get(), 1)
            q.put_nowait(3)
            self.assertEqual([q.get(), q.get()], [2, 3])
        finally:
            q.close()

    def test_qsize_empty_full_are_exact(self):
        self.assertTrue(self.q.empty())
        for i in range(5):
            self.q.put(i)
        self.assertEqual(self.q.qsize(), 5)
        self.assertFalse(self.q.empty())
        self.assertFalse(self.q.full())

    def test_a_message_larger_than_the_ring_is_an_error_not_a_hang(self):
        q = mproc.Queue(capacity=4096)
        try:
            with self.assertRaises(OSError) as cm:
                q.put(b"x" * 5000)
            self.assertEqual(cm.exception.errno, errno.EMSGSIZE)
            self.assertEqual(q.capacity, 4096)
        finally:
            q.close()

    def test_close_closes_this_handle_only(self):
        other = pickle.loads(pickle.dumps(self.q))  # a second handle, as a child would have
        try:
            self.q.put(1)
            self.q.close()
            with self.assertRaises(ValueError):
                self.q.put(2)
            with self.assertRaises(ValueError):
                self.q.get()
            self.q.close()  # twice is fine
            self.assertEqual(other.get(timeout=5), 1)
            other.put(3)
            self.assertEqual(other.get(timeout=5), 3)
        finally:
            other.close()

    def test_shutdown_stops_producers_and_lets_consumers_drain(self):
        self.q.put("last")
        self.q.shutdown()
        self.assertTrue(self.q.is_shutdown())
        with self.assertRaises(mproc.ShutDown):
            self.q.put("more")
        self.assertEqual(self.q.get(), "last")
        with self.assertRaises(mproc.ShutDown):
            self.q.get()

    def test_put_many_and_get_many_move_batches_in_order(self):
        items = [(i, str(i)) for i in range(1000)] + [b"tail", "s"]
        self.assertEqual(self.q.put_many(items), len(items))
        got = []
        while len(got) < len(items):
            got.extend(self.q.get_many(64, timeout=5))
        self.assertEqual(got, items)
        with self.assertRaises(queue.Empty):
            self.q.get_many(10, block=False)

    def test_pickling_the_queue_reattaches_by_name(self):
        other = pickle.loads(pickle.dumps(self.q))
        try:
            self.assertEqual(other.name, self.q.name)
            other.put("via the copy")
            self.assertEqual(self.q.get(timeout=5), "via the copy")
        finally:
            other.close()


class JoinableAndSimple(unittest.TestCase):
    def test_task_done_beyond_the_puts_is_a_value_error(self):
        q = mproc.JoinableQueue()
        try:
            with self.assertRaises(ValueError):
                q.task_done()
            q.put(1)
            self.assertFalse(q.join(timeout=0.01))
            q.get()
            q.task_done()
            self.assertTrue(q.join(timeout=5))
        finally:
            q.close()

    def test_simple_queue_has_put_get_empty_close(self):
        q = mproc.SimpleQueue()
        q.put([1, 2])
        self.assertFalse(q.empty())
        self.assertEqual(q.get(), [1, 2])
        self.assertTrue(q.empty())
        q.close()

    def test_task_done_on_a_plain_queue_is_refused(self):
        q = mproc.Queue()
        try:
            with self.assertRaises(AttributeError):
                q.task_done()
        finally:
            q.close()


class AcrossProcesses(unittest.TestCase):
    def test_producers_in_children_deliver_everything_under_each_start_method(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                q = mproc.Queue()
                try:
                    children = [start_child(method, produce, q, 500, t) for t in range(2)]
                    got = [q.get(timeout=30) for _ in range(1000)]
                    for c in children:
                        self.assertEqual(join_child(c), 0)
                    for t in range(2):  # each producer's order is kept
                        self.assertEqual([m[1] for m in got if m[0] == t], list(range(500)))
                finally:
                    q.close()

    def test_a_consumer_child_gets_what_the_parent_put(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                q, out = mproc.Queue(), mproc.Queue()
                try:
                    produce(q, 300, "p")
                    self.assertEqual(run_child(method, consume_all, q, 300, out), 0)
                    self.assertEqual(len(out.get(timeout=30)), 300)
                finally:
                    q.close()
                    out.close()

    def test_join_waits_for_a_child_to_finish_every_task(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                q = mproc.JoinableQueue()
                try:
                    for i in range(50):
                        q.put(i)
                    child = start_child(method, joinable_worker, q, 50)
                    self.assertTrue(q.join(timeout=30))
                    self.assertEqual(join_child(child), 0)
                finally:
                    q.close()


if __name__ == "__main__":
    unittest.main()
