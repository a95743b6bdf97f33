// Event: a flag in shared memory, with futex waits.
// The handshake is the ring's (docs/design/queue.md, "Waking"): a waiter announces itself and
// re-checks, a waker changes the word, fences and wakes only if someone announced; sleepers
// re-check on a 100 ms heartbeat, which bounds the delay if a waker dies in between.
#include <algorithm>
#include <atomic>
#include <climits>
#include <new>
#include <string>

#include "mproc/event.hpp"
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

Event::Event(detail::Mapping mapping) : mapping_(std::move(mapping)) {
  detail::check_segment_header(mapping_.data(), mapping_.size(), SegmentKind::event, Block::kLayoutVersion, 0,
                               "an Event received from another process");
}

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

bool Event::wait_until(detail::Deadline deadline) {
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

}  // namespace mproc
