// A ring's setup (capacity, initialisation, a view), and what it reports about itself (sizes,
// stats, sleepers, fileno()). The rest of src/ring/, by concern: layout.hpp (the shared layout),
// side.hpp/.cpp (taking a side: bias, lock, hand-over, repair), waiter.hpp/.cpp (sleeping and
// waking), wait_ready.hpp (the wait for room or a record), put.cpp, get.cpp, keep_behind.hpp,
// close.cpp. Read docs/design/queue.md first: these files implement its invariants by number.
#include "mproc/detail/ring.hpp"

#include <sys/eventfd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <new>
#include <string>

#include "mproc/error.hpp"
#include "os/robust_mutex.hpp"
#include "ring/layout.hpp"
#include "ring/side.hpp"
#include "ring/waiter.hpp"
#include "shm/segment.hpp"

namespace mproc::detail {

namespace {

constexpr std::size_t kMinCapacity = 4096;
constexpr std::size_t kMaxCapacity = std::size_t{1} << 34;  // 2^31 units of 8 bytes

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

RingView::RingView(void* base, int wake_fd, const char* what, int event_fd) noexcept {
  s_.ctl = static_cast<RingControl*>(base);
  s_.data = static_cast<std::byte*>(base) + kControlSize;
  s_.capacity = s_.ctl->capacity;
  s_.what = what;
  s_.wake_fd = wake_fd;
  s_.event_fd = event_fd;
  // The waiter is chosen here, once: a pipe direction's socket, or the ring's futexes.
  s_.waiter = static_cast<std::uint8_t>(wake_fd >= 0 ? WaiterKind::socket : WaiterKind::futex);
}

// ---- sizes, stats, fileno() --------------------------------------------------------------

std::size_t RingView::size() const noexcept {
  // Both words only grow (modulo 2^32). If tail reads the same before and after head, that
  // (head, tail) pair existed at the instant head was read: the count is exact then.
  const RingControl& c = *s_.ctl;
  for (;;) {
    const Word t1 = c.tail.load(std::memory_order_acquire);
    const Word h = c.head.load(std::memory_order_acquire);
    const Word t2 = c.tail.load(std::memory_order_acquire);
    if (t1 == t2) return count_of(h) - count_of(t1);
  }
}

bool RingView::full() const noexcept {
  const RingControl& c = *s_.ctl;
  for (;;) {
    const Word t1 = c.tail.load(std::memory_order_acquire);
    const Word h = c.head.load(std::memory_order_acquire);
    const Word t2 = c.tail.load(std::memory_order_acquire);
    if (t1 != t2) continue;
    if (c.max_messages != 0 && count_of(h) - count_of(t1) >= c.max_messages) return true;
    const std::uint32_t used = pos_of(h) - pos_of(t1);
    return s_.capacity / 8 - used < units_for(1);  // not even a 1-byte message fits
  }
}

bool RingView::consumer_waiting() const noexcept {
  return s_.ctl->get_waiting.load(std::memory_order_relaxed) != 0 && side_holder_alive(Side::consumers(s_));
}
bool RingView::producer_waiting() const noexcept {
  return s_.ctl->put_waiting.load(std::memory_order_relaxed) != 0 && side_holder_alive(Side::producers(s_));
}

RingStats RingView::stats() const noexcept {
  const RingControl& c = *s_.ctl;
  return {c.abandoned_puts.load(std::memory_order_relaxed),
          c.abandoned_gets.load(std::memory_order_relaxed),
          c.bias_grants[0].load(std::memory_order_relaxed),
          c.bias_grants[1].load(std::memory_order_relaxed),
          c.bias_revocations[0].load(std::memory_order_relaxed),
          c.bias_revocations[1].load(std::memory_order_relaxed),
          c.bias_handovers[0].load(std::memory_order_relaxed),
          c.bias_handovers[1].load(std::memory_order_relaxed)};
}

void RingView::arm_fd() noexcept {
  RingControl& c = *s_.ctl;
  if (c.fd_armed.exchange(1, std::memory_order_acq_rel) != 0) return;
  // Records already waiting were committed before anyone watched: signal for them.
  sleeper_fence();
  if (s_.event_fd >= 0 && size() != 0 && c.data_signaled.exchange(1, std::memory_order_acq_rel) == 0) {
    (void)::eventfd_write(s_.event_fd, 1);
  }
}

}  // namespace mproc::detail
