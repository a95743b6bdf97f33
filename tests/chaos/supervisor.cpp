// mproc_chaos: the supervisor at work — starting workers, watching their heartbeats, killing
// and replacing them, settling pipe pairs, and stopping everyone at the end.
#include "chaos.hpp"
#include "supervisor.hpp"

namespace mproc_chaos {

void Supervisor::add_workers() {
  workers_.reserve(kMaxWorkers);
  for (Role r : kRoles) {
    // One more lock holder and semaphore user than there are slots: they contend and wait.
    const std::uint32_t n = r == Role::locker || r == Role::sem_user ? cfg_.per_role + 1 : cfg_.per_role;
    for (std::uint32_t i = 0; i < n; ++i) {
      Worker w;
      w.role = r;
      w.slot = i;
      w.beat = workers_.size();
      workers_.push_back(std::move(w));
    }
  }
  for (Worker& w : workers_) {
    if (w.role == Role::sender) pairs_[w.slot].sender = &w;
    if (w.role == Role::receiver) pairs_[w.slot].receiver = &w;
  }
}

void Supervisor::start(Worker& w) {
  WorkerBeat& beat = ctl().workers[w.beat];
  beat.phase.store(kStarting);
  beat.beats.store(0);
  beat.covers.store(0);
  beat.many.store(0);
  w.seen_beats = 0;
  w.beat_at = Clock::now();
  w.killed = false;
  w.death_phase = kStarting;
  ++w.incarnation;
  World& world = world_;
  const std::uint32_t slot = w.slot;
  const std::uint64_t seed = cfg_.seed ^ (std::uint64_t{w.incarnation} << 20) ^ (w.beat << 8);
  Pair* pair = pair_of(w);
  const std::uint32_t generation = pair != nullptr ? pair->generation : 0;
  auto body = [&world, &beat, slot, seed, pair, generation, role = w.role] {
    switch (role) {
      case Role::producer: producer(world, slot, seed, beat); break;
      case Role::consumer: consumer(world, seed, beat); break;
      case Role::sender:
        pair->reader.close();  // as in Python: close the end this process does not use
        sender(world, slot, generation, pair->writer, beat);
        break;
      case Role::receiver:
        pair->writer.close();
        receiver(world, slot, generation, pair->reader, beat);
        break;
      case Role::locker: locker(world, seed, beat); break;
      case Role::sem_user: sem_user(world, slot, seed, beat); break;
    }
  };
  w.process.reset();
  w.process.emplace(body);
  w.process->set_name(std::string(role_name(w.role)) + "-" + std::to_string(w.slot));
  w.process->set_daemon(true);  // dies with the supervisor, however the supervisor ends
  w.process->start();
  w.running = true;
}

// A fresh Pipe per generation: a pipe is point-to-point, and its survivor has just seen the
// end of it. Both sides are forked before the supervisor drops its own copies of the ends, so
// that no other worker ever holds one (it would keep the pipe open past a death).
void Supervisor::start_pair(Pair& p) {
  ++p.generation;
  ++t_.pipe_generations;
  PipeSlot& s = ctl().pipes[p.sender->slot];
  s.attempted.store(0);
  s.returned.store(0);
  s.received.store(0);
  s.delivered.store(0);
  s.sender_end.store(kRunning);
  s.receiver_end.store(kRunning);
  p.peer_died_at.reset();
  auto [reader, writer] = mproc::Pipe(false, kPipeCapacity);
  p.reader = std::move(reader);
  p.writer = std::move(writer);
  start(*p.receiver);
  start(*p.sender);
  p.reader.close();
  p.writer.close();
}

// Records how a worker ended (after it was reaped: its phase is final).
void Supervisor::on_end(Worker& w) {
  w.running = false;
  w.death_phase = ctl().workers[w.beat].phase.load();
  const int code = w.process->exitcode().value_or(-1000);
  if (w.killed) return;
  if (code == -SIGKILL) {  // not by us: the OOM killer, say
    std::fprintf(stderr, "mproc_chaos: %s %u (pid %d) was SIGKILLed by someone else\n", role_name(w.role),
                 w.slot, w.process->pid().value_or(0));
    ++t_.crashes;
    w.killed = true;
    return;
  }
  const bool expected_end =
      code == 0 && (stopping_ || w.role == Role::sender || w.role == Role::receiver ||
                    (w.role == Role::producer && ctl().next_seq[w.slot].load() >= cfg_.ids_per_producer));
  if (expected_end) {
    if (w.role == Role::producer && !stopping_) w.finished = true;
    return;
  }
  ++t_.crashes;
  std::fprintf(stderr, "mproc_chaos: %s %u (pid %d) ended by itself with exit code %d in phase %s%s\n",
               role_name(w.role), w.slot, w.process->pid().value_or(0), code, phase_name(w.death_phase),
               code == kWorkerFailed ? "" : " (an uncaught exception or a crash: see above)");
}

void Supervisor::hang(Worker& w, const char* doing) {
  ++t_.hangs;
  const std::uint32_t phase = ctl().workers[w.beat].phase.load();
  std::fprintf(stderr,
               "mproc_chaos: HANG: %s %u (pid %d) made no progress for %.0f s while %s, in "
               "phase %s; killing it\n",
               role_name(w.role), w.slot, w.process->pid().value_or(0), cfg_.hang_s, doing,
               phase_name(phase));
  // Its death is booked like a kill's, so that what it may have taken with it is allowed for:
  // the hang is the failure, not what follows from ending it.
  if (slay(w)) after_death(w);
}

// The supervisor's side of the watchdog: every running worker's heartbeat must move within
// hang_s, and the survivor of a pipe pair must see its peer's death within hang_s.
void Supervisor::watch() {
  const Clock::time_point now = Clock::now();
  const auto patience = std::chrono::duration<double>(cfg_.hang_s);
  for (Worker& w : workers_) {
    if (!w.running) continue;
    if (!w.process->is_alive()) {
      on_end(w);
      continue;
    }
    const std::uint64_t beats = ctl().workers[w.beat].beats.load(std::memory_order_relaxed);
    if (beats != w.seen_beats) {
      w.seen_beats = beats;
      w.beat_at = now;
    } else if (now - w.beat_at > patience) {
      hang(w, "running");
    }
  }
  for (std::uint32_t i = 0; i < cfg_.per_role; ++i) {
    Pair& p = pairs_[i];
    if (!p.peer_died_at || now - *p.peer_died_at <= patience) continue;
    for (Worker* w : {p.sender, p.receiver}) {
      if (w->running) {
        hang(*w, w->role == Role::sender ? "its receiver was dead (no EPIPE)"
                                         : "its sender was dead (no end of stream)");
      }
    }
  }
}

// Replaces every worker that has ended (killed, hung, or crashed, which was reported), and
// starts the next generation of every pipe pair whose both sides have ended.
void Supervisor::revive() {
  for (Worker& w : workers_) {
    if (!w.running && !w.finished && pair_of(w) == nullptr) start(w);
  }
  for (std::uint32_t i = 0; i < cfg_.per_role; ++i) {
    Pair& p = pairs_[i];
    if (!p.sender->running && !p.receiver->running) settle_pair(p);
  }
}

// Kills mask hangs: a worker stuck for good is killed and replaced within a fraction of a
// second anyway. So now and then nobody is killed until every running worker has made progress
// (or ended, as the survivor of a pipe pair does); one that makes none within hang_s is hung.
// This is a poll with a deadline, not a pause: it ends as soon as everyone has moved.
void Supervisor::calm_check() {
  ++t_.calm_checks;
  std::vector<std::pair<Worker*, std::uint64_t>> waiting;
  for (Worker& w : workers_) {
    if (w.running) waiting.emplace_back(&w, ctl().workers[w.beat].beats.load());
  }
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg_.hang_s));
  while (!waiting.empty()) {
    std::erase_if(waiting, [this](const std::pair<Worker*, std::uint64_t>& e) {
      Worker& w = *e.first;
      if (!w.running) return true;
      if (!w.process->is_alive()) {
        on_end(w);
        return true;
      }
      return ctl().workers[w.beat].beats.load() != e.second;
    });
    if (Clock::now() > deadline) {
      for (auto& [w, beats] : waiting) hang(*w, "nobody was being killed");
      break;
    }
    std::this_thread::sleep_for(200us);
  }
}

