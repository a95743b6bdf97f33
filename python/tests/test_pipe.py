"""Pipe and Connection: send/recv, bytes, poll, close, EOF at a closed or dead peer,
mproc.wait — with forked children (test_start_methods.py sends ends to spawned ones)."""

import os
import pickle
import signal
import unittest

import _support
from _support import join_child, start_child

import mproc


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


def echo_until_eof(conn, other_end):
    other_end.close()  # as in multiprocessing: close the end this process does not use
    try:
        while True:
            conn.send(conn.recv())
    except EOFError:
        pass


def send_then_hang(conn, other_end, ready):
    other_end.close()
    conn.send("before death")
    ready.set()
    signal.pause()  # until SIGKILL


class PipeContract(unittest.TestCase):
    def test_objects_and_bytes_go_both_ways(self):
        a, b = mproc.Pipe()
        a.send({"k": (1, 2)})
        self.assertEqual(b.recv(), {"k": (1, 2)})
        b.send_bytes(b"0123456789", 2, 3)
        self.assertEqual(a.recv_bytes(), b"234")
        b.send_bytes(memoryview(bytearray(b"ba")))
        self.assertEqual(a.recv_bytes(), b"ba")
        a.send_bytes(b"")
        self.assertEqual(b.recv_bytes(), b"")

    def test_poll_says_whether_a_message_waits(self):
        a, b = mproc.Pipe()
        self.assertFalse(b.poll())
        self.assertFalse(b.poll(0.01))
        a.send(1)
        self.assertTrue(b.poll(None))
        self.assertEqual(b.recv(), 1)

    def test_one_way_pipes_refuse_the_wrong_direction(self):
        r, w = mproc.Pipe(duplex=False)
        self.assertTrue(r.readable and not r.writable)
        self.assertTrue(w.writable and not w.readable)
        with self.assertRaises(mproc.UsageError):
            r.send(1)
        w.send(2)
        self.assertEqual(r.recv(), 2)

    def test_recv_after_the_peer_closed_drains_then_raises_eof(self):
        a, b = mproc.Pipe()
        a.send("last words")
        a.close()
        self.assertEqual(b.recv(), "last words")
        with self.assertRaises(EOFError):
            b.recv()
        with self.assertRaises(EOFError):
            b.recv_bytes()
        self.assertTrue(b.poll())  # end of stream counts as ready

    def test_using_a_closed_connection_is_an_os_error(self):
        a, b = mproc.Pipe()
        a.close()
        self.assertTrue(a.closed)
        with self.assertRaises(OSError):
            a.send(1)
        with self.assertRaises(OSError):
            a.fileno()
        b.close()

    def test_sending_to_a_closed_peer_is_a_broken_pipe(self):
        a, b = mproc.Pipe()
        b.close()
        with self.assertRaises(BrokenPipeError):
            for _ in range(100000):
                a.send_bytes(b"x" * 1024)

    def test_recv_bytes_maxlength(self):
        a, b = mproc.Pipe()
        a.send_bytes(b"x" * 100)
        with self.assertRaises(OSError):
            b.recv_bytes(maxlength=10)

    def test_a_connection_pickled_here_is_the_same_end(self):
        a, b = mproc.Pipe()
        copy = pickle.loads(pickle.dumps(b))  # its descriptors served by multiprocessing
        a.send("to both copies")
        self.assertEqual(copy.recv(), "to both copies")
        b.close()
        copy.close()  # the last copy of b: a sees end of stream
        with self.assertRaises(EOFError):
            a.recv()
        a.close()

    def test_a_closed_connection_cannot_be_pickled(self):
        a, b = mproc.Pipe()
        b.close()
        with self.assertRaisesRegex(OSError, "handle is closed"):  # as multiprocessing
            pickle.dumps(b)
        a.close()

    def test_a_forked_child_echoes_until_end_of_stream(self):
        parent, child = mproc.Pipe()
        kid = start_child("fork", echo_until_eof, child, parent)
        child.close()
        for i in range(200):
            parent.send((i, "x" * i))
            self.assertEqual(parent.recv(), (i, "x" * i))
        parent.close()
        self.assertEqual(join_child(kid), 0)

    def test_eof_when_the_peer_process_is_killed(self):
        parent, child = mproc.Pipe()
        ready = mproc.Event()
        kid = start_child("fork", send_then_hang, child, parent, ready)
        child.close()
        self.assertTrue(ready.wait(30))
        os.kill(kid.pid, signal.SIGKILL)
        self.assertEqual(join_child(kid), -signal.SIGKILL)
        self.assertEqual(parent.recv(), "before death")
        with self.assertRaises(EOFError):
            parent.recv()
        ready.close()

    def test_wait_returns_the_ready_connections(self):
        a, b = mproc.Pipe()
        c, d = mproc.Pipe()
        self.assertEqual(mproc.wait([b, d], timeout=0.01), [])
        a.send(1)
        self.assertEqual(mproc.wait([b, d], timeout=5), [b])
        c.close()
        self.assertEqual(set(mproc.wait([b, d], timeout=5)), {b, d})


if __name__ == "__main__":
    unittest.main()
