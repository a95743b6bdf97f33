// Barrier: a generation count and the parties waiting, in shared memory, with futex waits.
// The handshake is the ring's (docs/design/queue.md, "Waking"): a waiter announces itself and
// re-checks, a waker changes the word, fences and wakes only if someone announced; sleepers
// re-check on a 100 ms heartbeat, which bounds the delay if a waker dies in between.
#include <algorithm>
#include <atomic>
#include <climits>
#include <new>
#include <string>

#include "mproc/barrier.hpp"
#include "mproc/error.hpp"
#include "os/futex.hpp"
#include "os/robust_mutex.hpp"
#include "os/wait.hpp"
#include "shm/named.hpp"
#include "shm/segment.hpp"

namespace mproc {
namespace {

using detail::Clock;
using detail::SegmentHeader;
using detail::SegmentKind;

using sys::next_wake;

// A party that died holding the barrier's lock (say, inside the action) must not leave the others
// waiting until a timeout that may never come: they probe the lock on each heartbeat, and the
// first to find its holder dead breaks the barrier.
void break_if_holder_died(pthread_mutex_t& mutex, std::atomic<std::uint32_t>& broken) noexcept {
  const int rc = ::pthread_mutex_trylock(&mutex);
  if (rc != 0 && rc != EOWNERDEAD) return;
  if (rc == EOWNERDEAD) {
    ::pthread_mutex_consistent(&mutex);
    broken.store(1, std::memory_order_release);
  }
  ::pthread_mutex_unlock(&mutex);
}

}  // namespace

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

Barrier::Barrier(detail::Mapping mapping) : timeout_(Clock::duration::zero()), mapping_(std::move(mapping)) {
  detail::check_segment_header(mapping_.data(), mapping_.size(), SegmentKind::barrier, Block::kLayoutVersion,
                               0, "a Barrier received from another process");
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

std::uint32_t Barrier::wait_until(detail::Deadline deadline) {
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
    break_if_holder_died(b.mutex, b.broken);
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
