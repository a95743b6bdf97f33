// The shared ring: two robust locks, two commit words, futex or socket wake-ups.
// Read docs/design/queue.md first: this file implements its invariants by number.
#include "mproc/detail/ring.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <atomic>
#include <algorithm>
#include <bit>
#include <chrono>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <new>
#include <ctime>
#include <string>

#include "os/futex.hpp"
#include "mproc/error.hpp"
#include "os/robust_mutex.hpp"
#include "ring/layout.hpp"
#include "shm/segment.hpp"
#include "os/sys.hpp"
#include "os/wait.hpp"

namespace mproc::detail {

namespace {

constexpr std::size_t kMinCapacity = 4096;
constexpr std::size_t kMaxCapacity = std::size_t{1} << 34;  // 2^31 units of 8 bytes

std::uint32_t units_for(std::size_t payload) noexcept {
  return static_cast<std::uint32_t>((RingView::kRecordHeader + payload + 7) / 8);
}

}  // namespace

std::size_t RingView::round_capacity(std::size_t requested) {
  if (requested > kMaxCapacity) {
    throw Error(EINVAL, "cannot create a queue of " + std::to_string(requested) + " bytes",
                "(the largest is 16 GiB)");
  }
  return std::max(kMinCapacity, std::bit_ceil(requested));
}

void RingView::check_mapped(const void* base, std::size_t mapped, const std::string& what) {
  if (mapped < kControlSize) {
    throw Error(EINVAL, "cannot open " + what,
                "(the segment is " + std::to_string(mapped) + " bytes, too small for a ring)");
  }
  const std::uint64_t capacity = static_cast<const RingControl*>(base)->capacity;
  // Checked one by one, so that a huge capacity cannot wrap footprint() round to a small one.
  if (capacity < kMinCapacity || capacity > kMaxCapacity || !std::has_single_bit(capacity)) {
    throw Error(EINVAL, "cannot open " + what,
                "(its ring claims a capacity of " + std::to_string(capacity) +
                    " bytes, which no mproc ring has: corrupted)");
  }
  if (capacity > mapped - kControlSize) {
    throw Error(EINVAL, "cannot open " + what,
                "(its ring claims " + std::to_string(capacity) + " bytes but the segment is " +
                    std::to_string(mapped) + ": truncated)");
  }
}

void RingView::initialize(void* base, std::size_t capacity, std::size_t max_messages, std::uint32_t kind,
                          std::uint64_t type_hash, bool publish) {
  auto* c = new (base) RingControl{};
  c->capacity = capacity;
  c->max_messages = static_cast<std::uint32_t>(std::min<std::size_t>(max_messages, UINT32_MAX / 2));
  int rc = sys::init_robust_mutex(&c->put_mutex, false);
  if (rc == 0) rc = sys::init_robust_mutex(&c->get_mutex, false);
  if (rc != 0) throw Error(rc, "cannot initialise the locks of a", "queue");
  if (publish)
    c->header.publish(static_cast<SegmentKind>(kind), RingControl::kLayoutVersion, sizeof(RingControl),
                      type_hash);
}

RingView::RingView(void* base, int wake_fd, const char* what, int event_fd) noexcept
    : ctl_(static_cast<RingControl*>(base)),
      data_(static_cast<std::byte*>(base) + kControlSize),
      capacity_(ctl_->capacity),
      wake_fd_(wake_fd),
      event_fd_(event_fd),
      what_(what) {}

// ---- taking a side: the bias, or the lock; repair ----------------------------------------

namespace {

using std::chrono_literals::operator""ms;

constexpr std::uint32_t kFirstBiasStreak = 64;      // operations in a row that earn the bias
constexpr std::uint32_t kMaxBiasStreak = 1u << 16;  // after many revocations of live owners

struct Side {
  pthread_mutex_t& mutex;
  std::atomic<std::uint32_t>& holder;
  std::uint32_t& streak;
  std::uint32_t& streak_tid;
  std::uint32_t& threshold;
  BiasSlot* slots;
};

// Releases a side's mutex at scope exit (an exception included), unless keep() hands it on to
// the operation that follows.
class SideLock {
 public:
  explicit SideLock(pthread_mutex_t* m) noexcept : m_(m) {}
  ~SideLock() {
    if (m_ != nullptr) ::pthread_mutex_unlock(m_);
  }
  SideLock(const SideLock&) = delete;
  SideLock& operator=(const SideLock&) = delete;
  void keep() noexcept { m_ = nullptr; }

