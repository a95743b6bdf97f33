// Taking a side when the fast path (side.hpp) cannot: the robust lock, the bias grant, its
// revocation and hand-over, and repair after a crash. Read docs/design/queue.md, "Biased sides",
// "Contention: hand-over instead of revocation" and "Waiting for the owner" first.
#include "ring/side.hpp"

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>

#include "mproc/error.hpp"
#include "os/robust_mutex.hpp"
#include "os/wait.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint32_t kFirstBiasStreak = 64;      // operations in a row that earn the bias
constexpr std::uint32_t kMaxBiasStreak = 1u << 16;  // after many revocations of live owners

// Hand-over (queue.md, "Contention: hand-over instead of revocation"). An owner asked for its
// side keeps it for kLeaseNs if its operations come back to back (on average at most
// kDenseNs apart, judged over its first 8 operations after the request and then every 64), and
// declines the bias at once otherwise. A sanitizer build's operations are some ten times slower.
constexpr std::uint64_t kLeaseNs = 500'000;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t kDenseNs = 3'000;
#else
constexpr std::uint64_t kDenseNs = 300;
#endif

std::uint64_t now_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

bool alive(const BiasSlot& slot) noexcept {
  return sys::process_alive(static_cast<pid_t>(slot.pid), slot.start_ticks);
}

// The previous owner of a side died inside an operation. Everything it committed is complete
// (a single store publishes records); everything else lies beyond the commit word and is
// ignored. Only its waiting flag and the side's cached copy of the other word can be stale.
void repair_side(Side side) noexcept {
  side.waiting().store(0, std::memory_order_relaxed);
  side.cached_other() = side.other_commit().load(std::memory_order_acquire);
  side.abandoned().fetch_add(1, std::memory_order_relaxed);
}

// Whether the side's owner is asleep inside its operation, waiting for room (a producer) or for
// data that is not there (a consumer): a call past its deadline then answers full (empty) at
// once instead of waiting for the owner. A consumer asleep while records wait is about to wake.
bool owner_sleeps(Side side) noexcept {
  const RingControl& c = side.ring();
  if (side.is_producers()) return c.put_waiting.load(std::memory_order_acquire) != 0;
  return c.get_waiting.load(std::memory_order_acquire) != 0 &&
         pos_of(c.head.load(std::memory_order_acquire)) == pos_of(c.tail.load(std::memory_order_acquire));
}

// A live owner lost the side (or declined it): ask for a longer run before the next grant, so
// that producers (consumers) that take turns settle on the lock instead of revoking each other.
void count_live_revocation(Side side) noexcept {
  const std::uint32_t t = side.threshold() == 0 ? kFirstBiasStreak : side.threshold();
  side.threshold() = std::min(t * 2, kMaxBiasStreak);
  side.ring().bias_revocations[side.index()].fetch_add(1, std::memory_order_relaxed);
}

// Our own bias, and we are on the slow path: either it was revoked while we were away, or this
// is a put (get) called from inside one of our own (an encoder or a decoder of this very
// queue). The lock would have refused that as well.
Revoked take_back_own_bias(Side side, const BiasSlot& slot) {
  if (slot.busy.load(std::memory_order_relaxed) != 0) {
    throw Error(
        EDEADLK,
        std::string("cannot ") + (side.is_producers() ? "put into a " : "get from a ") + side.state().what,
        "(called again from inside one of this thread's own operations on it)");
  }
  side.holder().store(0, std::memory_order_relaxed);
  return Revoked::taken;
}

enum class Asked : std::uint8_t {
  handed_over,     // the owner gave the side to us at the end of its lease
  declined,        // the owner gave the bias up: the side is ours, under the mutex
  timed_out,       // our wait for the owner ended first
  owner_idle,      // no operation and none in flight: revoke it (h now carries kBiasWanted)
  answered_other,  // the owner answered an earlier asker: look again, asking
  changed,         // the holder word changed otherwise: look again, revoking
};

