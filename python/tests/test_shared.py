"""Value, Array and SharedMemory: typecodes, locking, the buffer protocol (memoryview, numpy
when installed), named attach, across processes."""

import ctypes
import unittest

import _support
from _support import START_METHODS, run_child

import mproc

try:
    import numpy
except ImportError:
    numpy = None


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


def bump(value, array, shm_name, n):
    for _ in range(n):
        with value.get_lock():
            value.value += 1
    with array.get_lock():
        array[0] = array[0] + 1
    shm = mproc.SharedMemory(shm_name)
    shm.buf[0] = shm.buf[0] + 1
    shm.close()


class ValueArray(unittest.TestCase):
    def test_typecodes_and_ctypes_types(self):
        cases = [("i", 7), ("d", 2.5), (ctypes.c_long, -3), ("c", b"x"), ("?", True),
                 ("B", 255), (ctypes.c_double, 1.25)]
        for code, v in cases:
            with self.subTest(code=code):
                val = mproc.Value(code, v)
                self.assertEqual(val.value, v)
                val.close()
        with self.assertRaises(TypeError):
            mproc.Value("z")

    def test_value_defaults_to_zero_and_writes_are_seen(self):
        v = mproc.Value("q")
        self.assertEqual(v.value, 0)
        v.value = 1 << 40
        self.assertEqual(v.value, 1 << 40)
        with v:  # the lock, recursively: .value inside takes it again
            v.value += 1
        self.assertEqual(v.value, (1 << 40) + 1)
        v.close()

    def test_array_indexing_slices_and_buffer(self):
        a = mproc.Array("i", [1, 2, 3, 4])
        self.assertEqual(len(a), 4)
        self.assertEqual(a[1], 2)
        self.assertEqual(a[-1], 4)
        self.assertEqual(a[1:3], [2, 3])
        a[1:3] = [20, 30]
        self.assertEqual(list(a), [1, 20, 30, 4])
        with self.assertRaises(IndexError):
            a[4]
        with self.assertRaises(ValueError):
            a[0:2] = [1]
        view = a.get_obj()
        view[0] = 99
        self.assertEqual(a[0], 99)
        c = mproc.Array("c", b"hey")
        self.assertEqual(c[:], b"hey")
        a.close()
        c.close()

    @unittest.skipIf(numpy is None, "numpy is not installed")
    def test_numpy_views_an_array_without_copying(self):
        a = mproc.Array("d", 10)
        n = numpy.asarray(a.get_obj())
        n[:] = 1.5
        self.assertEqual(a[3], 1.5)
        a.close()

    def test_named_value_and_array_open_by_name(self):
        name = _support.name("val")
        v = mproc.Value.create(name, "i", 41)
        w = mproc.Value.open(name, "i")
        w.value += 1
        self.assertEqual(v.value, 42)
        with self.assertRaises(OSError):  # wrong type: the segment says int
            mproc.Value.open(name, "d")
        w.close()
        v.close()
        del v, w
        aname = _support.name("arr")
        a = mproc.Array.open_or_create(aname, "d", 3)
        b = mproc.Array.open_or_create(aname, "d", 3)
        b[2] = 8.0
        self.assertEqual(a[2], 8.0)
        del a, b

    def test_counts_across_processes(self):
        for method in START_METHODS:
            with self.subTest(method=method):
                v, a = mproc.Value("i", 0), mproc.Array("l", 2)
                shm = mproc.SharedMemory(create=True, size=16)
                for _ in range(2):
                    self.assertEqual(run_child(method, bump, v, a, shm.name, 100), 0)
                self.assertEqual(v.value, 200)
                self.assertEqual(a[0], 2)
                self.assertEqual(shm.buf[0], 2)
                for o in (v, a, shm):
                    o.close()
                shm.unlink()


class SharedMemoryContract(unittest.TestCase):
    def test_create_open_close_unlink(self):
        shm = mproc.SharedMemory(create=True, size=1000)
        self.assertEqual(shm.size, 1000)
        shm.buf[:5] = b"hello"
        other = mproc.SharedMemory(shm.name)
        self.assertEqual(bytes(other.buf[:5]), b"hello")
        other.close()
        shm.close()
        shm.unlink()
        with self.assertRaises(FileNotFoundError):
            mproc.SharedMemory(shm.name)

    def test_zero_size_and_missing_name_are_value_errors(self):
        with self.assertRaises(ValueError):
            mproc.SharedMemory(create=True, size=0)
        with self.assertRaises(ValueError):
            mproc.SharedMemory()

    def test_close_refuses_while_a_view_is_exported(self):
        shm = mproc.SharedMemory(create=True, size=64)
        part = shm.buf[0:8]
        with self.assertRaises(BufferError):
            shm.close()
        part.release()
        shm.close()
        shm.unlink()

    @unittest.skipIf(numpy is None, "numpy is not installed")
    def test_numpy_over_shared_memory(self):
        shm = mproc.SharedMemory(create=True, size=80)
        n = numpy.ndarray((10,), dtype=numpy.float64, buffer=shm.buf)
        n[:] = 3.0
        other = mproc.SharedMemory(shm.name)
        self.assertEqual(numpy.ndarray((10,), numpy.float64, other.buf)[9], 3.0)
        del n
        other.close()
        shm.close()
        shm.unlink()


if __name__ == "__main__":
    unittest.main()