// Kills a worker and records where it died.
void Supervisor::kill(Worker& w) {
  if (!slay(w)) return;
  ++t_.kills;
  ++t_.kills_in[w.death_phase];
  ++t_.kills_of[static_cast<std::size_t>(w.role)];
  after_death(w);
}

// SIGKILLs a worker and reaps it; true when it died of that signal (not when it had ended by
// itself first, which on_end() judged).
bool Supervisor::slay(Worker& w) {
  w.process->kill();
  if (!w.process->join(std::chrono::duration<double>(cfg_.hang_s))) {
    std::fprintf(stderr, "mproc_chaos: %s %u (pid %d) did not die of SIGKILL within %.0f s\n",
                 role_name(w.role), w.slot, w.process->pid().value_or(0), cfg_.hang_s);
    ++t_.hangs;
    return false;
  }
  w.killed = w.process->exitcode() == -SIGKILL;
  on_end(w);
  return w.killed;
}

// Books what a worker killed in its phase may have cost, by the headers' rules.
void Supervisor::after_death(Worker& w) {
  if (Pair* p = pair_of(w); p != nullptr && !p->peer_died_at) p->peer_died_at = Clock::now();
  // What its queue operation covered (published before the phase, so final like it).
  const std::uint64_t covers = ctl().workers[w.beat].covers.load();
  const bool many = ctl().workers[w.beat].many.load() != 0;
  if (w.role == Role::producer && w.death_phase == kInPut) {
    ++t_.producer_kills_in_put;
    t_.put_allowance += covers;
    t_.kills_in_put_many += many;
    // next_seq was advanced past this operation's ids before `covers` and the phase were stored,
    // and no other process moves it while this slot's producer is dead.
    const std::uint64_t end = ctl().next_seq[w.slot].load();
    cut_puts_[w.slot].push_back({end - std::min(end, covers), covers});
  }
  if (w.role == Role::consumer) {
    if (w.death_phase == kInGet) {
      ++t_.consumer_kills_in_get;
      t_.get_allowance += covers;
      t_.kills_in_get_many += many;
    }
    if (w.death_phase == kInGet || w.death_phase == kProcessing) {
      ++t_.consumer_kills_taking;
      t_.taking_allowance += covers;
    }
  }
  const bool in_lock_op =
      w.death_phase == kInAcquire || w.death_phase == kHolding || w.death_phase == kInRelease;
  if (w.role == Role::locker) {
    if (w.death_phase == kHolding && ++t_.locker_kills_holding == 1) {  // held it for sure
      acquires_at_plant_ = lock_acquires();
    }
    if (in_lock_op) ++t_.locker_kills_in_lock;  // may have held it
  }
  if (w.role == Role::sem_user) {
    // Its bit says it held a count: give the count back, as a handler would. Without the bit,
    // between acquire() and release() the count may or may not have been held (the bit is set
    // just after acquire() returns and cleared just before release()): that count may be lost,
    // as semaphore.hpp says.
    const std::uint64_t bit = std::uint64_t{1} << w.slot;
    if ((ctl().sem_holders.fetch_and(~bit) & bit) != 0) {
      world_.semaphore.release();
      ++t_.sem_returned;
    } else if (in_lock_op) {
      ++t_.sem_ambiguous_kills;
    }
  }
}

