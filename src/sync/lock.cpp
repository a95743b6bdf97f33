// Lock and RLock: a robust, process-shared pthread mutex plus a small amount of our own state.
// Layout and invariants: docs/design/locks.md.
#include "mproc/lock.hpp"

#include <pthread.h>

#include <cerrno>
#include <cstddef>
#include <new>
#include <string>

#include "mproc/detail/demangle.hpp"
#include "mproc/error.hpp"
#include "shm/named.hpp"
#include "os/robust_mutex.hpp"
#include "shm/segment.hpp"
#include "os/sys.hpp"

namespace mproc::detail {

struct RobustLock::Block {
  static constexpr std::uint32_t kLayoutVersion = 2;  // 2: the mutex on a cache line of its own

  SegmentHeader header;
  // PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST, ERRORCHECK (Lock) or RECURSIVE (RLock).
  // glibc's robust list makes the kernel mark it FUTEX_OWNER_DIED when the owner dies. Its
  // futex word is also the one truth about who holds it (sys::robust_mutex_owner).
  // On a cache line of its own, with `poisoned`: a hand-off between processes then moves one
  // line, not two (at offset 48 the mutex straddled a line boundary).
  alignas(64) pthread_mutex_t mutex;
  // Guarded by mutex: 1 from an owner's death until mark_consistent(). Kept by us rather than
  // left to POSIX, which would make the mutex unusable forever once released unrepaired.
  std::uint32_t poisoned;
};

inline RobustLock::Block* RobustLock::block() const noexcept {
  return static_cast<Block*>(mapping_.data());
}

namespace {

[[noreturn]] void fail(int err, const char* what, const char* kind) {
  throw Error(err, what, kind);
}

}  // namespace

// Constructs the Block in fresh zeroed memory (anonymous or a newly created named segment). The
// header is published by the caller, last.
void RobustLock::init_block(void* mem, const void* recursive) {
  static_assert(std::is_standard_layout_v<Block>);
  static_assert(offsetof(Block, mutex) == kSegmentDataOffset,
                "the header comes first, then the mutex's line");
  static_assert(offsetof(Block, poisoned) + sizeof(std::uint32_t) <= 2 * kSegmentDataOffset);
  auto* b = new (mem) Block{};
  const bool r = *static_cast<const bool*>(recursive);
  const int rc = sys::init_robust_mutex(&b->mutex, r);
  if (rc != 0) fail(rc, "cannot initialise", r ? "RLock" : "Lock");
}

RobustLock::RobustLock(bool recursive)
    : mapping_(Mapping::shared_anonymous(sizeof(Block), recursive ? "RLock" : "Lock")),
      label_(recursive ? "RLock" : "Lock") {
  init_block(mapping_.data(), &recursive);
  block()->header.publish(recursive ? SegmentKind::rlock : SegmentKind::lock, Block::kLayoutVersion,
                          sizeof(Block));
  find_block();
}

RobustLock::RobustLock(const NamedSpec& spec, bool recursive)
    : mapping_(attach_named(spec, recursive ? SegmentKind::rlock : SegmentKind::lock, Block::kLayoutVersion,
                            sizeof(Block), 0, &RobustLock::init_block, &recursive, &created_)),
      label_(std::string(recursive ? "RLock" : "Lock") + " \"" + std::string(spec.name) + "\"") {
  find_block();
}

RobustLock::RobustLock(Mapping mapping, bool recursive)
    : mapping_(std::move(mapping)), label_(recursive ? "RLock" : "Lock") {
  check_segment_header(
      mapping_.data(), mapping_.size(), recursive ? SegmentKind::rlock : SegmentKind::lock,
      Block::kLayoutVersion, 0,
      recursive ? "an RLock received from another process" : "a Lock received from another process");
  find_block();
}

void RobustLock::find_block() noexcept {
  mutex_ = &block()->mutex;
  poisoned_ = &block()->poisoned;
}

void name_guarded_lock(RobustLock& lock, const char* kind, std::string_view name) {
  lock.label_ = "the lock of " +
                (name.empty() ? with_article(kind) : std::string(kind) + " \"" + std::string(name) + "\"");
}

}  // namespace mproc::detail

namespace mproc {

void Lock::unlink(std::string_view name) {
  detail::unlink_named(name, "Lock");
}
void RLock::unlink(std::string_view name) {
  detail::unlink_named(name, "RLock");
}

}  // namespace mproc

namespace mproc::detail {

RobustLock::~RobustLock() {
  // A held robust mutex is linked into this thread's robust list, which the kernel walks when
  // the thread exits. Unmapping it while held would leave a dangling entry that could flag
  // whatever memory is mapped there later, so release it first. The mutex itself is not
  // destroyed: other processes may still be using their mapping of it.
  Block* b = block();
  if (b == nullptr) return;
  while (held_by_this_thread()) (void)::pthread_mutex_unlock(&b->mutex);
}

bool RobustLock::held_by_this_thread() const noexcept {
  return sys::robust_mutex_owner(&block()->mutex) == sys::current_tid();
}

// The hot paths, acquire_until() and release(), are inline in lock.hpp: a glibc call and a test
// each. What they cannot finish is here: contention, owner death, errors.
Acquired RobustLock::acquire_slow(int rc, detail::Deadline deadline) {
  Block* b = block();
  if (rc == EBUSY) rc = sys::lock_contended_robust_mutex(&b->mutex, deadline);
  switch (rc) {
    case 0: return b->poisoned != 0 ? Acquired::Status::owner_died : Acquired::Status::ok;
    case ETIMEDOUT: return Acquired::Status::timed_out;
    case EOWNERDEAD:
      // The kernel marked the owner dead and handed us the mutex. Make the pthread mutex usable
      // again at once (otherwise unlocking it would make it ENOTRECOVERABLE for everyone) and
      // record the fact in our own flag, which stays set until the user repairs the state.
      (void)::pthread_mutex_consistent(&b->mutex);
      // (For RLock glibc also discards the dead owner's recursion count: we hold it once.)
      b->poisoned = 1;
      return Acquired::Status::owner_died;
    case EDEADLK:
      // Misuse, not a refusal by the system: the caller broke the contract (error.hpp).
      throw UsageError("cannot acquire " + label_ +
                       ": the calling thread already holds it (use RLock for re-entrant locking)");
    case EAGAIN: fail(rc, ("cannot acquire " + label_ + " again").c_str(), "(recursion limit reached)");
    default: fail(rc, "cannot acquire", kind_name());
  }
}

void RobustLock::release_failed(int rc) const {
  if (rc == EPERM) throw UsageError("cannot release " + label_ + ": not held by the calling thread");
  fail(rc, "cannot release", kind_name());
}

void RobustLock::mark_consistent() {
  if (!held_by_this_thread()) {
    throw UsageError("cannot mark " + label_ + " consistent: not held by the calling thread");
  }
  block()->poisoned = 0;
}

}  // namespace mproc::detail
