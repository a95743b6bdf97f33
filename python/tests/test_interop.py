"""A C++ producer and a Python consumer on one named queue: C++ Queue<mproc::Bytes> arrives
as bytes, Queue<std::string> as str; and the C++ side reads what Python puts as bytes/str."""

import os
import subprocess
import unittest

import _support

import mproc

PRODUCER = os.environ.get("MPROC_INTEROP_PRODUCER")


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


@unittest.skipUnless(PRODUCER, "MPROC_INTEROP_PRODUCER (the C++ producer) is not set")
class CppProducerPythonConsumer(unittest.TestCase):
    def produce(self, name, n, kind):
        subprocess.run([PRODUCER, name, str(n), kind], check=True, timeout=60)

    def test_bytes_from_cpp_arrive_as_bytes(self):
        name = _support.name("interop")
        q = mproc.Queue.open_or_create(name)  # open first: the producer finds it
        self.produce(name, 1000, "bytes")
        got = [q.get(timeout=30) for _ in range(1000)]
        self.assertEqual(got, [f"msg-{i}".encode() for i in range(1000)])
        self.assertTrue(q.empty())
        q.close()

    def test_strings_from_cpp_arrive_as_str(self):
        name = _support.name("interop")
        self.produce(name, 100, "str")  # created by C++; kept while it holds messages
        q = mproc.Queue.open(name, message_type="str")
        self.assertEqual([q.get(timeout=30) for _ in range(100)], [f"msg-{i}" for i in range(100)])
        q.close()  # drained, last user: removed
        self.assertFalse(os.path.exists("/dev/shm/mproc." + name))

    def test_opening_a_string_queue_as_bytes_is_a_clear_error(self):
        name = _support.name("interop")
        q = mproc.Queue.create(name, message_type="str")
        with self.assertRaises(OSError) as cm:
            mproc.Queue.open(name)
        self.assertIn("Queue", str(cm.exception))
        q.close()

    def test_the_cpp_side_rejects_a_pickled_object_instead_of_misreading_it(self):
        name = _support.name("interop")
        q = mproc.Queue.create(name)
        q.put(("a", "tuple"))  # pickled: a C++ Queue<Bytes> consumer gets a type error
        q.put(b"raw")
        self.assertEqual(q.get(), ("a", "tuple"))
        self.assertEqual(q.get(), b"raw")
        q.close()

    def test_malformed_compact_records_are_refused_one_by_one_and_the_queue_goes_on(self):
        # Records in the compact format of small objects that no mproc producer writes (cut
        # short, lengths past the end, 17 items, an unknown type, trailing bytes, bad UTF-8):
        # each get() refuses its record with an error instead of reading past it, then the
        # valid record behind them arrives.
        name = _support.name("interop")
        q = mproc.Queue.create(name)
        self.produce(name, 0, "forged")
        for _ in range(6):
            with self.assertRaises(ValueError):
                q.get(timeout=30)
        with self.assertRaises(UnicodeDecodeError):  # a ValueError too
            q.get(timeout=30)
        self.assertIsNone(q.get(timeout=30))
        self.assertTrue(q.empty())
        q.close()


if __name__ == "__main__":
    unittest.main()