 private:
  pthread_mutex_t* m_;
};

Side side_of(RingControl& c, bool producer) noexcept {
  if (producer)
    return {c.put_mutex, c.put_holder, c.put_streak, c.put_streak_tid, c.put_threshold, c.put_slots};
  return {c.get_mutex, c.get_holder, c.get_streak, c.get_streak_tid, c.get_threshold, c.get_slots};
}

}  // namespace

// The previous owner of a side died inside an operation. Everything it committed is complete
// (a single store publishes records); everything else lies beyond the commit word and is
// ignored. Only its waiting flag and the side's cached copy of the other word can be stale.
void RingView::repair_side(bool producer) noexcept {
  RingControl& c = *ctl_;
  if (producer) {
    c.put_waiting.store(0, std::memory_order_relaxed);
    c.cached_tail = c.tail.load(std::memory_order_acquire);
    c.abandoned_puts.fetch_add(1, std::memory_order_relaxed);
  } else {
    c.get_waiting.store(0, std::memory_order_relaxed);
    c.cached_head = c.head.load(std::memory_order_acquire);
    c.abandoned_gets.fetch_add(1, std::memory_order_relaxed);
  }
}

// Whether the side's owner is asleep inside its operation, waiting for room (a producer) or for
// data that is not there (a consumer): a call past its deadline then answers full (empty) at
// once instead of waiting for the owner. A consumer asleep while records wait is about to wake.
bool RingView::owner_sleeps(bool producer) const noexcept {
  const RingControl& c = *ctl_;
  if (producer) return c.put_waiting.load(std::memory_order_acquire) != 0;
  return c.get_waiting.load(std::memory_order_acquire) != 0 &&
         pos_of(c.head.load(std::memory_order_acquire)) == pos_of(c.tail.load(std::memory_order_acquire));
}

// How long a call waits for the side's owner to finish an operation in flight: until its own
// deadline, and past it (a try_ call, a zero timeout) while the owner is busy inside an
// operation, up to kOwnerPatience — so that "false" means full (or empty), not "somebody else was
// putting" (queue.hpp, "What non-blocking costs").
Clock::time_point RingView::owner_patience(Clock::time_point deadline) noexcept {
  if (deadline == Clock::time_point::max()) return deadline;
  return std::max(deadline, Clock::now() + kOwnerPatience);
}

bool RingView::stop_waiting_for_owner(bool producer, Clock::time_point now, Clock::time_point deadline,
                                      Clock::time_point patient) const noexcept {
  return now >= patient || (now >= deadline && owner_sleeps(producer));
}

void RingView::lock_side(bool producer, Clock::time_point deadline, Clock::time_point patient,
                         bool& timed_out) {
  pthread_mutex_t* m = producer ? &ctl_->put_mutex : &ctl_->get_mutex;
  int rc = ::pthread_mutex_trylock(m);
  if (rc == EBUSY && deadline == Clock::time_point::max()) {
    rc = sys::lock_robust_mutex(m, deadline);
  } else if (rc == EBUSY) {
    // Another thread is inside an operation on this side, or asleep in one. Spin for the usual
    // case (an operation of some nanoseconds), then sleep on the lock in short slices, looking
    // between them whether the holder sleeps for room (data).
    const bool past = !sys::may_wait(deadline);
    for (sys::Spin spin(!(past && owner_sleeps(producer))); rc == EBUSY && spin.next();) {
      rc = ::pthread_mutex_trylock(m);
    }
    while (rc == EBUSY || rc == ETIMEDOUT) {
      const Clock::time_point now = Clock::now();
      if (stop_waiting_for_owner(producer, now, deadline, patient)) {
        rc = ETIMEDOUT;
        break;
      }
      rc = sys::lock_robust_mutex(m, std::min(now < deadline ? deadline : patient, now + 1ms));
    }
  }
  timed_out = rc == ETIMEDOUT;
  if (rc == 0 || timed_out) return;
  if (rc != EOWNERDEAD) throw Error(rc, "cannot lock", what_);
  repair_side(producer);
  ::pthread_mutex_consistent(m);
}

// The fast path: this thread owns the side's bias. Announce the operation in its own slot, then
// check that the bias is still ours, with no fence between the store and the load: a revoker
// stores the holder word and then runs membarrier(), which puts a full barrier on this CPU, so
// either this load sees the revocation or the revoker sees `busy` (queue.md, "Biased sides").
inline std::uint32_t RingView::enter_side(bool producer, Clock::time_point deadline) {
  RingControl& c = *ctl_;
  std::atomic<std::uint32_t>& holder = producer ? c.put_holder : c.get_holder;
  const std::uint32_t h = holder.load(std::memory_order_relaxed) & ~kBiasWanted;
  if (h - 1 < kBiasSlots) {
    BiasSlot& slot = (producer ? c.put_slots : c.get_slots)[h - 1];
    if (slot.token.load(std::memory_order_relaxed) == sys::thread_token() &&
        slot.busy.load(std::memory_order_relaxed) == 0) {
      slot.busy.store(1, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the compiler keeps the order too
      if ((holder.load(std::memory_order_acquire) & ~kBiasWanted) == h) return h;
      slot.busy.store(0, std::memory_order_release);
    }
  }
  return enter_side_slow(producer, deadline);
}

std::uint32_t RingView::enter_side_slow(bool producer, Clock::time_point deadline) {
  bool timed_out = false;
  const Clock::time_point patient = owner_patience(deadline);
  lock_side(producer, deadline, patient, timed_out);
  if (timed_out) return 0;
  SideLock held(producer ? &ctl_->put_mutex : &ctl_->get_mutex);
  const Revoked r = revoke_bias(producer, deadline, patient, sys::may_wait(deadline));
  if (r == Revoked::timed_out) return 0;
  if (r == Revoked::handed_over)
    ctl_->bias_handovers[producer ? 0 : 1].fetch_add(1, std::memory_order_relaxed);
  const std::uint32_t granted = grant_bias(producer, r == Revoked::handed_over);
  if (granted != 0) return granted;  // the operation goes on under the bias, without the mutex
  held.keep();
  return kHeldByMutex;
}

inline void RingView::leave_side(bool producer, std::uint32_t hold) noexcept {
  RingControl& c = *ctl_;
  if (hold == kHeldByMutex) {
    ::pthread_mutex_unlock(producer ? &c.put_mutex : &c.get_mutex);
    return;
  }
  BiasSlot& slot = (producer ? c.put_slots : c.get_slots)[hold - 1];
  slot.busy.store(0, std::memory_order_release);
  // A revoker changed the holder word and may be asleep until this operation ends. (If this
  // load ran before its store, it finds busy clear itself: it re-checks every millisecond.)
  const std::uint32_t now = (producer ? c.put_holder : c.get_holder).load(std::memory_order_relaxed);
  if (now != hold) {
    if (now == (hold | kBiasWanted)) {
      offer_bias(producer, hold);
    } else {
      sys::futex_wake(&slot.busy, 1);
    }
  }
}

namespace {
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
}  // namespace

// The owner, between two operations, with a hand-over asked for: after its lease it gives the
// side up to the asker (who holds the mutex and sleeps on the holder word).
void RingView::offer_bias(bool producer, std::uint32_t hold) noexcept {
  RingControl& c = *ctl_;
  BiasSlot& slot = (producer ? c.put_slots : c.get_slots)[hold - 1];
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
  std::atomic<std::uint32_t>& holder = producer ? c.put_holder : c.get_holder;
  std::uint32_t expected = hold | kBiasWanted;
  if (holder.compare_exchange_strong(expected, dense ? 0 : kBiasDeclined, std::memory_order_acq_rel)) {
    sys::futex_wake(&holder, INT_MAX);
  } else {
    sys::futex_wake(&slot.busy, 1);  // the asker stopped waiting and revokes
  }
}

struct RingView::SideExit {
  RingView* view;
  bool producer;
  std::uint32_t hold;
  ~SideExit() { view->leave_side(producer, hold); }
};

// Under the side's mutex: takes the bias back from its owner, waiting for an operation it has
// in flight (if its process died in it, repairing after it). A live owner that is streaming is
// first asked to hand the side over at the end of its lease (`may_ask`). timed_out if
// `deadline` passed first: the bias then stays marked revoked (or wanted), and the next process
// to take the mutex waits again.
RingView::Revoked RingView::revoke_bias(bool producer, Clock::time_point deadline, Clock::time_point patient,
                                        bool may_ask) {
  RingControl& c = *ctl_;
  const Side side = side_of(c, producer);
  std::uint32_t h = side.holder.load(std::memory_order_acquire);
  if (h == 0) return Revoked::no_bias;
  if ((h & 0xFF) == 0) {  // kBiasDeclined, answering an asker that gave up waiting
    side.holder.store(0, std::memory_order_relaxed);
    return Revoked::no_bias;
  }
  // The word lies in shared memory: whatever it says, the index stays inside the slot array.
  BiasSlot& slot = side.slots[((h & 0xFF) - 1) % kBiasSlots];
  if (slot.token.load(std::memory_order_relaxed) == sys::thread_token()) {
    // Our own bias, and we are on the slow path: either it was revoked while we were away, or
    // this is a put (get) called from inside one of our own (an encoder or a decoder of this
    // very queue). The lock would have refused that as well.
    if (slot.busy.load(std::memory_order_relaxed) != 0) {
      throw Error(EDEADLK, std::string("cannot ") + (producer ? "put into a " : "get from a ") + what_,
                  "(called again from inside one of this thread's own operations on it)");
    }
    side.holder.store(0, std::memory_order_relaxed);
    return Revoked::taken;
  }
  if (may_ask && (h & kBiasRevoked) == 0) {
    // Ask. The owner answers between two of its operations: it hands the side over at the end
    // of its lease (0), or declines the bias at once (kBiasDeclined).
    if ((h & kBiasWanted) == 0) {
      slot.wanted_ops.store(0, std::memory_order_relaxed);
      slot.wanted_since_ns.store(0, std::memory_order_relaxed);
      if (!side.holder.compare_exchange_strong(h, h | kBiasWanted, std::memory_order_acq_rel)) {
        return revoke_bias(producer, deadline, patient, may_ask);  // the owner answered an earlier asker
      }
      h |= kBiasWanted;
    }
    // Is it there at all? An owner that neither makes an operation nor is inside one within
    // a short spin (and a few yields, in case it waits for this very core) is idle, or dead.
    std::uint32_t last_ops = slot.wanted_ops.load(std::memory_order_relaxed);
    bool active = false;
    for (sys::Spin probe(true); !active && probe.next();) {
      active = slot.wanted_ops.load(std::memory_order_relaxed) != last_ops ||
               slot.busy.load(std::memory_order_relaxed) != 0 ||
               side.holder.load(std::memory_order_relaxed) != h;
    }
    while (active) {
      std::uint32_t now_h = side.holder.load(std::memory_order_acquire);
      if (now_h == 0) return Revoked::handed_over;
      if (now_h == kBiasDeclined) {
        side.holder.store(0, std::memory_order_relaxed);
        count_live_revocation(producer);
        return Revoked::taken;
      }
      if (now_h != h) return revoke_bias(producer, deadline, patient, false);  // not the owner's answer
      const Clock::time_point now = Clock::now();
      if (stop_waiting_for_owner(producer, now, deadline, patient)) return Revoked::timed_out;
      sys::futex_wait(&side.holder, h, std::min(now < deadline ? deadline : patient, now + 1ms));
      now_h = side.holder.load(std::memory_order_acquire);
      if (now_h != h) continue;  // answered
      const std::uint32_t ops = slot.wanted_ops.load(std::memory_order_relaxed);
      active = ops != last_ops;  // else idle for a millisecond, or asleep inside an operation
      last_ops = ops;
    }
    if (!side.holder.compare_exchange_strong(h, (h & 0xFF) | kBiasRevoked, std::memory_order_acq_rel)) {
      return revoke_bias(producer, deadline, patient, true);  // answered meanwhile: see above
    }
  } else if ((h & kBiasRevoked) == 0) {
    if (!side.holder.compare_exchange_strong(h, (h & 0xFF) | kBiasRevoked, std::memory_order_acq_rel)) {
      return revoke_bias(producer, deadline, patient, false);  // the owner answered an earlier asker
    }
  }
  if (!sys::membarrier_global()) {
    throw Error(errno,
                std::string("cannot take the ") + (producer ? "producer" : "consumer") + " side of a " +
                    what_ + " back from the thread that had it to itself",
                "(membarrier failed)");
  }
  // The owner's operation in flight normally ends within nanoseconds: even a call that may not
  // wait for room or data (a try_) spins for it.
  sys::Spin spin(sys::may_wait(deadline) || !owner_sleeps(producer));
  bool died = false;
  while (slot.busy.load(std::memory_order_acquire) != 0) {
    if (spin.next()) continue;
    if (!sys::process_alive(static_cast<pid_t>(slot.pid), slot.start_ticks)) {
      died = true;
      break;
    }
    const Clock::time_point now = Clock::now();
    if (stop_waiting_for_owner(producer, now, deadline, patient)) return Revoked::timed_out;
    sys::futex_wait(&slot.busy, 1, std::min(now < deadline ? deadline : patient, now + 1ms));
  }
  if (died) {
    repair_side(producer);
    slot.busy.store(0, std::memory_order_relaxed);
    slot.token.store(0, std::memory_order_relaxed);  // its thread is gone: a free slot
    c.bias_revocations[producer ? 0 : 1].fetch_add(1, std::memory_order_relaxed);
  } else if (sys::process_alive(static_cast<pid_t>(slot.pid), slot.start_ticks)) {
    count_live_revocation(producer);
  } else {
    c.bias_revocations[producer ? 0 : 1].fetch_add(1, std::memory_order_relaxed);
  }
  side.holder.store(0, std::memory_order_release);
  return Revoked::taken;
}

// A live owner lost the side (or declined it): ask for a longer run before the next grant, so
// that producers (consumers) that take turns settle on the lock instead of revoking each other.
void RingView::count_live_revocation(bool producer) noexcept {
  RingControl& c = *ctl_;
  const Side side = side_of(c, producer);
  const std::uint32_t t = side.threshold == 0 ? kFirstBiasStreak : side.threshold;
  side.threshold = std::min(t * 2, kMaxBiasStreak);
  c.bias_revocations[producer ? 0 : 1].fetch_add(1, std::memory_order_relaxed);
}

// Under the side's mutex, with no bias set: gives the side to this thread if it has had it
// alone for a while. Returns its slot's index + 1 with `busy` already set (the operation that
// earned the bias runs under it), or 0.
std::uint32_t RingView::grant_bias(bool producer, bool at_once) {
  RingControl& c = *ctl_;
  const Side side = side_of(c, producer);
  const auto tid = static_cast<std::uint32_t>(sys::current_tid());
  if (!at_once) {
    if (side.streak_tid != tid) {
      side.streak_tid = tid;
      side.streak = 1;
      return 0;
    }
    if (++side.streak < (side.threshold == 0 ? kFirstBiasStreak : side.threshold)) return 0;
  }
  side.streak = 0;
  if (!sys::membarrier_registered()) return 0;  // nobody could take it back from us
  const std::uint64_t token = sys::thread_token();
  BiasSlot* pick = nullptr;
  for (std::uint32_t i = 0; i < kBiasSlots && pick == nullptr; ++i) {
    if (side.slots[i].token.load(std::memory_order_relaxed) == token) pick = &side.slots[i];
  }
  for (std::uint32_t i = 0; i < kBiasSlots && pick == nullptr; ++i) {
    if (side.slots[i].token.load(std::memory_order_relaxed) == 0) pick = &side.slots[i];
  }
  // A slot stays with its thread while that thread's process lives: a thread that lost the
  // bias may still be about to write `busy` (between its two loads of the holder word).
  for (std::uint32_t i = 0; i < kBiasSlots && pick == nullptr; ++i) {
    if (!sys::process_alive(static_cast<pid_t>(side.slots[i].pid), side.slots[i].start_ticks)) {
      pick = &side.slots[i];
    }
  }
  if (pick == nullptr) return 0;
  if (pick->token.load(std::memory_order_relaxed) != token) {
    const pid_t self = ::getpid();
    pick->pid = static_cast<std::uint32_t>(self);
    pick->start_ticks = sys::process_start_ticks(self);
    pick->token.store(token, std::memory_order_relaxed);
  }
  pick->busy.store(1, std::memory_order_relaxed);
  const auto h = static_cast<std::uint32_t>(pick - side.slots) + 1;
  side.holder.store(h, std::memory_order_release);
  c.bias_grants[producer ? 0 : 1].fetch_add(1, std::memory_order_relaxed);
  return h;
}

// ---- waking and sleeping ------------------------------------------------------------------

// The two halves of every handshake between a commit and a sleeper (queue.md, "Waking"): one
// side stores a word (head, tail; a waiting flag, an armed or signalled flag), then reads the
// other's. In a process registered for membarrier a commit runs no fence of its own: the
// sleeper's membarrier() runs one on every CPU that is running a registered process (and a
// context switch is one), so either the sleeper's re-check sees the commit or the committer sees
// the flag. A process that cannot register fences on every commit, as before.
namespace {
inline void committer_fence() noexcept {
  if (!sys::membarrier_registered()) std::atomic_thread_fence(std::memory_order_seq_cst);
}
// If membarrier() fails here although this process registered (a seccomp filter applied since),
// a missed wake-up still ends at the sleeper's next heartbeat.
inline void sleeper_fence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sys::membarrier_registered()) (void)sys::membarrier_global();
}
}  // namespace

