// Semaphore, BoundedSemaphore and Event: a counter or a flag in shared memory, with futex waits.
// The handshake is the ring's (docs/design/queue.md, "Waking"): a waiter announces itself and
// re-checks, a waker changes the word, fences and wakes only if someone announced; sleepers
// re-check on a 100 ms heartbeat, which bounds the delay if a waker dies in between.
#include <algorithm>
#include <atomic>
#include <climits>
#include <new>
#include <string>

#include "futex.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "named.hpp"
#include "robust_mutex.hpp"
#include "mproc/semaphore.hpp"
#include "segment.hpp"
#include "wait.hpp"

namespace mproc {
namespace {

using detail::Clock;
using detail::RobustLock;
using detail::SegmentHeader;
using detail::SegmentKind;

using sys::may_wait;
using sys::next_wake;

}  // namespace

// ---- Semaphore -----------------------------------------------------------------------------------

struct Semaphore::Block {
  static constexpr std::uint32_t kLayoutVersion = 1;
  SegmentHeader header;
  alignas(64) std::atomic<std::uint32_t> value;  // the count; also the futex word waiters sleep on
  std::atomic<std::uint32_t> waiters;            // processes announced as (about to be) asleep
  std::uint32_t bound;                           // BoundedSemaphore: the initial value; 0: none
};

void Semaphore::init_block(void* mem, const void* value_and_bound) {
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
  static_assert(std::is_standard_layout_v<Block>);
  const auto* vb = static_cast<const std::uint32_t*>(value_and_bound);
  auto* b = new (mem) Block{};
  b->value.store(vb[0], std::memory_order_relaxed);
  b->bound = vb[1];
}

Semaphore::Semaphore(std::uint32_t value, std::uint32_t bound)
    : mapping_(detail::Mapping::shared_anonymous(sizeof(Block), bound ? "BoundedSemaphore" : "Semaphore")) {
  const std::uint32_t vb[2] = {value, bound};
  init_block(mapping_.data(), vb);
  block()->header.publish(bound ? SegmentKind::bounded_semaphore : SegmentKind::semaphore,
                          Block::kLayoutVersion, sizeof(Block));
}

Semaphore::Semaphore(const detail::NamedSpec& spec, std::uint32_t value, std::uint32_t bound, bool bounded) {
  const std::uint32_t vb[2] = {value, bound};
  mapping_ = detail::attach_named(spec, bounded ? SegmentKind::bounded_semaphore : SegmentKind::semaphore,
                                  Block::kLayoutVersion, sizeof(Block), 0, &Semaphore::init_block, vb);
}

void Semaphore::unlink(std::string_view name) {
  detail::unlink_named(name, "Semaphore");
}

Semaphore::Block* Semaphore::block() const noexcept {
  return static_cast<Block*>(mapping_.data());
}

std::uint32_t Semaphore::get_value() const noexcept {
  return block()->value.load(std::memory_order_relaxed);
}

bool Semaphore::acquire_until(Clock::time_point deadline) {
  Block& b = *block();
  auto take = [&b] {
    std::uint32_t v = b.value.load(std::memory_order_relaxed);
    // Case analysis: v == 0, nothing to take; otherwise the CAS either takes one count (and
    // acquires what the matching release published) or reloads v after a competitor changed it.
    while (v != 0) {
      if (b.value.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  };
  if (take()) return true;
  if (!may_wait(deadline)) return false;
  for (sys::Spin spin(true); spin.next();) {
    if (take()) return true;
  }
  for (;;) {
    b.waiters.fetch_add(1, std::memory_order_seq_cst);  // pairs with the fence in release()
    if (take()) {
      b.waiters.fetch_sub(1, std::memory_order_relaxed);
      return true;
    }
    if (Clock::now() >= deadline) {
      b.waiters.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    sys::futex_wait(&b.value, 0, next_wake(deadline));
    b.waiters.fetch_sub(1, std::memory_order_relaxed);
    if (take()) return true;
  }
}

void Semaphore::release(std::uint32_t n) {
  Block& b = *block();
  std::uint32_t v = b.value.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t wanted = std::uint64_t{v} + n;
    if (b.bound != 0 && wanted > b.bound) {
      throw UsageError("BoundedSemaphore released too many times (its value would exceed " +
                       std::to_string(b.bound) + ")");
    }
    if (wanted > UINT32_MAX) throw UsageError("Semaphore value overflow");
    if (b.value.compare_exchange_weak(v, static_cast<std::uint32_t>(wanted), std::memory_order_release,
                                      std::memory_order_relaxed)) {
      break;
    }
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);  // the waker's half of the handshake
  if (b.waiters.load(std::memory_order_relaxed) != 0) {
    sys::futex_wake(&b.value, static_cast<int>(std::min<std::uint32_t>(n, INT_MAX)));
  }
}

// ---- Event ---------------------------------------------------------------------------------------

struct Event::Block {
  static constexpr std::uint32_t kLayoutVersion = 1;
  SegmentHeader header;
  alignas(64) std::atomic<std::uint32_t> flag;  // 0 clear, 1 set; the futex word
  std::atomic<std::uint32_t> waiters;
};

void Event::init_block(void* mem, const void*) {
  new (mem) Block{};
}

Event::Event() : mapping_(detail::Mapping::shared_anonymous(sizeof(Block), "Event")) {
  init_block(mapping_.data(), nullptr);
  block()->header.publish(SegmentKind::event, Block::kLayoutVersion, sizeof(Block));
}

Event::Event(const detail::NamedSpec& spec)
    : mapping_(detail::attach_named(spec, SegmentKind::event, Block::kLayoutVersion, sizeof(Block), 0,
                                    &Event::init_block, nullptr)) {}

void Event::unlink(std::string_view name) {
  detail::unlink_named(name, "Event");
}

Event::Block* Event::block() const noexcept {
  return static_cast<Block*>(mapping_.data());
}

void Event::set() noexcept {
  Block& b = *block();
  b.flag.store(1, std::memory_order_seq_cst);  // release for what was written before set()
  if (b.waiters.load(std::memory_order_seq_cst) != 0) sys::futex_wake(&b.flag, INT_MAX);
}

void Event::clear() noexcept {
  block()->flag.store(0, std::memory_order_relaxed);
}

bool Event::is_set() const noexcept {
  return block()->flag.load(std::memory_order_acquire) != 0;
}

bool Event::wait_until(Clock::time_point deadline) {
  Block& b = *block();
  if (is_set()) return true;
  if (!may_wait(deadline)) return false;
  for (sys::Spin spin(true); spin.next();) {
    if (is_set()) return true;
  }
  for (;;) {
    b.waiters.fetch_add(1, std::memory_order_seq_cst);  // pairs with set()'s seq_cst store/load
    if (b.flag.load(std::memory_order_seq_cst) != 0 || Clock::now() >= deadline) {
      b.waiters.fetch_sub(1, std::memory_order_relaxed);
      return is_set();
    }
    sys::futex_wait(&b.flag, 0, next_wake(deadline));
    b.waiters.fetch_sub(1, std::memory_order_relaxed);
    if (is_set()) return true;
  }
}

// ---- Condition -----------------------------------------------------------------------------------

struct Condition::Block {
  static constexpr std::uint32_t kLayoutVersion = 1;
  SegmentHeader header;
  alignas(64) std::atomic<std::uint32_t> seq;  // bumped by every notify; the futex word
  std::atomic<std::uint32_t> waiters;
};

void Condition::init_block(void* mem, const void*) {
  new (mem) Block{};
}

Condition::Condition(detail::RobustLock& lock)
    : lock_(&lock), mapping_(detail::Mapping::shared_anonymous(sizeof(Block), "Condition")) {
  init_block(mapping_.data(), nullptr);
  block()->header.publish(SegmentKind::condition, Block::kLayoutVersion, sizeof(Block));
}

Condition::Condition() : own_lock_(std::make_unique<RLock>()), lock_(nullptr) {
  detail::name_guarded_lock(*own_lock_, "Condition", {});
  lock_ = own_lock_.get();
  mapping_ = detail::Mapping::shared_anonymous(sizeof(Block), "Condition");
  init_block(mapping_.data(), nullptr);
  block()->header.publish(SegmentKind::condition, Block::kLayoutVersion, sizeof(Block));
}

Condition::Condition(const detail::NamedSpec& spec) : lock_(nullptr) {
  const std::string lock_name = std::string(spec.name) + ".lock";
  own_lock_.reset(new RLock(detail::NamedSpec{lock_name, spec.how, spec.options}));
  detail::name_guarded_lock(*own_lock_, "Condition", spec.name);
  lock_ = own_lock_.get();
  try {
    mapping_ = detail::attach_named(spec, SegmentKind::condition, Block::kLayoutVersion, sizeof(Block), 0,
                                    &Condition::init_block, nullptr);
  } catch (...) {
    // A failed creation leaves nothing behind: take back the lock if this call created it
    // (unless somebody opened it meanwhile).
    if (own_lock_->created()) {
      own_lock_.reset();
      detail::discard_named_if_unused(lock_name);
    }
    throw;
  }
}

void Condition::unlink(std::string_view name) {
  RLock::unlink(std::string(name) + ".lock");
  detail::unlink_named(name, "Condition");
}

Condition::~Condition() = default;

Condition::Block* Condition::block() const noexcept {
  return static_cast<Block*>(mapping_.data());
}

void Condition::check_held(const char* what) const {
  if (!lock_->held_by_this_thread()) {
    throw UsageError(std::string("cannot ") + what +
                     " a Condition without holding its lock in the calling thread");
  }
}

Waited Condition::wait_until(Clock::time_point deadline) {
  check_held("wait on");
  Block& b = *block();
  // Read the sequence before releasing the lock: a notify() made after the release changes it,
  // so the futex wait below cannot miss it.
  const std::uint32_t seen = b.seq.load(std::memory_order_acquire);
  b.waiters.fetch_add(1, std::memory_order_seq_cst);
  int depth = 0;
  while (lock_->held_by_this_thread()) {  // every level of an RLock, as Python's _release_save
    lock_->release();
    ++depth;
  }
  bool notified = false;
  for (;;) {
    if (b.seq.load(std::memory_order_acquire) != seen) {
      notified = true;
      break;
    }
    if (Clock::now() >= deadline) break;
    sys::futex_wait(&b.seq, seen, next_wake(deadline));
  }
  b.waiters.fetch_sub(1, std::memory_order_relaxed);
  const Acquired got = lock_->acquire();
  for (int i = 1; i < depth; ++i) (void)lock_->acquire();
  return Waited(!notified, got.owner_died());
}

void Condition::notify(std::uint32_t n) {
  check_held("notify");
  Block& b = *block();
  b.seq.fetch_add(1, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with the waiter's seq_cst increment
  if (b.waiters.load(std::memory_order_relaxed) != 0) {
    sys::futex_wake(&b.seq, static_cast<int>(std::min<std::uint32_t>(n, INT_MAX)));
  }
}

void Condition::notify_all() {
  notify(UINT32_MAX);
}

// ---- Barrier -------------------------------------------------------------------------------------

struct Barrier::Block {
  static constexpr std::uint32_t kLayoutVersion = 1;
  SegmentHeader header;
  pthread_mutex_t mutex;  // robust; serialises arrivals, reset() and abort()
  std::uint32_t parties;
  // Written under `mutex`; atomic because waiters and n_waiting() read them without it.
  std::atomic<std::uint32_t> count;                   // arrived in the current generation
  std::atomic<std::uint32_t> aborted_generation;      // reset() released generation (this - 1) broken
  alignas(64) std::atomic<std::uint32_t> generation;  // bumped when a round ends; the futex word
  std::atomic<std::uint32_t> broken;
};

void Barrier::init_block(void* mem, const void* parties) {
  auto* b = new (mem) Block{};
  const int rc = sys::init_robust_mutex(&b->mutex, false);
  if (rc != 0) throw Error(rc, "cannot initialise", "Barrier");
  b->parties = *static_cast<const std::uint32_t*>(parties);
  b->aborted_generation.store(UINT32_MAX, std::memory_order_relaxed);
}

Barrier::Barrier(std::uint32_t parties, std::function<void()> action, Clock::duration timeout)
    : action_(std::move(action)),
      timeout_(timeout),
      mapping_(detail::Mapping::shared_anonymous(sizeof(Block), "Barrier")) {
  if (parties == 0) throw UsageError("a Barrier needs at least one party");
  init_block(mapping_.data(), &parties);
  block()->header.publish(SegmentKind::barrier, Block::kLayoutVersion, sizeof(Block));
}

Barrier::Barrier(const detail::NamedSpec& spec, std::uint32_t parties, std::function<void()> action,
                 Clock::duration timeout)
    : action_(std::move(action)), timeout_(timeout) {
  if (parties == 0) throw UsageError("a Barrier needs at least one party");
  mapping_ = detail::attach_named(spec, SegmentKind::barrier, Block::kLayoutVersion, sizeof(Block), 0,
                                  &Barrier::init_block, &parties);
}

void Barrier::unlink(std::string_view name) {
  detail::unlink_named(name, "Barrier");
}

Barrier::Block* Barrier::block() const noexcept {
  return static_cast<Block*>(mapping_.data());
}

void Barrier::lock_block() {
  Block& b = *block();
  const int rc = sys::lock_robust_mutex(&b.mutex, Clock::time_point::max());
  if (rc == EOWNERDEAD) {
    // A party died inside the bookkeeping: the count cannot be trusted. Break the barrier.
    ::pthread_mutex_consistent(&b.mutex);
    b.broken.store(1, std::memory_order_release);
  } else if (rc != 0) {
    throw Error(rc, "cannot lock", "Barrier");
  }
}

void Barrier::unlock_block() noexcept {
  ::pthread_mutex_unlock(&block()->mutex);
}

std::uint32_t Barrier::wait() {
  return wait_until(timeout_ > Clock::duration::zero() ? detail::deadline_after(timeout_)
                                                       : Clock::time_point::max());
}

std::uint32_t Barrier::wait_until(Clock::time_point deadline) {
  Block& b = *block();
  lock_block();
  if (b.broken.load(std::memory_order_acquire) != 0) {
    unlock_block();
    throw BrokenBarrier("the Barrier is broken (reset() it to use it again)");
  }
  const std::uint32_t generation = b.generation.load(std::memory_order_relaxed);
  const std::uint32_t index = b.count.fetch_add(1, std::memory_order_relaxed);
  if (index + 1 == b.parties) {
    // Last to arrive: run the action, then release everyone.
    if (action_) {
      try {
        action_();
      } catch (...) {
        b.broken.store(1, std::memory_order_release);
        b.generation.fetch_add(1, std::memory_order_release);
        unlock_block();
        sys::futex_wake(&b.generation, INT_MAX);
        throw;
      }
    }
    b.count.store(0, std::memory_order_relaxed);
    b.generation.fetch_add(1, std::memory_order_release);
    unlock_block();
    sys::futex_wake(&b.generation, INT_MAX);
    return index;
  }
  unlock_block();

  for (;;) {
    const std::uint32_t now_gen = b.generation.load(std::memory_order_acquire);
    if (now_gen != generation) {
      if (b.aborted_generation.load(std::memory_order_acquire) == generation + 1 ||
          b.broken.load(std::memory_order_acquire) != 0) {
        throw BrokenBarrier("the Barrier was reset or broken while waiting");
      }
      return index;
    }
    if (b.broken.load(std::memory_order_acquire) != 0) {
      throw BrokenBarrier("the Barrier was broken while waiting");
    }
    if (Clock::now() >= deadline) {
      // Timed out: break the barrier for everyone, unless the round ended meanwhile.
      lock_block();
      const bool ended = b.generation.load(std::memory_order_relaxed) != generation;
      if (!ended) b.broken.store(1, std::memory_order_release);
      unlock_block();
      if (ended) continue;
      sys::futex_wake(&b.generation, INT_MAX);
      throw BrokenBarrier("Barrier wait timed out: the barrier is now broken");
    }
    sys::futex_wait(&b.generation, generation, next_wake(deadline));
    // A party that died holding the barrier's lock (say, inside the action) must not leave us
    // waiting until a timeout that may never come: probe the lock on each heartbeat.
    const int rc = ::pthread_mutex_trylock(&b.mutex);
    if (rc == 0 || rc == EOWNERDEAD) {
      if (rc == EOWNERDEAD) {
        ::pthread_mutex_consistent(&b.mutex);
        b.broken.store(1, std::memory_order_release);
      }
      unlock_block();
    }
  }
}

void Barrier::reset() {
  Block& b = *block();
  lock_block();
  if (b.count.load(std::memory_order_relaxed) > 0) {
    b.aborted_generation.store(b.generation.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  b.count.store(0, std::memory_order_relaxed);
  b.broken.store(0, std::memory_order_release);
  b.generation.fetch_add(1, std::memory_order_release);
  unlock_block();
  sys::futex_wake(&b.generation, INT_MAX);
}

void Barrier::abort() {
  Block& b = *block();
  lock_block();
  b.broken.store(1, std::memory_order_release);
  unlock_block();
  sys::futex_wake(&b.generation, INT_MAX);
}

std::uint32_t Barrier::parties() const noexcept {
  return block()->parties;
}

std::uint32_t Barrier::n_waiting() const noexcept {
  const Block& b = *block();
  return b.broken.load(std::memory_order_acquire) != 0 ? 0 : b.count.load(std::memory_order_relaxed);
}

bool Barrier::broken() const noexcept {
  return block()->broken.load(std::memory_order_acquire) != 0;
}

}  // namespace mproc