// With every semaphore user dead, nobody holds a count: the count must be its initial value,
// less what died with users killed inside acquire() or release() since the last audit (a count
// held for sure was given back by after_death()). Checks that, refills the lost counts and
// restarts the users.
void Supervisor::audit_semaphore() {
  for (Worker& w : workers_) {
    if (w.role == Role::sem_user && w.running) kill(w);
  }
  for (const Worker& w : workers_) {
    if (w.role == Role::sem_user && w.running) return;  // survived SIGKILL: reported already
  }
  ++t_.sem_audits;
  const std::uint32_t value = world_.semaphore.get_value();
  if (value > kSemaphoreCount) {
    ++t_.sem_overlost;
    std::fprintf(stderr, "mproc_chaos: Semaphore: count %u above its initial %u\n", value, kSemaphoreCount);
  } else {
    const std::uint64_t lost = kSemaphoreCount - value;
    if (lost > t_.sem_ambiguous_kills) {
      ++t_.sem_overlost;
      std::fprintf(stderr,
                   "mproc_chaos: Semaphore: %llu counts lost, but only %llu users died inside "
                   "acquire or release\n",
                   static_cast<unsigned long long>(lost),
                   static_cast<unsigned long long>(t_.sem_ambiguous_kills));
    }
    t_.sem_lost += lost;
    if (lost != 0) world_.semaphore.release(static_cast<std::uint32_t>(lost));
  }
  t_.sem_ambiguous_kills = 0;
  if (stopping_) return;
  for (Worker& w : workers_) {
    if (w.role == Role::sem_user) start(w);
  }
}

