// mproc_chaos: what each worker does, in its own process (chaos.hpp says what they share).
#include "chaos.hpp"

namespace mproc_chaos {

// ---- the workers (each runs in its own process) ------------------------------------------------

// Continues `slot` after the highest seq any earlier incarnation attempted. Each operation is,
// by a coin from the worker's seeded generator, one put() or a put_many() of 2-32 messages. The
// order of the records makes the accounting sound: next_seq past the whole batch before the put
// (a replacement never reuses a seq that may be in the ring), "called" for every id of it before
// the put (nothing unrecorded is ever put), "returned" for every id after it returned; `covers`
// (the batch's size) is published before the phase says kInPut, and the phase says it from
// before the first "called" until the last "returned" is recorded. So an id put but not recorded
// returned belongs to a producer killed in that phase, with at most `covers` such ids for each
// death — whatever prefix of a batch was committed. Returns when told to stop, or when the slot
// runs out of ids.
void producer(World& w, std::uint32_t slot, std::uint64_t seed, WorkerBeat& me) {
  Control& c = *w.control;
  std::mt19937_64 rng(seed);
  Bytes payload;
  payload.reserve(kMaxPayload);
  std::vector<Bytes> batch(kMaxBatch);
  for (Bytes& m : batch) m.reserve(sizeof(Header) + kMaxPayload);
  const std::uint64_t ids = w.config.ids_per_producer;
  for (std::uint64_t seq = c.next_seq[slot].load(); seq < ids;) {
    if (c.stop.load(std::memory_order_relaxed) != 0) break;
    const bool many = rng() % 2 == 0;
    const std::uint64_t want = many ? 2 + rng() % (kMaxBatch - 1) : 1;
    const auto n = static_cast<std::uint32_t>(std::min(want, ids - seq));
    for (std::uint32_t i = 0; i < n; ++i) encode(slot, 0, seq + i, payload, batch[i]);
    c.next_seq[slot].store(seq + n);
    me.covers.store(n);
    me.many.store(many ? 1 : 0);
    me.phase.store(kInPut);
    for (std::uint32_t i = 0; i < n; ++i) w.ids[w.id(slot, seq + i)].fetch_or(IdTable::kPutCalled);
    if (many) {
      w.queue.put_many(std::span<const Bytes>(batch.data(), n));
    } else {
      w.queue.put(std::span<const std::byte>(batch[0]));
    }
    for (std::uint32_t i = 0; i < n; ++i) w.ids[w.id(slot, seq + i)].fetch_or(IdTable::kPutReturned);
    me.phase.store(kIdle);
    if (many) {
      c.put_many_calls.fetch_add(1, std::memory_order_relaxed);
      c.put_many_messages.fetch_add(n, std::memory_order_relaxed);
    }
    seq += n;
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Each operation is, by a coin from the worker's seeded generator, one get_into() or a
// get_many() into 2-32 messages. `covers` — 1, or the out size — is published before the phase
// says kInGet, and lowered to the n taken once get_many returned. Every delivery of the batch is
// recorded before the phase leaves kInGet, so only a kill in that phase can make a taken message
// look lost, at most `covers` of them; then every byte and each producer's order is checked,
// and the tasks are marked done, one per message (a kill before the last leaves at most `covers`
// unfinished).
void consumer(World& w, std::uint64_t seed, WorkerBeat& me) {
  Control& c = *w.control;
  std::mt19937_64 rng(seed);
  const std::uint32_t producers = w.config.per_role;
  std::vector<Bytes> got(kMaxBatch);
  for (Bytes& m : got) m.reserve(sizeof(Header) + kMaxPayload);
  Bytes expected;
  expected.reserve(kMaxPayload);
  std::array<std::optional<Header>, kMaxBatch> headers{};
  std::array<std::uint8_t, kMaxBatch> before{};  // its delivery count before this one
  std::array<bool, kMaxBatch> known{}, dropped{};
  std::array<std::uint64_t, kMaxPerRole> next{};  // per producer: lowest seq still acceptable
  for (;;) {
    const bool many = rng() % 2 == 0;
    const auto out = static_cast<std::uint32_t>(many ? 2 + rng() % (kMaxBatch - 1) : 1);
    me.covers.store(out);
    me.many.store(many ? 1 : 0);
    me.phase.store(kInGet);
    std::size_t n = 0;
    if (many) {
      n = w.queue.get_many(std::span<Bytes>(got.data(), out));
    } else {
      n = w.queue.get_into(got[0]) ? 1 : 0;
    }
    if (n == 0) break;  // closed and drained
    me.covers.store(static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) {
      Bytes& m = got[i];
      const std::optional<Header> h = headers[i] = header_of(m);
      // Lost messages are told from allowed losses only in sum, and a short sanitizer run can
      // allow several hundred (consumers killed inside a get_many): drop every 10th, not 100th.
      const std::uint64_t every = w.config.sabotage == Sabotage::lose ? 10 : 100;
      const bool sabotaged = w.config.sabotage != Sabotage::none && h && h->seq % every == every - 1;
      dropped[i] = sabotaged && w.config.sabotage == Sabotage::lose;
      if (sabotaged) c.planted.fetch_add(1, std::memory_order_relaxed);
      known[i] = false;
      if (dropped[i]) continue;
      if (sabotaged && w.config.sabotage == Sabotage::tear) m.back() ^= std::byte{1};
      if (sabotaged && w.config.sabotage == Sabotage::duplicate) {
        w.ids[w.id(h->stream, h->seq)].fetch_add(IdTable::kOneDelivery);
      }
      known[i] = h && h->stream < producers && h->generation == 0 && h->seq < c.next_seq[h->stream].load();
      before[i] = known[i] ? w.ids[w.id(h->stream, h->seq)].fetch_add(IdTable::kOneDelivery) : 0;
      if (known[i]) c.queue_received.fetch_add(1, std::memory_order_relaxed);
    }
    me.phase.store(kProcessing);
    if (many) {
      c.get_many_calls.fetch_add(1, std::memory_order_relaxed);
      c.get_many_messages.fetch_add(n, std::memory_order_relaxed);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (dropped[i]) continue;  // --sabotage lose: as if never received
      const Bytes& m = got[i];
      const std::optional<Header>& h = headers[i];
      if (!known[i]) {
        c.torn.fetch_add(1);
        report(c, "queue: a message of %zu bytes that no producer attempted (stream %u, seq %llu)", m.size(),
               h ? h->stream : 0u, h ? static_cast<unsigned long long>(h->seq) : 0ULL);
        continue;
      }
      if ((before[i] >> 2) != 0) {
        c.duplicated.fetch_add(1);
        report(c, "queue: producer %u's message %llu delivered again", h->stream,
               static_cast<unsigned long long>(h->seq));
      }
      if (!intact(*h, m, expected)) {
        c.torn.fetch_add(1);
        report(c, "queue: producer %u's message %llu is torn (%zu bytes)", h->stream,
               static_cast<unsigned long long>(h->seq), m.size());
      }
      if (h->seq < next[h->stream]) {
        c.misordered.fetch_add(1);
        report(c, "queue: producer %u's message %llu arrived after a later one", h->stream,
               static_cast<unsigned long long>(h->seq));
      }
      next[h->stream] = h->seq + 1;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!dropped[i]) w.queue.task_done();
    }
    me.phase.store(kIdle);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Sends seq 0, 1, 2, ... on this generation's pipe until told to stop, or until the receiver is
// gone (EPIPE), which is how the survivor of a killed receiver ends.
void sender(World& w, std::uint32_t pair, std::uint32_t generation, mproc::Connection& out, WorkerBeat& me) {
  Control& c = *w.control;
  PipeSlot& s = c.pipes[pair];
  Bytes payload, message;
  payload.reserve(kMaxPayload);
  message.reserve(sizeof(Header) + kMaxPayload);
  for (std::uint64_t seq = 0;; ++seq) {
    if (c.stop.load(std::memory_order_relaxed) != 0) {
      s.sender_end.store(kStopped);
      break;
    }
    if (w.config.sabotage == Sabotage::pipe_gap && seq % 100 == 99) {
      c.planted.fetch_add(1, std::memory_order_relaxed);
      s.attempted.store(seq + 1);  // counted as sent, never sent
      s.returned.store(seq + 1);
      continue;
    }
    encode(pair, generation, seq, payload, message);
    s.attempted.store(seq + 1);
    me.phase.store(kInSend);
    try {
      out.send_bytes(message);
    } catch (const mproc::Error& e) {
      if (e.code().value() != EPIPE) throw;
      s.sender_end.store(kSawEpipe);
      break;
    }
    me.phase.store(kIdle);
    s.returned.store(seq + 1);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Receives until end of stream, which comes when the sender stopped or was killed. A
// point-to-point pipe is FIFO, so every message must be exactly the next seq: anything else is a
// duplicate or a gap.
void receiver(World& w, std::uint32_t pair, std::uint32_t generation, mproc::Connection& in, WorkerBeat& me) {
  Control& c = *w.control;
  PipeSlot& s = c.pipes[pair];
  Bytes m, expected;
  m.reserve(sizeof(Header) + kMaxPayload);
  expected.reserve(kMaxPayload);
  for (;;) {
    me.phase.store(kInRecv);
    if (!in.recv_bytes_into(m)) {
      s.receiver_end.store(kSawEof);
      break;
    }
    const std::optional<Header> h = header_of(m);
    const std::uint64_t want = s.received.load();
    const bool ours = h && h->stream == pair && h->generation == generation;
    if (ours && h->seq >= want) {
      s.delivered.store(s.delivered.load() + 1);
      s.received.store(h->seq + 1);
      c.pipe_received.fetch_add(1, std::memory_order_relaxed);
    }
    me.phase.store(kProcessing);
    if (!ours) {
      c.torn.fetch_add(1);
      report(c, "pipe %u generation %u: a message of %zu bytes that its sender never sent", pair, generation,
             m.size());
    } else {
      if (!intact(*h, m, expected)) {
        c.torn.fetch_add(1);
        report(c, "pipe %u: message %llu is torn (%zu bytes)", pair, static_cast<unsigned long long>(h->seq),
               m.size());
      }
      if (h->seq < want) {
        c.pipe_duplicated.fetch_add(1);
        report(c, "pipe %u: message %llu delivered again (expected %llu)", pair,
               static_cast<unsigned long long>(h->seq), static_cast<unsigned long long>(want));
      } else if (h->seq > want) {
        c.misordered.fetch_add(1);
        report(c, "pipe %u: messages %llu to %llu skipped", pair, static_cast<unsigned long long>(want),
               static_cast<unsigned long long>(h->seq - 1));
      }
    }
    me.phase.store(kIdle);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Checks the guarded state just after acquiring, and repairs it after an owner's death.
void check_and_repair(Control& c, Guarded& g, mproc::detail::RobustLock& lock, bool owner_died,
                      const char* what) {
  const bool consistent = guarded_consistent(g);
  if (!owner_died) {
    if (g.holder != 0) {
      c.lock_missed_death.fetch_add(1);
      report(c,
             "%s: acquire() said ok, but holder %d never released it (died unreported, or "
             "holds it still)",
             what, static_cast<int>(g.holder));
    }
    if (!consistent) {
      c.lock_torn.fetch_add(1);
      report(c, "%s: acquire() said ok, but the guarded state is torn (count %llu)", what,
             static_cast<unsigned long long>(g.count));
    }
  }
  g.holder = ::getpid();
  if (owner_died) {
    g.owner_died = g.owner_died + 1;
    if (!consistent) {
      // Repair: keep the count the dead holder got to, rewrite its checksum.
      g.repaired_torn = g.repaired_torn + 1;
      g.in_progress = 1;
      for (std::size_t i = 0; i < kGuardedWords; ++i) g.words[i] = guarded_word(g.count, i);
      g.in_progress = 0;
    }
    lock.mark_consistent();
  }
}

// The update in two non-atomic steps: the counter, then its checksum, with a marker in between.
void update(Guarded& g) {
  g.in_progress = 1;
  g.count = g.count + 1;
  for (std::size_t i = 0; i < kGuardedWords; ++i) g.words[i] = guarded_word(g.count, i);
  g.in_progress = 0;
  g.acquires = g.acquires + 1;
}

// Takes the Lock or the RLock (the RLock twice, nested), updates what it guards, releases.
void locker(World& w, std::uint64_t seed, WorkerBeat& me) {
  Control& c = *w.control;
  std::mt19937_64 rng(seed);
  const pid_t self = ::getpid();
  while (c.stop.load(std::memory_order_relaxed) == 0) {
    const bool recursive = rng() % 2 == 1;
    mproc::detail::RobustLock& lock = recursive ? static_cast<mproc::detail::RobustLock&>(w.rlock)
                                                : static_cast<mproc::detail::RobustLock&>(w.lock);
    Guarded& g = c.guarded[recursive ? 1 : 0];
    const char* what = recursive ? "RLock" : "Lock";
    me.phase.store(kInAcquire);
    const bool timed = rng() % 4 == 0;
    const mproc::Acquired got =
        timed ? lock.acquire(std::chrono::microseconds(static_cast<long>(rng() % 20000))) : lock.acquire();
    if (!got) {  // a timed attempt that timed out: fine, try again
      me.phase.store(kIdle);
      me.beats.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    me.phase.store(kHolding);
    if (w.config.sabotage == Sabotage::hang && rng() % 1000 == 0) {
      c.planted.fetch_add(1, std::memory_order_relaxed);
      for (;;) ::pause();  // stuck while holding: everyone else waits on it
    }
    check_and_repair(c, g, lock, got.owner_died() && w.config.sabotage != Sabotage::hide_owner_death, what);
    update(g);
    if (recursive) {
      const mproc::Acquired again = lock.acquire();
      if (again != mproc::Acquired::Status::ok) {
        c.lock_missed_death.fetch_add(1);
        report(c, "%s", "RLock: a nested acquire by the holder did not say ok");
      }
      update(g);
      lock.release();
    }
    if (g.holder != self) {
      c.lock_shared.fetch_add(1);
      report(c, "%s: held by %d and %d at once", what, static_cast<int>(self), static_cast<int>(g.holder));
    }
    g.holder = 0;
    me.phase.store(kInRelease);
    lock.release();
    me.phase.store(kIdle);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Takes a count (timed: counts lost with killed holders may leave none), marks itself a holder,
// checks that no more processes hold counts than there are, and gives it back.
void sem_user(World& w, std::uint32_t slot, std::uint64_t seed, WorkerBeat& me) {
  Control& c = *w.control;
  std::mt19937_64 rng(seed);
  const std::uint64_t bit = std::uint64_t{1} << slot;
  while (c.stop.load(std::memory_order_relaxed) == 0) {
    me.phase.store(kInAcquire);
    if (w.semaphore.acquire(std::chrono::microseconds(static_cast<long>(1000 + rng() % 20000)))) {
      const std::uint64_t holders = c.sem_holders.fetch_or(bit) | bit;
      me.phase.store(kHolding);
      c.sem_acquires.fetch_add(1, std::memory_order_relaxed);
      if (std::popcount(holders) > static_cast<int>(kSemaphoreCount)) {
        c.sem_overadmitted.fetch_add(1);
        report(c, "Semaphore(%u): %d holders at once", kSemaphoreCount, std::popcount(holders));
      }
      c.sem_holders.fetch_and(~bit);
      me.phase.store(kInRelease);
      w.semaphore.release();
    }
    me.phase.store(kIdle);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

}  // namespace mproc_chaos