// Called after a commit and committer_fence() (the waker's half of the handshake above), when a
// waiting flag or the armed flag was seen set.
void RingView::wake(bool data_side) noexcept {
  RingControl& c = *ctl_;
  std::atomic<std::uint32_t>& waiting = data_side ? c.get_waiting : c.put_waiting;
  if (wake_fd_ < 0) {
    // Queue: an armed descriptor (fileno()) becomes readable when the first record lands.
    if (data_side && event_fd_ >= 0 && c.fd_armed.load(std::memory_order_relaxed) != 0 &&
        c.data_signaled.exchange(1, std::memory_order_acq_rel) == 0) {
      (void)::eventfd_write(event_fd_, 1);
    }
    if (waiting.load(std::memory_order_relaxed) == 0) return;
    std::atomic<std::uint32_t>& seq = data_side ? c.data_seq : c.space_seq;
    seq.fetch_add(1, std::memory_order_release);
    sys::futex_wake(&seq, 1);
    return;
  }
  // Pipe: the byte goes to the peer's socket of this direction.
  bool send = waiting.load(std::memory_order_relaxed) != 0;
  if (data_side && c.fd_armed.load(std::memory_order_relaxed) != 0) {
    // An external poller: keep the socket readable while records wait (one byte pending).
    send = c.data_signaled.exchange(1, std::memory_order_acq_rel) == 0 || send;
  }
  if (send) (void)::send(wake_fd_, "w", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Sleeps until woken, `until`, or a heartbeat passes. Returns false if the peer end of a pipe
// is gone (POLLHUP). The caller has set its waiting flag, fenced, read `seen` and re-checked.
bool RingView::sleep(bool data_side, std::uint32_t seen, Clock::time_point until) {
  RingControl& c = *ctl_;
  until = sys::next_wake(until);
  if (wake_fd_ < 0) {
    sys::futex_wait(data_side ? &c.data_seq : &c.space_seq, seen, until);
    return true;
  }
  pollfd p{wake_fd_, POLLIN, 0};
  const timespec ts = sys::timespec_until(until);
  const int rc = ::ppoll(&p, 1, &ts, nullptr);
  if (rc > 0 && (p.revents & (POLLHUP | POLLERR)) != 0) return false;
  if (rc > 0 && (p.revents & POLLIN) != 0) {
    char buf[64];
    ssize_t n = ::recv(wake_fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return false;  // EOF: the peer end is closed everywhere
    while (n == static_cast<ssize_t>(sizeof buf)) n = ::recv(wake_fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (data_side) {
      // The pending byte is gone: let the next commit send another. The caller re-checks the
      // ring after this fence, so a commit that saw the flag still set is not missed (the
      // other half of the handshake with the producer's commit).
      c.data_signaled.store(0, std::memory_order_relaxed);
      sleeper_fence();
    }
  }
  return true;
}

bool RingView::peer_gone() const noexcept {
  if (wake_fd_ < 0) return false;
  pollfd p{wake_fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
}

// ---- put ----------------------------------------------------------------------------------

inline bool RingView::fits(Word h, Word t, std::uint32_t need) const noexcept {
  const std::uint32_t used = pos_of(h) - pos_of(t);
  if (static_cast<std::uint32_t>(capacity_ / 8) - used < need) return false;
  const std::uint32_t max_messages = ctl_->max_messages;
  return max_messages == 0 || count_of(h) - count_of(t) < max_messages;
}

namespace {

// In a batch, an error names the message and says how many went in before it.
std::string batch_context(std::size_t done, std::size_t count) {
  if (count == 1) return {};
  return " (message " + std::to_string(done + 1) + " of " + std::to_string(count) + " in a put_many; the " +
         std::to_string(done) + " before it were put)";
}

}  // namespace

void RingView::check_put_open(std::size_t done, std::size_t count) const {
  if (ctl_->closed.load(std::memory_order_acquire) != 0) {
    throw Closed(std::string("cannot put into a closed ") + what_ + batch_context(done, count));
  }
  if (wake_fd_ >= 0 && peer_gone()) {
    throw Error(EPIPE, "cannot send on Connection",
                "(the receiving end was closed or its process died)" + batch_context(done, count));
  }
}

void RingView::throw_too_big(std::size_t size, const std::string& context) const {
  throw Error(EMSGSIZE, "cannot put a message of " + std::to_string(size) + " bytes into a " + what_,
              "whose capacity is " + std::to_string(capacity_) +
                  " bytes (the largest message it "
                  "can ever hold is " +
                  std::to_string(max_message()) + " bytes)" + context);
}

void RingView::commit_head(Word h) noexcept {
  RingControl& c = *ctl_;
  c.head.store(h, std::memory_order_release);
  committer_fence();
  // Inline, the usual case: nobody asleep, no poller. Then wake() would do nothing.
  if (c.get_waiting.load(std::memory_order_relaxed) != 0 || c.fd_armed.load(std::memory_order_relaxed) != 0) {
    wake(true);
  }
}

// One put or put_many: `next(i, data, size)` supplies message i of `count`. Everything happens
// under the producer lock, so a batch's messages are consecutive in the ring. Records are
// written beyond head and committed by one store of head: at the end, before waiting for room,
// and after every eighth of the ring, so that consumers start on a long batch early. Returns
// how many messages were put (fewer than `count` only when the deadline passed).
namespace {
// Copies n <= 64 bytes in at most two overlapping moves of a fixed size, inline: a small
// message's put otherwise spends a tenth of its time calling and dispatching memcpy.
inline void copy_small(std::byte* to, const std::byte* from, std::size_t n) noexcept {
  if (n >= 32) {
    std::memcpy(to, from, 32);
    std::memcpy(to + n - 32, from + n - 32, 32);
  } else if (n >= 16) {
    std::memcpy(to, from, 16);
    std::memcpy(to + n - 16, from + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(to, from, 8);
    std::memcpy(to + n - 8, from + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(to, from, 4);
    std::memcpy(to + n - 4, from + n - 4, 4);
  } else {
    for (std::size_t i = 0; i < n; ++i) to[i] = from[i];
  }
}
}  // namespace

template <class Next>
std::size_t RingView::put_impl(Next& next, std::size_t count, std::uint32_t tag, Clock::time_point deadline) {
  RingControl& c = *ctl_;
  const std::uint32_t cap_units = static_cast<std::uint32_t>(capacity_ / 8);

  const std::uint32_t hold = enter_side(true, deadline);
  if (hold == 0) return 0;
  SideExit exit{this, true, hold};

  if (c.closed.load(std::memory_order_acquire) != 0) check_put_open(0, count);
  if (wake_fd_ >= 0) {
    // A sender that never blocks would not notice a dead receiver: look every 10 ms, on the
    // coarse clock (a vDSO read, no system call).
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    const std::int64_t now_ns = std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
    if (now_ns >= next_peer_check_ns_) {
      next_peer_check_ns_ = now_ns + 10'000'000;
      check_put_open(0, count);
    }
  }

  const std::size_t mask = capacity_ - 1;
  Word h = c.head.load(std::memory_order_relaxed);  // ours (invariant 1)
  Word committed = h;
  std::size_t done = 0;
  for (; done < count; ++done) {
    const void* data = nullptr;
    std::size_t size = 0;
    try {
      next(done, data, size);  // may encode, and so throw
    } catch (...) {
      if (h != committed) commit_head(h);
      throw;
    }
    if (size > max_message()) {
      if (h != committed) commit_head(h);
      throw_too_big(size, batch_context(done, count));
    }
    const std::uint32_t need = units_for(size);
    if (!fits(h, c.cached_tail, need)) {
      c.cached_tail = c.tail.load(std::memory_order_acquire);  // pairs with the consumer's commit
      if (!fits(h, c.cached_tail, need) && h != committed) {
        commit_head(h);  // consumers may drain what this batch wrote so far
        committed = h;
      }
      sys::Spin spin(sys::may_wait(deadline));  // try_put does not spin
      while (!fits(h, c.cached_tail, need)) {
        if (!spin.next()) {
          if (Clock::now() >= deadline) return done;
          check_put_open(done, count);
          // Sleep (queue.md, "Waking"): announce, fence, snapshot, re-check, sleep.
          c.put_waiting.store(1, std::memory_order_relaxed);
          sleeper_fence();
          const std::uint32_t seen = c.space_seq.load(std::memory_order_acquire);
          c.cached_tail = c.tail.load(std::memory_order_acquire);
          bool peer_ok = true;
          if (!fits(h, c.cached_tail, need) && c.closed.load(std::memory_order_acquire) == 0) {
            peer_ok = sleep(false, seen, deadline);
          }
          c.put_waiting.store(0, std::memory_order_relaxed);
          if (!peer_ok) check_put_open(done, count);
        }
        c.cached_tail = c.tail.load(std::memory_order_acquire);
      }
    }

    // Write the record beyond head (invariant 2), in up to two pieces. Whatever head says, the
    // writes stay inside the ring: positions are masked, and size <= capacity - 8.
    const std::size_t at = (std::size_t{pos_of(h)} * 8) & mask;
    const RecordHeader rh{static_cast<std::uint32_t>(size), tag};
    std::memcpy(data_ + at, &rh, sizeof rh);  // at is 8-aligned and capacity is a multiple of 8
    const std::size_t body = (at + sizeof rh) & mask;
    const std::size_t first = std::min(size, capacity_ - body);
    if (first == size && size <= 64) {
      copy_small(data_ + body, static_cast<const std::byte*>(data), size);
    } else if (first != 0) {
      std::memcpy(data_ + body, data, first);  // an empty message's data may be null
    }
    if (first < size) std::memcpy(data_, static_cast<const std::byte*>(data) + first, size - first);
    h = make_word(pos_of(h) + need, count_of(h) + 1);
    if (pos_of(h) - pos_of(committed) >= cap_units / 8) {
      commit_head(h);
      committed = h;
    }
  }
  if (h != committed) commit_head(h);
  return done;
}

RingStatus RingView::put(const void* data, std::size_t size, std::uint32_t tag, Clock::time_point deadline) {
  // A message that can never fit is the caller's error whatever the state of the ring: say so
  // before looking at anything else (a closed queue, a gone peer).
  if (size > max_message()) throw_too_big(size, {});
  auto one = [data, size](std::size_t, const void*& d, std::size_t& s) noexcept {
    d = data;
    s = size;
  };
  return put_impl(one, 1, tag, deadline) == 1 ? RingStatus::ok : RingStatus::timed_out;
}

std::size_t RingView::put_many(MessageSource source, std::size_t count, std::uint32_t tag,
                               Clock::time_point deadline) {
  if (count == 0) return 0;
  return put_impl(source, count, tag, deadline);
}

std::size_t RingView::put_many_fixed(const void* base, std::size_t size, std::size_t count, std::uint32_t tag,
                                     Clock::time_point deadline) {
  if (count == 0) return 0;
  if (size > max_message()) throw_too_big(size, batch_context(0, count));
  // Inlined into put_impl: no call per message.
  auto next = [base, size](std::size_t i, const void*& d, std::size_t& s) noexcept {
    d = static_cast<const std::byte*>(base) + i * size;
    s = size;
  };
  return put_impl(next, count, tag, deadline);
}

// ---- get ----------------------------------------------------------------------------------

void RingView::finish_close() {
  // Wait for a put in flight (it holds put_mutex, or the producer bias) to finish; then no put
  // can commit again.
  bool timed_out = false;
  lock_side(true, Clock::time_point::max(), Clock::time_point::max(), timed_out);
  SideLock held(&ctl_->put_mutex);
  (void)revoke_bias(true, Clock::time_point::max(), Clock::time_point::max(), false);
  ctl_->closed.store(2, std::memory_order_release);
}

// One get or get_many: waits (spins, then sleeps) for the first record only, then offers up to
// `max` records to `take(index, record)` and commits them all by one store of tail. A record
// that take() leaves, or that throws, or that is impossible, ends the batch; if it is the first,
// the get fails as a single get would, otherwise the batch returns what it took and the record
// stays at the front for the next get.
template <class Take>
RingStatus RingView::get_impl(Take& take, std::size_t max, Clock::time_point deadline, std::size_t& taken) {
  taken = 0;
  RingControl& c = *ctl_;
  const std::uint32_t hold = enter_side(false, deadline);
  if (hold == 0) return RingStatus::timed_out;
  SideExit exit{this, false, hold};

  Word t = c.tail.load(std::memory_order_relaxed);  // ours
  if (pos_of(c.cached_head) == pos_of(t)) {
    c.cached_head = c.head.load(std::memory_order_acquire);  // pairs with the producer's commit
    sys::Spin spin(sys::may_wait(deadline));                 // try_get does not spin
    while (pos_of(c.cached_head) == pos_of(t)) {
      const std::uint32_t closed = c.closed.load(std::memory_order_acquire);
      if (closed == 1) finish_close();
      if (closed != 0) {
        // Closed for good: one last look, since a put may have committed before the close.
        c.cached_head = c.head.load(std::memory_order_acquire);
        if (pos_of(c.cached_head) != pos_of(t)) break;
        return RingStatus::closed;
      }
      if (!spin.next()) {
        if (Clock::now() >= deadline) {
          if (peer_gone()) return RingStatus::closed;
          if (c.fd_armed.load(std::memory_order_relaxed) != 0) (void)unsignal_if_empty(t);
          return RingStatus::timed_out;
        }
        c.get_waiting.store(1, std::memory_order_relaxed);
        sleeper_fence();
        const std::uint32_t seen = c.data_seq.load(std::memory_order_acquire);
        c.cached_head = c.head.load(std::memory_order_acquire);
        bool peer_ok = true;
        if (pos_of(c.cached_head) == pos_of(t) && c.closed.load(std::memory_order_acquire) == 0) {
          peer_ok = sleep(true, seen, deadline);
        }
        c.get_waiting.store(0, std::memory_order_relaxed);
        if (!peer_ok) {
          c.cached_head = c.head.load(std::memory_order_acquire);
          if (pos_of(c.cached_head) != pos_of(t)) break;
          return RingStatus::closed;  // end of stream: the sender is gone and nothing is left
        }
      }
      c.cached_head = c.head.load(std::memory_order_acquire);
    }
  }

  // Little left in the cached view, fresh or not: keep behind the producer (slip()). Checking
  // only right after a reload of head measured half the throughput (30 against 65 M msg/s in a
  // bare 1->1 loop): the records taken from an older view walk into the producer's line too.
  if (pos_of(c.cached_head) - pos_of(t) < kSlipUnits) slip(t, deadline);

  const std::size_t mask = capacity_ - 1;
  for (;;) {
    // A complete record starts at t (invariant 2): unless a process wrote into the ring outside
    // this protocol. Its header is read from the ring, so check it before using it; the words
    // compared are in registers already, and the branches are never taken.
    const std::uint32_t committed = pos_of(c.cached_head) - pos_of(t);  // units; wraps if t > head
    const std::size_t at = (std::size_t{pos_of(t)} * 8) & mask;
    RecordHeader rh;
    std::memcpy(&rh, data_ + at, sizeof rh);
    if (committed > capacity_ / 8 || rh.size > max_message() || units_for(rh.size) > committed) {
      if (taken != 0) break;  // the next get reports it
      throw_corrupted("a record of " + std::to_string(rh.size) + " bytes at position " +
                      std::to_string(pos_of(t)) + ", with " + std::to_string(committed) +
                      " units committed in a ring of " + std::to_string(capacity_ / 8));
    }
    const std::size_t body = (at + sizeof rh) & mask;
    const std::size_t first = std::min<std::size_t>(rh.size, capacity_ - body);
    const RecordView view{data_ + body, first, data_, rh.size - first, rh.tag};
    bool took = false;
    if (taken == 0) {
      took = take(std::size_t{0}, view);         // an exception leaves the ring as it was
      if (!took) return RingStatus::wrong_type;  // left in place, tail unchanged
    } else {
      try {
        took = take(taken, view);
      } catch (...) {
        took = false;  // keep what was taken; the next get throws for this record
      }
      if (!took) break;
    }
    t = make_word(pos_of(t) + units_for(rh.size), count_of(t) + 1);
    if (++taken == max) break;
    if (pos_of(c.cached_head) == pos_of(t)) {
      c.cached_head = c.head.load(std::memory_order_acquire);
      if (pos_of(c.cached_head) == pos_of(t)) break;  // a batch never waits for more
    }
  }

  c.tail.store(t, std::memory_order_release);
  committer_fence();
  if (c.put_waiting.load(std::memory_order_relaxed) != 0) wake(false);  // nothing else to wake
  return RingStatus::ok;
}

// A consumer right behind the producer reads each record as it lands, in the cache line that
// the producer is still writing, and the head word with it: both lines then cross between the
// two cores once per message, and the pair settles at about half the throughput it has when the
// consumer keeps a little behind (queue.md, "Chasing"). So a consumer that finds little
// committed takes only the records that end before the line `head` is in (the producer writes
// the next record there): cached_head is set back to the last such record's end, a committed
// record boundary like any other. If even the first record reaches into that line, it waits a
// few pauses for the producer to move on, and takes it anyway if the producer stays quiet (a
// request and its reply): such a fruitless wait is not repeated for the next kSlipRest gets.
void RingView::slip(Word t, Clock::time_point deadline) noexcept {
  if (slip_rest_ != 0) {
    --slip_rest_;
    return;
  }
  RingControl& c = *ctl_;
  Word safe = behind(t);
  if (safe == t) {
    if (deadline != Clock::time_point::max() && Clock::now() >= deadline) return;  // try_get
    const std::uint32_t before = pos_of(c.cached_head);
    for (int i = 0; safe == t && i < kSlipPauses; ++i) {
      sys::cpu_relax();
      c.cached_head = c.head.load(std::memory_order_acquire);
      safe = behind(t);
    }
    if (safe == t) {
      if (pos_of(c.cached_head) == before) slip_rest_ = kSlipRest;
      return;  // take what there is
    }
  }
  c.cached_head = safe;
}

// The end of the last of the records from t on that lie wholly before the cache line holding
// cached_head's position (8 units to a line: the data area is page-aligned); t if none does.
Word RingView::behind(Word t) const noexcept {
  const RingControl& c = *ctl_;
  const std::uint32_t avail = pos_of(c.cached_head) - pos_of(t);
  const std::uint32_t into_line = pos_of(c.cached_head) & 7u;
  if (avail <= into_line) return t;
  const std::uint32_t limit = avail - into_line;
  const std::size_t mask = capacity_ - 1;
  Word p = t;
  std::uint32_t done = 0;
  while (done < limit) {
    RecordHeader rh;
    std::memcpy(&rh, data_ + ((std::size_t{pos_of(p)} * 8) & mask), sizeof rh);
    if (rh.size > max_message()) break;  // not a record: the get's own checks report it
    const std::uint32_t units = units_for(rh.size);
    if (done + units > limit) break;
    done += units;
    p = make_word(pos_of(p) + units, count_of(p) + 1);
  }
  return p;
}

RingStatus RingView::get(Taker take, Clock::time_point deadline) {
  auto one = [take](std::size_t, const RecordView& r) { return take(r); };
  std::size_t taken = 0;
  return get_impl(one, 1, deadline, taken);
}

RingStatus RingView::get_many_fixed(void* out, std::size_t size, std::size_t max, std::uint32_t tag,
                                    Clock::time_point deadline, std::size_t& taken) {
  taken = 0;
  if (max == 0) return RingStatus::ok;
  auto take = [out, size, tag](std::size_t i, const RecordView& r) noexcept {
    if (r.tag != tag || r.size() != size) return false;
    r.copy_to(static_cast<std::byte*>(out) + i * size);
    return true;
  };
  return get_impl(take, max, deadline, taken);
}

RingStatus RingView::get_many(BatchTaker take, std::size_t max, Clock::time_point deadline,
                              std::size_t& taken) {
  taken = 0;
  if (max == 0) return RingStatus::ok;
  return get_impl(take, max, deadline, taken);
}

void RingView::throw_corrupted(const std::string& detail) const {
  throw Error(EPROTO, std::string("cannot get from a corrupted ") + what_,
              "(" + detail + ": a process wrote into its shared memory outside mproc's protocol)");
}

// fileno(): a reader that found the ring empty clears the armed descriptor, so that it is not
// left readable with nothing to read (a level-triggered poller would spin). Order matters:
// drain first, then clear the flag, then fence and re-check. A record committed before the clear
// saw the flag set and sent nothing: the re-check finds it (and, for a queue, re-signals). One
// committed after the clear signals for itself. Returns whether a record is waiting after all.
bool RingView::unsignal_if_empty(Word t) noexcept {
  RingControl& c = *ctl_;
  if (c.data_signaled.load(std::memory_order_acquire) == 0) return false;
  if (event_fd_ >= 0) {
    eventfd_t drained;
    (void)::eventfd_read(event_fd_, &drained);
  } else {
    char buf[64];
    while (::recv(wake_fd_, buf, sizeof buf, MSG_DONTWAIT) > 0) {}
  }
  c.data_signaled.store(0, std::memory_order_relaxed);
  sleeper_fence();  // the other half of the handshake with a commit
  if (pos_of(c.head.load(std::memory_order_acquire)) == pos_of(t)) return false;
  // A pipe's reader cannot signal its own socket (only the peer writes to it); the caller, which
  // found the record, reports it ready instead.
  if (event_fd_ >= 0 && c.data_signaled.exchange(1, std::memory_order_acq_rel) == 0) {
    (void)::eventfd_write(event_fd_, 1);
  }
  return true;
}

RingStatus RingView::wait_readable(Clock::time_point deadline) {
  RingControl& c = *ctl_;
  sys::Spin spin(sys::may_wait(deadline));  // poll(0) does not spin
  for (;;) {
    if (pos_of(c.head.load(std::memory_order_acquire)) != pos_of(c.tail.load(std::memory_order_acquire))) {
      return RingStatus::ok;
    }
    if (c.closed.load(std::memory_order_acquire) != 0) return RingStatus::closed;
    if (spin.next()) continue;
    if (Clock::now() >= deadline) {
      if (peer_gone()) return RingStatus::closed;
      if (c.fd_armed.load(std::memory_order_relaxed) != 0 &&
          unsignal_if_empty(c.tail.load(std::memory_order_acquire))) {
        return RingStatus::ok;
      }
      return RingStatus::timed_out;
    }
    // Sleep without the consumer lock: announce through the same flag; a spurious wake of
    // another sleeper is harmless, every sleeper re-checks.
    c.get_waiting.store(1, std::memory_order_relaxed);
    sleeper_fence();
    const std::uint32_t seen = c.data_seq.load(std::memory_order_acquire);
    bool peer_ok = true;
    if (pos_of(c.head.load(std::memory_order_acquire)) == pos_of(c.tail.load(std::memory_order_acquire))) {
      peer_ok = sleep(true, seen, deadline);
    }
    c.get_waiting.store(0, std::memory_order_relaxed);
    if (!peer_ok) {
      if (pos_of(c.head.load(std::memory_order_acquire)) != pos_of(c.tail.load(std::memory_order_acquire))) {
        return RingStatus::ok;
      }
      return RingStatus::closed;
    }
  }
}

// ---- close, sizes, JoinableQueue ----------------------------------------------------------

void RingView::close() {
  RingControl& c = *ctl_;
  std::uint32_t expected = 0;
  c.closed.compare_exchange_strong(expected, 1, std::memory_order_acq_rel);
  // Wake every sleeper so that it sees the flag.
  c.data_seq.fetch_add(1, std::memory_order_release);
  c.space_seq.fetch_add(1, std::memory_order_release);
  sys::futex_wake(&c.data_seq, INT_MAX);
  sys::futex_wake(&c.space_seq, INT_MAX);
  if (c.closed.load(std::memory_order_acquire) == 1) finish_close();
  c.data_seq.fetch_add(1, std::memory_order_release);
  sys::futex_wake(&c.data_seq, INT_MAX);
}

bool RingView::closed() const noexcept {
  return ctl_->closed.load(std::memory_order_acquire) != 0;
}

std::size_t RingView::size() const noexcept {
  // Both words only grow (modulo 2^32). If tail reads the same before and after head, that
  // (head, tail) pair existed at the instant head was read: the count is exact then.
  const RingControl& c = *ctl_;
  for (;;) {
    const Word t1 = c.tail.load(std::memory_order_acquire);
    const Word h = c.head.load(std::memory_order_acquire);
    const Word t2 = c.tail.load(std::memory_order_acquire);
    if (t1 == t2) return count_of(h) - count_of(t1);
  }
}

bool RingView::full() const noexcept {
  const RingControl& c = *ctl_;
  for (;;) {
    const Word t1 = c.tail.load(std::memory_order_acquire);
    const Word h = c.head.load(std::memory_order_acquire);
    const Word t2 = c.tail.load(std::memory_order_acquire);
    if (t1 != t2) continue;
    if (c.max_messages != 0 && count_of(h) - count_of(t1) >= c.max_messages) return true;
    const std::uint32_t used = pos_of(h) - pos_of(t1);
    return capacity_ / 8 - used < units_for(1);  // not even a 1-byte message fits
  }
}

// Whether the thread that holds a side — its biased owner inside an operation, or else the
// holder of its robust mutex — is alive. A waiting flag is set by that thread while it sleeps,
// and a process killed asleep leaves the flag set until the next operation on the side repairs
// it: `mproc ls` must not report such a sleeper as blocked.
bool RingView::side_holder_alive(bool producer) const noexcept {
  const RingControl& c = *ctl_;
  const std::uint32_t h = (producer ? c.put_holder : c.get_holder).load(std::memory_order_acquire) & 0xFF;
  if (h - 1 < kBiasSlots) {
    const BiasSlot& slot = (producer ? c.put_slots : c.get_slots)[h - 1];
    if (slot.busy.load(std::memory_order_acquire) != 0) {
      return sys::process_alive(static_cast<pid_t>(slot.pid), slot.start_ticks);
    }
  }
  // A robust mutex's lock word is the owner's thread id (the kernel's robust-futex ABI); the
  // kernel clears it and sets FUTEX_OWNER_DIED when the owner dies.
  const pthread_mutex_t& m = producer ? c.put_mutex : c.get_mutex;
  const auto word = static_cast<std::uint32_t>(__atomic_load_n(&m.__data.__lock, __ATOMIC_ACQUIRE));
  const auto tid = static_cast<pid_t>(word & FUTEX_TID_MASK);
  if (tid == 0 || (word & FUTEX_OWNER_DIED) != 0) return false;
  return sys::process_alive(tid, 0);  // /proc/TID exists for every thread, not only leaders
}

bool RingView::consumer_waiting() const noexcept {
  return ctl_->get_waiting.load(std::memory_order_relaxed) != 0 && side_holder_alive(false);
}
bool RingView::producer_waiting() const noexcept {
  return ctl_->put_waiting.load(std::memory_order_relaxed) != 0 && side_holder_alive(true);
}

RingStats RingView::stats() const noexcept {
  const RingControl& c = *ctl_;
  return {c.abandoned_puts.load(std::memory_order_relaxed),
          c.abandoned_gets.load(std::memory_order_relaxed),
          c.bias_grants[0].load(std::memory_order_relaxed),
          c.bias_grants[1].load(std::memory_order_relaxed),
          c.bias_revocations[0].load(std::memory_order_relaxed),
          c.bias_revocations[1].load(std::memory_order_relaxed),
          c.bias_handovers[0].load(std::memory_order_relaxed),
          c.bias_handovers[1].load(std::memory_order_relaxed)};
}

std::size_t RingView::unfinished() const noexcept {
  return count_of(ctl_->head.load(std::memory_order_acquire)) -
         ctl_->tasks_done.load(std::memory_order_acquire);
}

void RingView::task_done() {
  RingControl& c = *ctl_;
  std::uint32_t done = c.tasks_done.load(std::memory_order_relaxed);
  for (;;) {
    // More task_done() calls than items taken by get() is a caller error, as in Python.
    if (done == count_of(c.tail.load(std::memory_order_acquire))) {
      throw UsageError(std::string("task_done() called more times than items were taken from the ") + what_);
    }
    if (c.tasks_done.compare_exchange_weak(done, done + 1, std::memory_order_acq_rel)) break;
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (c.join_waiters.load(std::memory_order_relaxed) != 0) sys::futex_wake(&c.tasks_done, INT_MAX);
}

bool RingView::join_tasks(Clock::time_point deadline) {
  RingControl& c = *ctl_;
  c.join_waiters.fetch_add(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool done = false;
  for (;;) {
    const std::uint32_t seen = c.tasks_done.load(std::memory_order_acquire);
    if (seen == count_of(c.head.load(std::memory_order_acquire))) {
      done = true;
      break;
    }
    if (Clock::now() >= deadline) break;
    sys::futex_wait(&c.tasks_done, seen, sys::next_wake(deadline));
  }
  c.join_waiters.fetch_sub(1, std::memory_order_relaxed);
  return done;
}

void RingView::arm_fd() noexcept {
  RingControl& c = *ctl_;
  if (c.fd_armed.exchange(1, std::memory_order_acq_rel) != 0) return;
  // Records already waiting were committed before anyone watched: signal for them.
  sleeper_fence();
  if (event_fd_ >= 0 && size() != 0 && c.data_signaled.exchange(1, std::memory_order_acq_rel) == 0) {
    (void)::eventfd_write(event_fd_, 1);
  }
}

}  // namespace mproc::detail