// Asks the owner (kBiasWanted) for the side and waits for its answer while it is active. It
// answers between two of its operations: it hands the side over at the end of its lease (0), or
// declines the bias at once (kBiasDeclined). An owner that neither makes an operation nor is
// inside one within a short spin (and a few yields, in case it waits for this very core) is
// idle, or dead.
Asked ask_for_hand_over(Side side, BiasSlot& slot, std::uint32_t& h, OwnerWait& wait) {
  std::atomic<std::uint32_t>& holder = side.holder();
  if ((h & kBiasWanted) == 0) {
    slot.wanted_ops.store(0, std::memory_order_relaxed);
    slot.wanted_since_ns.store(0, std::memory_order_relaxed);
    if (!holder.compare_exchange_strong(h, h | kBiasWanted, std::memory_order_acq_rel)) {
      return Asked::answered_other;
    }
    h |= kBiasWanted;
  }
  std::uint32_t last_ops = slot.wanted_ops.load(std::memory_order_relaxed);
  bool active = false;
  for (sys::Spin probe(true); !active && probe.next();) {
    active = slot.wanted_ops.load(std::memory_order_relaxed) != last_ops ||
             slot.busy.load(std::memory_order_relaxed) != 0 || holder.load(std::memory_order_relaxed) != h;
  }
  while (active) {
    std::uint32_t now_h = holder.load(std::memory_order_acquire);
    if (now_h == 0) return Asked::handed_over;
    if (now_h == kBiasDeclined) {
      holder.store(0, std::memory_order_relaxed);
      count_live_revocation(side);
      return Asked::declined;
    }
    if (now_h != h) return Asked::changed;  // not the owner's answer
    const Clock::time_point now = Clock::now();
    if (wait.stop(side, now)) return Asked::timed_out;
    sys::futex_wait(&holder, h, wait.slice_end(now));
    now_h = holder.load(std::memory_order_acquire);
    if (now_h != h) continue;  // answered
    const std::uint32_t ops = slot.wanted_ops.load(std::memory_order_relaxed);
    active = ops != last_ops;  // else idle for a millisecond, or asleep inside an operation
    last_ops = ops;
  }
  return Asked::owner_idle;
}

// With the holder word marked revoked: waits for the owner's operation in flight to end (if its
// process died in it, repairs after it), then clears the word.
Revoked wait_out_owner(Side side, BiasSlot& slot, OwnerWait& wait) {
  if (!sys::membarrier_global()) {
    throw Error(errno,
                std::string("cannot take the ") + (side.is_producers() ? "producer" : "consumer") +
                    " side of a " + side.state().what + " back from the thread that had it to itself",
                "(membarrier failed)");
  }
  // The owner's operation in flight normally ends within nanoseconds: even a call that may not
  // wait for room or data (a try_) spins for it.
  sys::Spin spin(sys::may_wait(wait.deadline()) || !owner_sleeps(side));
  bool died = false;
  while (slot.busy.load(std::memory_order_acquire) != 0) {
    if (spin.next()) continue;
    if (!alive(slot)) {
      died = true;
      break;
    }
    const Clock::time_point now = Clock::now();
    if (wait.stop(side, now)) return Revoked::timed_out;
    sys::futex_wait(&slot.busy, 1, wait.slice_end(now));
  }
  if (died) {
    repair_side(side);
    slot.busy.store(0, std::memory_order_relaxed);
    slot.token.store(0, std::memory_order_relaxed);  // its thread is gone: a free slot
    side.ring().bias_revocations[side.index()].fetch_add(1, std::memory_order_relaxed);
  } else if (alive(slot)) {
    count_live_revocation(side);
  } else {
    side.ring().bias_revocations[side.index()].fetch_add(1, std::memory_order_relaxed);
  }
  side.holder().store(0, std::memory_order_release);
  return Revoked::taken;
}

// The slot for this thread's bias: its own, else a free one, else one whose process is gone. A
// slot stays with its thread while that thread's process lives: a thread that lost the bias may
// still be about to write `busy` (between its two loads of the holder word).
BiasSlot* pick_slot(Side side, std::uint64_t token) noexcept {
  BiasSlot* slots = side.slots();
  for (std::uint32_t i = 0; i < kBiasSlots; ++i) {
    if (slots[i].token.load(std::memory_order_relaxed) == token) return &slots[i];
  }
  for (std::uint32_t i = 0; i < kBiasSlots; ++i) {
    if (slots[i].token.load(std::memory_order_relaxed) == 0) return &slots[i];
  }
  for (std::uint32_t i = 0; i < kBiasSlots; ++i) {
    if (!alive(slots[i])) return &slots[i];
  }
  return nullptr;
}

// Whether this operation completes a streak of operations in a row by this thread long enough
// to earn the bias (under the side's mutex).
bool streak_earns_bias(Side side) noexcept {
  const auto tid = static_cast<std::uint32_t>(sys::current_tid());
  if (side.streak_tid() != tid) {
    side.streak_tid() = tid;
    side.streak() = 1;
    return false;
  }
  return ++side.streak() >= (side.threshold() == 0 ? kFirstBiasStreak : side.threshold());
}

