#pragma once
// A side of a ring: the producers' words or the consumers', and how one operation takes it
// (docs/design/queue.md, "Biased sides", "Contention: hand-over instead of revocation", "Waiting
// for the owner"). Entering and leaving are inline here (every put and get runs them); the slow
// paths — the lock, the bias grant, its revocation and hand-over, crash repair — are in side.cpp.
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/ring.hpp"
#include "os/futex.hpp"
#include "os/sys.hpp"
#include "ring/layout.hpp"

namespace mproc::detail {

/// One side of a ring, as a handle of two words (passed by value, in registers). The choice
/// between the producers' words and the consumers' is made here, and only here.
class Side {
 public:
  static Side producers(const RingState& s) noexcept { return Side(s, true); }
  static Side consumers(const RingState& s) noexcept { return Side(s, false); }

  bool is_producers() const noexcept { return producers_; }
  const RingState& state() const noexcept { return *s_; }
  RingControl& ring() const noexcept { return *s_->ctl; }

  pthread_mutex_t& mutex() const noexcept { return producers_ ? ring().put_mutex : ring().get_mutex; }
  /// 0, or the index + 1 of the slot whose thread owns the side without the mutex, with the
  /// kBias* flags (layout.hpp).
  std::atomic<std::uint32_t>& holder() const noexcept {
    return producers_ ? ring().put_holder : ring().get_holder;
  }
  BiasSlot* slots() const noexcept { return producers_ ? ring().put_slots : ring().get_slots; }
  /// The slot a holder word names. The word lies in shared memory: whatever it says, the index
  /// stays inside the slot array.
  BiasSlot& slot_named_by(std::uint32_t holder_word) const noexcept {
    return slots()[((holder_word & 0xFF) - 1) % kBiasSlots];
  }
  std::uint32_t& streak() const noexcept { return producers_ ? ring().put_streak : ring().get_streak; }
  std::uint32_t& streak_tid() const noexcept {
    return producers_ ? ring().put_streak_tid : ring().get_streak_tid;
  }
  std::uint32_t& threshold() const noexcept {
    return producers_ ? ring().put_threshold : ring().get_threshold;
  }
  /// Set by the side's owner while it sleeps for room (data).
  std::atomic<std::uint32_t>& waiting() const noexcept {
    return producers_ ? ring().put_waiting : ring().get_waiting;
  }
  /// The futex word the side's sleepers sleep on, bumped by the other side to wake them.
  std::atomic<std::uint32_t>& wake_seq() const noexcept {
    return producers_ ? ring().space_seq : ring().data_seq;
  }
  /// The side's copy of the other side's commit word, and that word.
  Word& cached_other() const noexcept { return producers_ ? ring().cached_tail : ring().cached_head; }
  std::atomic<Word>& other_commit() const noexcept { return producers_ ? ring().tail : ring().head; }
  /// Index into the stats arrays: [0] producers, [1] consumers.
  std::size_t index() const noexcept { return producers_ ? 0 : 1; }
  std::atomic<std::uint64_t>& abandoned() const noexcept {
    return producers_ ? ring().abandoned_puts : ring().abandoned_gets;
  }

 private:
  Side(const RingState& s, bool producers) noexcept : s_(&s), producers_(producers) {}
  const RingState* s_;
  bool producers_;
};

/// How one operation holds its side: not at all (its deadline passed first), by the side's
/// mutex, or under the side's bias, through the slot whose index + 1 the value is (the holder
/// word's value while the bias is this thread's).
struct HeldBy {
  static constexpr std::uint32_t kNothing = 0;
  static constexpr std::uint32_t kMutex = 0x10000;
  std::uint32_t value;

