// mproc_chaos: the checks at the end — every message id accounted for against the loss rules,
// every lock still usable, the semaphore audited — and the summary line.
#include "chaos.hpp"
#include "supervisor.hpp"

namespace mproc_chaos {

// Every lock must still be usable: acquire (repairing after a death), check, release — here and
// from a fresh process.
bool Supervisor::final_locks() {
  bool ok = true;
  const auto patience = std::chrono::duration<double>(cfg_.hang_s);
  for (int i = 0; i < 2; ++i) {
    mproc::detail::RobustLock& lock = i == 0 ? static_cast<mproc::detail::RobustLock&>(world_.lock)
                                             : static_cast<mproc::detail::RobustLock&>(world_.rlock);
    Guarded& g = ctl().guarded[i];
    const mproc::Acquired got = lock.acquire(patience);
    if (!got) {
      std::fprintf(stderr, "mproc_chaos: the %s cannot be acquired at the end\n", lock.kind_name());
      ++t_.hangs;
      ok = false;
      continue;
    }
    check_and_repair(ctl(), g, lock, got.owner_died(), lock.kind_name());
    update(g);
    g.holder = 0;
    lock.release();
    if (!guarded_consistent(g)) {
      std::fprintf(stderr, "mproc_chaos: the %s's state is torn after repair\n", lock.kind_name());
      ok = false;
    }
  }
  World& world = world_;
  mproc::Process fresh([&world, patience] {
    for (mproc::detail::RobustLock* lock : {static_cast<mproc::detail::RobustLock*>(&world.lock),
                                            static_cast<mproc::detail::RobustLock*>(&world.rlock)}) {
      const mproc::Acquired got = lock->acquire(patience);
      if (got != mproc::Acquired::Status::ok) {
        std::fprintf(stderr, "mproc_chaos: a fresh process's acquire of the %s: %s\n", lock->kind_name(),
                     got ? "owner_died after repair" : "timed out");
        mproc::exit(kWorkerFailed);
      }
      lock->release();
    }
  });
  fresh.set_daemon(true);
  fresh.start();
  if (!fresh.join(patience)) {
    std::fprintf(stderr, "mproc_chaos: a fresh process could not take and release the locks\n");
    ++t_.hangs;
    fresh.kill();
    fresh.join();
    return false;
  }
  return ok && fresh.exitcode() == 0;
}

// ---- the checks at the end ----------------------------------------------------------------------

// The queue, id by id: every id a producer attempted. An id "called" but never "returned" must
// lie in a put or put_many its producer was killed inside (else: stray). Such a batch was
// committed as a prefix, and what was committed is delivered or was taken by a killed consumer:
// so an undelivered id of it that comes before a delivered one (a hole) was committed and counts
// against the consumers' allowance, with the ids whose put returned; only the undelivered rest
// of the batch is "cut short".
void Supervisor::account_queue(Findings& f) {
  Control& c = ctl();
  for (std::uint32_t slot = 0; slot < cfg_.per_role; ++slot) {
    const std::uint64_t end = c.next_seq[slot].load();
    const std::vector<CutPut>& cuts = cut_puts_[slot];
    std::size_t cut = 0;  // the first of `cuts` that does not end at or before seq
    for (std::uint64_t seq = 0; seq < end; ++seq) {
      const std::uint8_t b = world_.ids[world_.id(slot, seq)].load(std::memory_order_relaxed);
      const unsigned put = b & 3u, got = b >> 2;
      if (put == 0) {  // killed after reserving the seq, before put(): never attempted
        f.phantoms += got != 0;
        continue;
      }
      ++f.queue_messages;
      f.delivered += got != 0;
      f.duplicated += got > 1 ? got - 1 : 0;
      if (put != 3) {
        while (cut < cuts.size() && cuts[cut].first + cuts[cut].count <= seq) ++cut;
        if (cut == cuts.size() || cuts[cut].first > seq) {
          ++f.stray;
          f.stray_lost += got == 0;
          if (f.stray <= 5) {
            std::fprintf(stderr,
                         "mproc_chaos: queue: producer %u's message %llu: put() called, "
                         "never returned, yet its producer was not killed inside it\n",
                         slot, static_cast<unsigned long long>(seq));
          }
        }
      }
      if (got == 0) (put == 3 ? f.returned_lost : f.cut_short_lost) += 1;
    }
    for (const CutPut& k : cuts) {
      std::uint64_t last = k.count;  // the last delivered id of the batch (count: none)
      for (std::uint64_t i = 0; i < k.count; ++i) {
        if ((world_.ids[world_.id(slot, k.first + i)].load() >> 2) != 0) last = i;
      }
      for (std::uint64_t i = 0; last != k.count && i < last; ++i) {
        const std::uint8_t b = world_.ids[world_.id(slot, k.first + i)].load();
        f.holes += (b & 3u) == IdTable::kPutCalled && (b >> 2) == 0;
      }
    }
  }
  f.cut_short_lost -= f.holes;
}

// The queue's losses against the allowances. A consumer killed inside get may have taken what
// its call covered: 1 for get_into, the out size for get_many (the n it returned, once it had
// returned). A producer killed inside put may have cut short the ids of its put or put_many,
// "called" but never "returned". The allowances are those sums over the victims.
void Supervisor::check_queue(Findings& f, Violations& violation) {
  f.stats = world_.queue.stats();
  const std::size_t unfinished = world_.queue.unfinished_tasks();
  const std::uint64_t queue_allowed = t_.get_allowance;
  f.consumer_lost = f.returned_lost + f.holes;
  f.queue_unexplained = f.consumer_lost > queue_allowed ? f.consumer_lost - queue_allowed : 0;
  f.taken_by_killed = f.consumer_lost - f.queue_unexplained;
  // Every cut-short id lies in a batch of a producer killed inside put (else it is stray), so
  // there are at most put_allowance of them; the count is checked too, as a cross-check.
  f.cut_short_unexplained =
      std::max(f.stray_lost, f.cut_short_lost > t_.put_allowance ? f.cut_short_lost - t_.put_allowance : 0);

  violation(f.queue_unexplained != 0,
            "queue: %llu messages whose put() returned, and %llu of a put_many cut short that were "
            "committed (a later one of the batch was delivered), were never delivered; the %llu "
            "consumers killed inside get() or get_many() could have taken only %llu",
            static_cast<unsigned long long>(f.returned_lost), static_cast<unsigned long long>(f.holes),
            static_cast<unsigned long long>(t_.consumer_kills_in_get),
            static_cast<unsigned long long>(queue_allowed));
  violation(f.stray != 0,
            "queue: %llu messages whose put() was called and never returned, outside the put or "
            "put_many of any producer killed inside it",
            static_cast<unsigned long long>(f.stray));
  violation(f.cut_short_lost > t_.put_allowance,
            "queue: %llu messages lost whose put() never returned, but the %llu producers killed "
            "inside put() or put_many() were putting only %llu",
            static_cast<unsigned long long>(f.cut_short_lost),
            static_cast<unsigned long long>(t_.producer_kills_in_put),
            static_cast<unsigned long long>(t_.put_allowance));
  violation(f.phantoms != 0, "queue: %llu messages delivered that were never put",
            static_cast<unsigned long long>(f.phantoms));
  violation(world_.queue.qsize() != 0, "queue: %zu messages left after draining", world_.queue.qsize());
  violation(f.stats.abandoned_puts > t_.kills_of[0],
            "queue: %llu abandoned puts repaired, but only %llu producers were killed",
            static_cast<unsigned long long>(f.stats.abandoned_puts),
            static_cast<unsigned long long>(t_.kills_of[0]));
  violation(f.stats.abandoned_gets > t_.kills_of[1],
            "queue: %llu abandoned gets repaired, but only %llu consumers were killed",
            static_cast<unsigned long long>(f.stats.abandoned_gets),
            static_cast<unsigned long long>(t_.kills_of[1]));
  // JoinableQueue: a task stays unfinished only where its consumer died between taking it and
  // its task_done() — at most what the victim's get covered; every message taken by a killed
  // consumer is such a task.
  violation(unfinished > t_.taking_allowance || unfinished < f.taken_by_killed,
            "JoinableQueue: %zu unfinished tasks after draining; expected between %llu (messages "
            "taken by killed consumers) and %llu (what the %llu consumers killed in get or before "
            "task_done could have taken)",
            unfinished, static_cast<unsigned long long>(f.taken_by_killed),
            static_cast<unsigned long long>(t_.taking_allowance),
            static_cast<unsigned long long>(t_.consumer_kills_taking));
}

// Pipes, locks (each still usable, and owner deaths reported as the holders' deaths allow) and
// the semaphore (a last audit, now that every user has stopped).
void Supervisor::check_pipes_locks_semaphore(Findings& f, Violations& violation) {
  Control& c = ctl();
  violation(t_.pipe_unexplained != 0, "pipes: %llu messages lost that no rule allows",
            static_cast<unsigned long long>(t_.pipe_unexplained));
  violation(t_.spurious_ends != 0, "pipes: %llu ends reported while the peer lived",
            static_cast<unsigned long long>(t_.spurious_ends));
  f.locks_usable = final_locks();
  violation(!f.locks_usable, "%s", "a lock is not usable at the end");
  violation(c.lock_torn.load() != 0, "locks: %llu ok acquires found the guarded state torn",
            static_cast<unsigned long long>(c.lock_torn.load()));
  violation(c.lock_missed_death.load() != 0,
            "locks: %llu acquires were not told that the previous holder died",
            static_cast<unsigned long long>(c.lock_missed_death.load()));
  violation(c.lock_shared.load() != 0, "locks: held by two processes at once %llu times",
            static_cast<unsigned long long>(c.lock_shared.load()));
  // Each owner_died an acquirer recorded follows a death of a holder since the previous one was
  // recorded (the repair marks the lock consistent right after recording it), so there can be
  // no more of them than lock holders killed where they may have held the lock. And a holder
  // killed while certainly holding it must have been reported to somebody.
  f.owner_died = c.guarded[0].owner_died + c.guarded[1].owner_died;
  violation(f.owner_died > t_.locker_kills_in_lock,
            "locks: %llu acquires reported owner_died, but only %llu holders were killed in or "
            "around a critical section",
            static_cast<unsigned long long>(f.owner_died),
            static_cast<unsigned long long>(t_.locker_kills_in_lock));
  violation(t_.locker_kills_holding != 0 && f.owner_died == 0,
            "locks: %llu holders were killed holding a lock, yet no acquire reported owner_died",
            static_cast<unsigned long long>(t_.locker_kills_holding));
  audit_semaphore();  // every user has stopped: the last audit
  violation(t_.sem_overlost != 0, "Semaphore: %llu audits found the count wrong",
            static_cast<unsigned long long>(t_.sem_overlost));
  violation(c.sem_overadmitted.load() != 0, "Semaphore: admitted too many holders %llu times",
            static_cast<unsigned long long>(c.sem_overadmitted.load()));
}

// The run must have exercised what it claims to; and nothing torn, duplicated, misordered, hung
// or crashed, whatever the kind.
void Supervisor::check_exercised_and_intact(Findings& f, Violations& violation) {
  Control& c = ctl();
  violation(t_.kills == 0 || f.delivered == 0 || t_.pipe_delivered == 0 ||
                c.guarded[0].acquires + c.guarded[1].acquires == 0 || c.sem_acquires.load() == 0,
            "not exercised: %llu kills, %llu queue and %llu pipe messages delivered",
            static_cast<unsigned long long>(t_.kills), static_cast<unsigned long long>(f.delivered),
            static_cast<unsigned long long>(t_.pipe_delivered));

  f.torn = c.torn.load() + c.lock_torn.load();
  // The id table counts queue duplicates exactly; consumers also saw them as they came.
  f.dup = std::max<std::uint64_t>(f.duplicated, c.duplicated.load()) + c.pipe_duplicated.load();
  violation(f.torn != 0, "%llu torn messages or lock states", static_cast<unsigned long long>(f.torn));
  violation(f.dup != 0, "%llu duplicated messages", static_cast<unsigned long long>(f.dup));
  violation(c.misordered.load() != 0, "%llu messages out of order or skipped",
            static_cast<unsigned long long>(c.misordered.load()));
  violation(t_.hangs != 0, "%llu hangs", static_cast<unsigned long long>(t_.hangs));
  violation(t_.crashes != 0, "%llu workers ended unexpectedly", static_cast<unsigned long long>(t_.crashes));
}

// The summary line.
void Supervisor::print_summary(const Findings& f, double killing_s, bool fail) {
  Control& c = ctl();
  const mproc::RingStats& stats = f.stats;
  const std::uint64_t messages = f.queue_messages + t_.pipe_messages;
  const std::uint64_t lost = f.consumer_lost + f.cut_short_lost + t_.pipe_cut_short_lost +
                             t_.pipe_receiver_killed_lost + t_.pipe_unexplained;
  const std::uint64_t unexplained = f.queue_unexplained + f.cut_short_unexplained + t_.pipe_unexplained;
  const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf(
      "kills=%llu messages=%llu lost=%llu (allowed: %llu taken by a killed consumer, %llu puts "
      "or sends that never returned, %llu left in a pipe whose receiver was killed; "
      "unexplained: %llu) duplicated=%llu torn=%llu hangs=%llu | killed in put=%llu get=%llu "
      "send=%llu recv=%llu acquire=%llu holding=%llu release=%llu elsewhere=%llu | "
      "queue=%llu pipe=%llu (%llu pipes; %llu senders, %llu receivers killed) | batches: put_many=%llu "
      "(%llu messages, %llu killed inside) get_many=%llu (%llu messages, %llu killed inside) | "
      "queue sides: abandoned puts=%llu gets=%llu, bias grants=%llu/%llu revocations=%llu/%llu "
      "handovers=%llu/%llu | "
      "locks: updates=%llu owner_died=%llu "
      "repaired_torn=%llu usable=%s | semaphore: acquires=%llu counts_returned=%llu lost=%llu audits=%llu | "
      "misordered=%llu crashes=%llu calm_checks=%llu | seed=%llu %.1fs %s\n",
      u(t_.kills), u(messages), u(lost), u(f.taken_by_killed),
      u(f.cut_short_lost - f.cut_short_unexplained + t_.pipe_cut_short_lost), u(t_.pipe_receiver_killed_lost),
      u(unexplained), u(f.dup), u(f.torn), u(t_.hangs), u(t_.kills_in[kInPut]), u(t_.kills_in[kInGet]),
      u(t_.kills_in[kInSend]), u(t_.kills_in[kInRecv]), u(t_.kills_in[kInAcquire]), u(t_.kills_in[kHolding]),
      u(t_.kills_in[kInRelease]),
      u(t_.kills - t_.kills_in[kInPut] - t_.kills_in[kInGet] - t_.kills_in[kInSend] - t_.kills_in[kInRecv] -
        t_.kills_in[kInAcquire] - t_.kills_in[kHolding] - t_.kills_in[kInRelease]),
      u(f.queue_messages), u(t_.pipe_messages), u(t_.pipe_generations), u(t_.sender_kills),
      u(t_.receiver_kills), u(c.put_many_calls.load()), u(c.put_many_messages.load()),
      u(t_.kills_in_put_many), u(c.get_many_calls.load()), u(c.get_many_messages.load()),
      u(t_.kills_in_get_many), u(stats.abandoned_puts), u(stats.abandoned_gets),
      u(stats.producer_bias_grants), u(stats.consumer_bias_grants), u(stats.producer_bias_revocations),
      u(stats.consumer_bias_revocations), u(stats.producer_bias_handovers), u(stats.consumer_bias_handovers),
      u(c.guarded[0].acquires + c.guarded[1].acquires), u(f.owner_died),
      u(c.guarded[0].repaired_torn + c.guarded[1].repaired_torn), f.locks_usable ? "yes" : "NO",
      u(c.sem_acquires.load()), u(t_.sem_returned), u(t_.sem_lost), u(t_.sem_audits), u(c.misordered.load()),
      u(t_.crashes), u(t_.calm_checks), u(cfg_.seed), killing_s, fail ? "FAIL" : "PASS");
  std::fflush(stdout);
}

// Every check, each violation on stderr, then the summary line. 0 when every check held.
int Supervisor::check_and_report(double killing_s) {
  Findings f;
  Violations violation;
  account_queue(f);
  check_queue(f, violation);
  check_pipes_locks_semaphore(f, violation);
  check_exercised_and_intact(f, violation);
  print_summary(f, killing_s, violation.failed());
  return violation.failed() ? 1 : 0;
}

}  // namespace mproc_chaos