// Under the side's mutex, with no bias set: gives the side to this thread if it has had it
// alone for a while (or `at_once`, handed over). Returns its slot's index + 1 with `busy`
// already set (the operation that earned the bias runs under it), or 0.
std::uint32_t grant_bias(Side side, bool at_once) {
  if (!at_once && !streak_earns_bias(side)) return 0;
  side.streak() = 0;
  if (!sys::membarrier_registered()) return 0;  // nobody could take it back from us
  const std::uint64_t token = sys::thread_token();
  BiasSlot* pick = pick_slot(side, token);
  if (pick == nullptr) return 0;
  if (pick->token.load(std::memory_order_relaxed) != token) {
    const pid_t self = ::getpid();
    pick->pid = static_cast<std::uint32_t>(self);
    pick->start_ticks = sys::process_start_ticks(self);
    pick->token.store(token, std::memory_order_relaxed);
  }
  pick->busy.store(1, std::memory_order_relaxed);
  const auto h = static_cast<std::uint32_t>(pick - side.slots()) + 1;
  side.holder().store(h, std::memory_order_release);
  side.ring().bias_grants[side.index()].fetch_add(1, std::memory_order_relaxed);
  return h;
}

}  // namespace

// Past its deadline (a try_ call, a zero timeout) a call still waits for an owner busy inside an
// operation, up to kOwnerPatience, so that "false" means full (or empty), not "somebody else was
// putting" (queue.hpp, "What non-blocking costs").
bool OwnerWait::stop(Side side, Clock::time_point now) noexcept {
  if (deadline_ == Clock::time_point::max()) return false;
  if (patient_ == Clock::time_point::min()) patient_ = std::max(deadline_, now + kOwnerPatience);
  return now >= patient_ || (now >= deadline_ && owner_sleeps(side));
}

Clock::time_point OwnerWait::slice_end(Clock::time_point now) const noexcept {
  return std::min(now < deadline_ ? deadline_ : patient_, now + std::chrono::milliseconds(1));
}

// Pauses before the yields when a blocking call finds the side's mutex held: about 1 us,
// several operations' worth.
constexpr int kBlockingLockPauses = 32;

bool lock_side(Side side, OwnerWait& wait) {
  const Clock::time_point deadline = wait.deadline();
  pthread_mutex_t* m = &side.mutex();
  int rc = ::pthread_mutex_trylock(m);
  if (rc == EBUSY) {
    // Another thread is inside an operation on this side, or asleep in one. Spin for the usual
    // case (an operation of some nanoseconds), then sleep on the lock: a blocking call until it
    // is released, a call with a deadline in short slices, looking between them whether the
    // holder sleeps for room (data). A blocking call spins too, if briefly, unless the holder
    // sleeps: two streaming producers on a crowded CPU otherwise sleep and wake each other at
    // every operation, a lock convoy (queue.md, "Spinning on a crowded machine").
    const bool blocking = deadline == Clock::time_point::max();
    const bool spin = (!blocking && sys::may_wait(deadline)) || !owner_sleeps(side);
    for (sys::Spin s(spin, blocking ? kBlockingLockPauses : sys::Spin::kPauses); rc == EBUSY && s.next();) {
      rc = ::pthread_mutex_trylock(m);
    }
    if (blocking && rc == EBUSY) rc = sys::lock_robust_mutex(m, deadline);
    while (!blocking && (rc == EBUSY || rc == ETIMEDOUT)) {
      const Clock::time_point now = Clock::now();
      if (wait.stop(side, now)) {
        rc = ETIMEDOUT;
        break;
      }
      rc = sys::lock_robust_mutex(m, wait.slice_end(now));
    }
  }
  if (rc == 0) return true;
  if (rc == ETIMEDOUT) return false;
  if (rc != EOWNERDEAD) throw Error(rc, "cannot lock", side.state().what);
  repair_side(side);
  ::pthread_mutex_consistent(m);
  return true;
}

HeldBy enter_side_slow(Side side, Clock::time_point deadline) {
  OwnerWait wait(deadline);
  if (!lock_side(side, wait)) return {HeldBy::kNothing};
  MutexGuard locked(&side.mutex());
  const Revoked r = revoke_bias(side, wait, sys::may_wait(deadline));
  if (r == Revoked::timed_out) return {HeldBy::kNothing};
  if (r == Revoked::handed_over)
    side.ring().bias_handovers[side.index()].fetch_add(1, std::memory_order_relaxed);
  const std::uint32_t granted = grant_bias(side, r == Revoked::handed_over);
  if (granted != 0) return {granted};  // the operation goes on under the bias, without the mutex
  locked.keep();
  return {HeldBy::kMutex};
}