// Half the kills are aimed: wait (briefly) until the victim is inside the operation of interest.
void Supervisor::aim(Worker& w) {
  std::uint32_t want = kIdle;
  Clock::duration patience = 2ms;
  switch (w.role) {
    case Role::producer: want = kInPut; break;
    case Role::consumer: want = kInGet; break;
    case Role::sender: want = kInSend; break;
    case Role::receiver: want = kInRecv; break;
    case Role::locker:
    case Role::sem_user: want = rng_() % 2 == 0 ? kInAcquire : kHolding; break;
  }
  // --sabotage hide-owner-death (see pick_victim()): holding, with its pid in the guarded state.
  const bool planting = planting_owner_death();
  if (planting) {
    want = kHolding;
    patience = 1s;
  }
  const std::atomic<std::uint32_t>& phase = ctl().workers[w.beat].phase;
  const pid_t pid = w.process->pid().value_or(0);
  auto there = [&] {
    return phase.load(std::memory_order_relaxed) == want &&
           (!planting || ctl().guarded[0].holder == pid || ctl().guarded[1].holder == pid);
  };
  const Clock::time_point give_up = Clock::now() + patience;
  for (std::uint32_t spins = 0; !there(); ++spins) {
    if (spins % 64 == 0 && Clock::now() > give_up) return;
  }
}

Worker* Supervisor::pick_victim() {
  std::vector<Worker*> live;
  for (Worker& w : workers_) {
    if (!w.running) continue;
    // The survivor of a pair is left alone: its test is to notice the death by itself.
    if (const Pair* p = pair_of(w); p != nullptr && p->peer_died_at) continue;
    // --sabotage hide-owner-death shows something only once a holder died holding a lock: make
    // sure of one, so that a short run cannot miss it.
    if (planting_owner_death() && w.role != Role::locker) continue;
    live.push_back(&w);
  }
  if (live.empty()) return nullptr;
  return live[rng_() % live.size()];
}

// Both sides of a generation have ended: account for its messages, then start the next one.
void Supervisor::settle_pair(Pair& p) {
  const PipeSlot& s = ctl().pipes[p.sender->slot];
  // A receiver counts only messages of its pair that are not duplicates, so "received" is at
  // most "attempted" unless something was delivered that was never sent.
  const std::uint64_t attempted = s.attempted.load(), returned = s.returned.load(),
                      received = s.delivered.load();
  const bool receiver_killed = p.receiver->killed, sender_killed = p.sender->killed;
  t_.pipe_messages += attempted;
  t_.pipe_delivered += std::min(received, attempted);
  if (sender_killed) ++t_.sender_kills;
  if (receiver_killed) ++t_.receiver_kills;
  const auto gen = static_cast<unsigned>(p.generation);
  if (received > attempted) {
    ++t_.pipe_unexplained;
    std::fprintf(stderr, "mproc_chaos: pipe %u generation %u: %llu received, only %llu sent\n",
                 p.sender->slot, gen, static_cast<unsigned long long>(received),
                 static_cast<unsigned long long>(attempted));
  }
  if (receiver_killed) {
    // What the receiver had not taken is undeliverable; a send cut short by a kill is lost too.
    t_.pipe_receiver_killed_lost += returned > received ? returned - received : 0;
    t_.pipe_cut_short_lost +=
        attempted > std::max(returned, received) ? attempted - std::max(returned, received) : 0;
  } else {
    if (s.receiver_end.load() != kSawEof) {
      ++t_.spurious_ends;
      std::fprintf(stderr,
                   "mproc_chaos: pipe %u generation %u: the receiver ended without end "
                   "of stream\n",
                   p.sender->slot, gen);
    }
    if (received < returned) {
      t_.pipe_unexplained += returned - received;
      std::fprintf(stderr,
                   "mproc_chaos: pipe %u generation %u: %llu sends returned, only %llu received "
                   "by a receiver that lived (sender %s)\n",
                   p.sender->slot, gen, static_cast<unsigned long long>(returned),
                   static_cast<unsigned long long>(received), sender_killed ? "killed" : "stopped");
    } else if (attempted > received) {
      t_.pipe_cut_short_lost += attempted - received;  // a send that never returned
    }
  }
  if (!sender_killed) {
    const std::uint32_t end = s.sender_end.load();
    if (end == kSawEpipe && !receiver_killed) {
      ++t_.spurious_ends;
      std::fprintf(stderr,
                   "mproc_chaos: pipe %u generation %u: EPIPE although the receiver "
                   "lived\n",
                   p.sender->slot, gen);
    }
    if (end == kStopped && !stopping_) {
      ++t_.spurious_ends;
      std::fprintf(stderr,
                   "mproc_chaos: pipe %u generation %u: the sender stopped before the "
                   "run ended\n",
                   p.sender->slot, gen);
    }
  }
  if (!stopping_) start_pair(p);
}

