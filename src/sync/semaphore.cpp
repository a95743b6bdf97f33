// Semaphore and BoundedSemaphore: a counter in shared memory, with futex waits.
// The handshake is the ring's (docs/design/queue.md, "Waking"): a waiter announces itself and
// re-checks, a waker changes the word, fences and wakes only if someone announced; sleepers
// re-check on a 100 ms heartbeat, which bounds the delay if a waker dies in between.
#include <algorithm>
#include <atomic>
#include <climits>
#include <new>
#include <string>

#include "mproc/semaphore.hpp"
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

Semaphore::Semaphore(detail::Mapping mapping, bool bounded) : mapping_(std::move(mapping)) {
  // A Semaphore& may name a BoundedSemaphore (its base): either kind is a semaphore.
  if (!bounded && mapping_.size() >= sizeof(SegmentHeader) &&
      static_cast<const SegmentHeader*>(mapping_.data())->kind == SegmentKind::bounded_semaphore) {
    bounded = true;
  }
  detail::check_segment_header(mapping_.data(), mapping_.size(),
                               bounded ? SegmentKind::bounded_semaphore : SegmentKind::semaphore,
                               Block::kLayoutVersion, 0,
                               bounded ? "a BoundedSemaphore received from another process"
                                       : "a Semaphore received from another process");
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

bool Semaphore::acquire_until(detail::Deadline deadline) {
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

}  // namespace mproc