// After its lease the owner gives the side up to the asker (who holds the mutex and sleeps on
// the holder word).
void answer_hand_over(Side side, std::uint32_t held) noexcept {
  BiasSlot& slot = side.slots()[held - 1];
  const std::uint32_t n = slot.wanted_ops.load(std::memory_order_relaxed) + 1;
  slot.wanted_ops.store(n, std::memory_order_relaxed);
  if (n != 1 && (n < 9 || (n - 9) % 64 != 0)) return;
  const std::uint64_t now = now_ns();
  if (n == 1) {
    slot.wanted_since_ns.store(now, std::memory_order_relaxed);
    return;
  }
  const std::uint64_t since = slot.wanted_since_ns.load(std::memory_order_relaxed);
  const bool dense = now - since <= std::uint64_t{n - 1} * kDenseNs;
  if (dense && now - since < kLeaseNs) return;
  // Lease over: hand the side to the asker. Or not streaming: give the bias up altogether, and
  // the asker and this thread share the side through the mutex, in parallel.
  std::uint32_t expected = held | kBiasWanted;
  if (side.holder().compare_exchange_strong(expected, dense ? 0 : kBiasDeclined, std::memory_order_acq_rel)) {
    sys::futex_wake(&side.holder(), INT_MAX);
  } else {
    sys::futex_wake(&slot.busy, 1);  // the asker stopped waiting and revokes
  }
}

// Under the side's mutex: takes the bias back from its owner, waiting for an operation it has
// in flight (if its process died in it, repairing after it). A live owner that is streaming is
// first asked to hand the side over at the end of its lease (`may_ask`). timed_out if
// `deadline` passed first: the bias then stays marked revoked (or wanted), and the next process
// to take the mutex waits again.
Revoked revoke_bias(Side side, OwnerWait& wait, bool may_ask) {
  std::atomic<std::uint32_t>& holder = side.holder();
  // A pass starts over when the holder word changed under it (the owner answered an asker): a
  // loop, not a call, so that no process writing the word can make the stack grow.
  for (;;) {
    std::uint32_t h = holder.load(std::memory_order_acquire);
    if (h == 0) return Revoked::no_bias;
    if ((h & 0xFF) == 0) {  // kBiasDeclined, answering an asker that gave up waiting
      holder.store(0, std::memory_order_relaxed);
      return Revoked::no_bias;
    }
    BiasSlot& slot = side.slot_named_by(h);
    if (slot.token.load(std::memory_order_relaxed) == sys::thread_token())
      return take_back_own_bias(side, slot);
    if ((h & kBiasRevoked) == 0) {
      if (may_ask) {
        switch (ask_for_hand_over(side, slot, h, wait)) {
          case Asked::handed_over: return Revoked::handed_over;
          case Asked::declined: return Revoked::taken;
          case Asked::timed_out: return Revoked::timed_out;
          case Asked::answered_other: continue;  // ask again
          case Asked::changed: may_ask = false; continue;
          case Asked::owner_idle: break;
        }
      }
      if (!holder.compare_exchange_strong(h, (h & 0xFF) | kBiasRevoked, std::memory_order_acq_rel)) {
        continue;  // the owner answered meanwhile
      }
    }
    return wait_out_owner(side, slot, wait);
  }
}

// A waiting flag is set by the side's owner while it sleeps, and a process killed asleep leaves
// the flag set until the next operation on the side repairs it: `mproc ls` must not report such
// a sleeper as blocked.
bool side_holder_alive(Side side) noexcept {
  const std::uint32_t h = side.holder().load(std::memory_order_acquire) & 0xFF;
  if (h - 1 < kBiasSlots) {
    const BiasSlot& slot = side.slots()[h - 1];
    if (slot.busy.load(std::memory_order_acquire) != 0) return alive(slot);
  }
  // The mutex's owner thread, from its lock word (0 when free, and after the kernel cleaned up
  // after a dead owner); /proc/TID exists for every thread, not only leaders.
  const pid_t tid = sys::robust_mutex_owner(&side.mutex());
  return tid != 0 && sys::process_alive(tid, 0);
}

}  // namespace mproc::detail
