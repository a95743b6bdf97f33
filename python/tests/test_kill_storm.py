"""A kill storm: producers and consumers of one mproc.Queue are SIGKILLed at random while they
work, and replaced; afterwards every message is accounted for. The contract (queue.hpp): a
message whose put() returned is delivered exactly once, except that a consumer killed between
taking it and recording it loses that one; a producer killed inside put() loses at most the
message it was putting. Progress, not time, decides when to kill: workers release a semaphore
every few messages and the killer waits on it."""

import os
import random
import signal
import unittest

import _support
from _support import join_child, start_child

import mproc

PRODUCERS, CONSUMERS = 2, 2
PER_PRODUCER = int(os.environ.get("MPROC_STORM_MESSAGES", "20000"))
ROUNDS = int(os.environ.get("MPROC_STORM_ROUNDS", "30"))
EVERY = 50  # a progress count per this many messages


def setUpModule():
    _support.start_watchdog()


def tearDownModule():
    assert not _support.leftovers(), _support.leftovers()


def producer(q, acked, p, start, progress):
    view = acked.get_obj()
    for seq in range(start, PER_PRODUCER):
        q.put((p, seq))
        view[p] = seq + 1  # put() returned: from here on seq must be delivered
        if seq % EVERY == 0:
            progress.release()


def consumer(q, seen, progress):
    view = seen.get_obj()
    while True:
        item = q.get()
        if item is None:
            return
        p, seq = item
        view[p * PER_PRODUCER + seq] += 1
        if seq % EVERY == 0:
            progress.release()


class KillStorm(unittest.TestCase):
    def test_every_message_is_accounted_for_after_random_kills(self):
        rng = random.Random(os.getpid())
        q = mproc.Queue(capacity=1 << 16)  # small: producers also block for room
        acked = mproc.Array("i", PRODUCERS, lock=False)
        seen = mproc.Array("i", PRODUCERS * PER_PRODUCER, lock=False)
        progress = mproc.Semaphore(0)
        producers = {p: start_child("fork", producer, q, acked, p, 0, progress)
                     for p in range(PRODUCERS)}
        starts = {p: 0 for p in range(PRODUCERS)}  # where each producer's incarnation began
        consumers = [start_child("fork", consumer, q, seen, progress) for _ in range(CONSUMERS)]
        maybe, consumer_kills, producer_kills = set(), 0, 0
        for _ in range(ROUNDS):
            self.assertTrue(progress.acquire(timeout=60), "no progress for 60 s: a deadlock")
            live = [("p", p) for p, proc in producers.items() if proc.is_alive()]
            live += [("c", i) for i in range(len(consumers))]
            kind, which = rng.choice(live)
            victim = producers[which] if kind == "p" else consumers[which]
            os.kill(victim.pid, signal.SIGKILL)
            code = join_child(victim)
            if kind == "p":
                if code == 0:
                    continue  # it had finished first
                self.assertEqual(code, -signal.SIGKILL)
                producer_kills += 1
                # It may have been inside put(n), n the first seq it had not acknowledged: its
                # own first one if it acknowledged none (acked still names an older
                # incarnation's), or none at all if it was killed after its last put.
                n = max(acked[which], starts[which])
                if n < PER_PRODUCER:
                    maybe.add((which, n))
                starts[which] = n + 1
                producers[which] = start_child("fork", producer, q, acked, which, n + 1, progress)
            else:
                consumer_kills += 1
                consumers[which] = start_child("fork", consumer, q, seen, progress)
        for proc in producers.values():
            self.assertEqual(join_child(proc), 0)
        for _ in consumers:
            q.put(None)
        for proc in consumers:
            self.assertEqual(join_child(proc), 0)

        counts = seen.get_obj()
        self.assertLessEqual(max(counts), 1, "a message was delivered twice")
        lost = [(p, s) for p in range(PRODUCERS) for s in range(PER_PRODUCER)
                if counts[p * PER_PRODUCER + s] == 0 and (p, s) not in maybe]
        self.assertLessEqual(len(lost), consumer_kills,
                             f"lost {lost[:10]} with {consumer_kills} consumer kills")
        self.assertTrue(q.empty())
        print(f"\nkill storm: {producer_kills} producers and {consumer_kills} consumers killed; "
              f"{len(lost)} messages lost with their consumer, "
              f"{sum(counts[p * PER_PRODUCER + s] for p, s in maybe)} of {len(maybe)} in-flight "
              "puts delivered")
        for o in (q, acked, seen, progress):
            o.close()


if __name__ == "__main__":
    unittest.main()