  bool nothing() const noexcept { return value == kNothing; }
  bool mutex() const noexcept { return value == kMutex; }
};

/// A call's wait for the side's owner (an operation in flight on the same side): until the call's
/// own deadline and, past it, while that owner is not asleep for room (data), up to
/// kOwnerPatience from the first time the call had to wait — so a call that never waits for an
/// owner reads no clock for it (queue.md, "Waiting for the owner: deadlines and try_").
inline constexpr std::chrono::milliseconds kOwnerPatience{100};
class OwnerWait {
 public:
  explicit OwnerWait(Clock::time_point deadline) noexcept : deadline_(deadline) {}
  Clock::time_point deadline() const noexcept { return deadline_; }
  /// Whether to stop waiting for the owner now; the first call starts the patience.
  bool stop(Side side, Clock::time_point now) noexcept;
  /// The end of the next sleep (after stop() said no): the deadline while it is ahead, then
  /// the patience; never more than a millisecond away.
  Clock::time_point slice_end(Clock::time_point now) const noexcept;

 private:
  Clock::time_point deadline_;
  Clock::time_point patient_ = Clock::time_point::min();  // min: not started
};

/// Takes the side's mutex: false if the wait for its owner ended first (see OwnerWait).
/// Repairs the side if the mutex's previous owner died in it.
bool lock_side(Side side, OwnerWait& wait);

enum class Revoked : std::uint8_t { no_bias, handed_over, taken, timed_out };
/// Under the side's mutex: takes the bias back from its owner. `may_ask`: ask a live, streaming
/// owner to hand the side over at the end of its lease first.
Revoked revoke_bias(Side side, OwnerWait& wait, bool may_ask);

HeldBy enter_side_slow(Side side, Clock::time_point deadline);
/// The owner, between two operations, with a hand-over asked for.
void answer_hand_over(Side side, std::uint32_t held) noexcept;
/// Whether the thread that holds the side (its biased owner inside an operation, or else the
/// holder of its mutex) is alive.
bool side_holder_alive(Side side) noexcept;

/// The fast path: this thread owns the side's bias. Announce the operation in its own slot, then
/// check that the bias is still ours, with no fence between the store and the load: a revoker
/// stores the holder word and then runs membarrier(), which puts a full barrier on this CPU, so
/// either this load sees the revocation or the revoker sees `busy` (queue.md, "Biased sides").
inline HeldBy enter_side(Side side, Clock::time_point deadline) {
  std::atomic<std::uint32_t>& holder = side.holder();
  const std::uint32_t h = holder.load(std::memory_order_relaxed) & ~kBiasWanted;
  if (h - 1 < kBiasSlots) {
    BiasSlot& slot = side.slots()[h - 1];
    if (slot.token.load(std::memory_order_relaxed) == sys::thread_token() &&
        slot.busy.load(std::memory_order_relaxed) == 0) {
      slot.busy.store(1, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the compiler keeps the order too
      if ((holder.load(std::memory_order_acquire) & ~kBiasWanted) == h) return {h};
      slot.busy.store(0, std::memory_order_release);
    }
  }
  return enter_side_slow(side, deadline);
}

inline void leave_side(Side side, HeldBy held) noexcept {
  if (held.mutex()) {
    ::pthread_mutex_unlock(&side.mutex());
    return;
  }
  BiasSlot& slot = side.slots()[held.value - 1];
  slot.busy.store(0, std::memory_order_release);
  // A revoker changed the holder word and may be asleep until this operation ends. (If this
  // load ran before its store, it finds busy clear itself: it re-checks every millisecond.)
  const std::uint32_t now = side.holder().load(std::memory_order_relaxed);
  if (now != held.value) {
    if (now == (held.value | kBiasWanted)) {
      answer_hand_over(side, held.value);
    } else {
      sys::futex_wake(&slot.busy, 1);
    }
  }
}

/// Leaves the side at scope exit (an exception included).
struct SideGuard {
  Side side;
  HeldBy held;
  ~SideGuard() { leave_side(side, held); }
};

/// Releases a side's mutex at scope exit (an exception included), unless keep() hands it on to
/// the operation that follows.
class MutexGuard {
 public:
  explicit MutexGuard(pthread_mutex_t* m) noexcept : m_(m) {}
  ~MutexGuard() {
    if (m_ != nullptr) ::pthread_mutex_unlock(m_);
  }
  MutexGuard(const MutexGuard&) = delete;
  MutexGuard& operator=(const MutexGuard&) = delete;
  void keep() noexcept { m_ = nullptr; }

 private:
  pthread_mutex_t* m_;
};

}  // namespace mproc::detail
