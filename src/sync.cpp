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
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/semaphore.hpp"
#include "segment.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MPROC_PAUSE() _mm_pause()
#else
#define MPROC_PAUSE() ((void)0)
#endif

namespace mproc {
namespace {

using detail::Clock;
using detail::SegmentHeader;
using detail::SegmentKind;

constexpr int kSpins = 1000;
constexpr auto kHeartbeat = std::chrono::milliseconds(100);

bool may_wait(Clock::time_point deadline) noexcept {
  return deadline == Clock::time_point::max() || deadline > Clock::now();
}

Clock::time_point next_wake(Clock::time_point deadline) noexcept {
  return std::min(deadline, Clock::now() + kHeartbeat);
}

}  // namespace

// ---- Semaphore -----------------------------------------------------------------------------------

struct Semaphore::Block {
  static constexpr std::uint32_t kLayoutVersion = 1;
  SegmentHeader header;
  alignas(64) std::atomic<std::uint32_t> value;  // the count; also the futex word waiters sleep on
  std::atomic<std::uint32_t> waiters;            // processes announced as (about to be) asleep
  std::uint32_t bound;                           // BoundedSemaphore: the initial value; 0: none
};

Semaphore::Semaphore(std::uint32_t value, std::uint32_t bound)
    : mapping_(detail::Mapping::shared_anonymous(sizeof(Block), bound ? "BoundedSemaphore" : "Semaphore")) {
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
  static_assert(std::is_standard_layout_v<Block>);
  auto* b = new (mapping_.data()) Block{};
  b->value.store(value, std::memory_order_relaxed);
  b->bound = bound;
  b->header.publish(bound ? SegmentKind::bounded_semaphore : SegmentKind::semaphore,
                    Block::kLayoutVersion, sizeof(Block));
}

Semaphore::Block* Semaphore::block() const noexcept { return static_cast<Block*>(mapping_.data()); }

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
  for (int i = 0; i < kSpins; ++i) {
    MPROC_PAUSE();
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

Event::Event() : mapping_(detail::Mapping::shared_anonymous(sizeof(Block), "Event")) {
  auto* b = new (mapping_.data()) Block{};
  b->header.publish(SegmentKind::event, Block::kLayoutVersion, sizeof(Block));
}

Event::Block* Event::block() const noexcept { return static_cast<Block*>(mapping_.data()); }

void Event::set() noexcept {
  Block& b = *block();
  b.flag.store(1, std::memory_order_seq_cst);  // release for what was written before set()
  if (b.waiters.load(std::memory_order_seq_cst) != 0) sys::futex_wake(&b.flag, INT_MAX);
}

void Event::clear() noexcept { block()->flag.store(0, std::memory_order_relaxed); }

bool Event::is_set() const noexcept { return block()->flag.load(std::memory_order_acquire) != 0; }

bool Event::wait_until(Clock::time_point deadline) {
  Block& b = *block();
  if (is_set()) return true;
  if (!may_wait(deadline)) return false;
  for (int i = 0; i < kSpins; ++i) {
    MPROC_PAUSE();
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

}  // namespace mproc
