// Condition: a sequence word in shared memory beside an RLock, with futex waits.
// The handshake is the ring's (docs/design/queue.md, "Waking"): a waiter announces itself and
// re-checks, a waker changes the word, fences and wakes only if someone announced; sleepers
// re-check on a 100 ms heartbeat, which bounds the delay if a waker dies in between.
#include <algorithm>
#include <atomic>
#include <climits>
#include <new>
#include <string>

#include "mproc/condition.hpp"
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

}  // namespace

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

Condition::Condition(detail::RobustLock& lock, detail::Mapping mapping)
    : lock_(&lock), mapping_(std::move(mapping)) {
  detail::check_segment_header(mapping_.data(), mapping_.size(), SegmentKind::condition,
                               Block::kLayoutVersion, 0, "a Condition received from another process");
}

Condition::Condition(detail::Mapping own_lock, detail::Mapping mapping)
    : own_lock_(new RLock(std::move(own_lock))), lock_(own_lock_.get()), mapping_(std::move(mapping)) {
  detail::name_guarded_lock(*own_lock_, "Condition", {});
  detail::check_segment_header(mapping_.data(), mapping_.size(), SegmentKind::condition,
                               Block::kLayoutVersion, 0, "a Condition received from another process");
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

Waited Condition::wait_until(detail::Deadline deadline) {
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

}  // namespace mproc