// Waits for a worker that was told to finish; a hang if it does not.
bool Supervisor::wait_end(Worker& w, const char* doing) {
  if (!w.running) return true;
  if (!w.process->join(std::chrono::duration<double>(cfg_.hang_s))) {
    hang(w, doing);
    return false;
  }
  on_end(w);
  return true;
}

void Supervisor::stop_all() {
  stopping_ = true;
  ctl().stop.store(1);
  for (Worker& w : workers_) {
    if (w.role == Role::locker) wait_end(w, "stopping (it should return after its lock update)");
    if (w.role == Role::sem_user) wait_end(w, "stopping");
  }
  // Senders return and their end closes; receivers drain and see end of stream.
  for (std::uint32_t i = 0; i < cfg_.per_role; ++i) {
    Pair& p = pairs_[i];
    wait_end(*p.sender, "stopping (a sender returns after its current send)");
    wait_end(*p.receiver, "draining its pipe after its sender stopped");
    settle_pair(p);
  }
  for (Worker& w : workers_) {
    if (w.role == Role::producer) wait_end(w, "stopping (a producer returns after its current put)");
  }
  world_.queue.close();
  for (Worker& w : workers_) {
    if (w.role == Role::consumer) wait_end(w, "draining the closed queue");
  }
}

int Supervisor::run() {
  add_workers();
  g_stage = 0;
  for (Worker& w : workers_) {
    if (w.role != Role::sender && w.role != Role::receiver) start(w);
  }
  for (std::uint32_t i = 0; i < cfg_.per_role; ++i) start_pair(pairs_[i]);

  g_stage = 1;
  std::uint64_t kills_to_calm = cfg_.calm_every != 0 ? cfg_.calm_every : 20;
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point end =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg_.duration_s));
  for (;;) {
    // Past --duration, the run goes on until the work is done, killing only as far as the
    // kills still wanted (a slow machine must not make a short run look unexercised, nor a
    // sabotage look undetected); a hang or a crash meanwhile ends it, failed.
    const bool overtime = Clock::now() >= end;
    if (overtime && (work_done() || t_.hangs + t_.crashes != 0)) break;
    // Load shaping, not synchronisation: the kill lands wherever the victim happens to be. One
    // pause in four is short, to catch replacements while they start up.
    const std::uint64_t pause_us = rng_() % 4 == 0 ? rng_() % 200 : rng_() % 8000;
    std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
    watch();
    revive();
    if (overtime && t_.kills >= kMinKills && !planting_owner_death()) continue;
    Worker* victim = pick_victim();
    if (victim == nullptr) continue;
    if (rng_() % 2 == 0 || planting_owner_death()) aim(*victim);
    kill(*victim);
    // Counts lost inside acquire/release would starve the semaphore users in a long run: now
    // and then, audit and refill.
    if (victim->role == Role::sem_user && t_.sem_ambiguous_kills != 0 && rng_() % 4 == 0) {
      audit_semaphore();
    }
    revive();
    if (--kills_to_calm == 0) {
      calm_check();
      kills_to_calm = cfg_.calm_every != 0 ? cfg_.calm_every : 20 + rng_() % 60;
    }
  }
  const double killing_s = std::chrono::duration<double>(Clock::now() - t0).count();

  g_stage = 2;
  stop_all();
  g_stage = 3;
  return check_and_report(killing_s);
}

// Whether the run did the least it must, in work: kills, messages through the queue and the
// pipes, acquires of the locks and the semaphore; and with --sabotage, enough of the planted
// fault for the checks to be bound to see it: more dropped messages than every allowance for
// loss together (lose), the fault planted kMinPlanted times (tear, duplicate, pipe-gap), a
// holder killed holding and locks acquired since (hide-owner-death), a hang seen (hang: only a
// check that finds the hung worker alive sees it, and a kill may get there first).
bool Supervisor::work_done() {
  Control& c = ctl();
  if (t_.kills < kMinKills || c.queue_received.load() < kMinMessages ||
      c.pipe_received.load() < kMinMessages || lock_acquires() < kMinAcquires ||
      c.sem_acquires.load() < kMinAcquires) {
    return false;
  }
  switch (cfg_.sabotage) {
    case Sabotage::none: return true;
    case Sabotage::lose: return c.planted.load() > t_.get_allowance + t_.put_allowance;
    case Sabotage::duplicate:
    case Sabotage::tear:
    case Sabotage::pipe_gap: return c.planted.load() >= kMinPlanted;
    case Sabotage::hide_owner_death:
      return t_.locker_kills_holding != 0 && lock_acquires() >= acquires_at_plant_ + kMinAcquires;
    case Sabotage::hang: return t_.hangs != 0;
  }
  return true;
}

}  // namespace mproc_chaos
