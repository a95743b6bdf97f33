// close() and JoinableQueue's task accounting (docs/design/queue.md, "Close").
#include "ring/close.hpp"

#include <atomic>
#include <climits>
#include <string>

#include "mproc/error.hpp"
#include "os/futex.hpp"
#include "os/wait.hpp"
#include "ring/layout.hpp"
#include "ring/side.hpp"

namespace mproc::detail {

void finish_close(RingState& s) {
  // Wait for a put in flight (it holds put_mutex, or the producer bias) to finish; then no put
  // can commit again.
  const Side producers = Side::producers(s);
  OwnerWait forever(Clock::time_point::max());
  (void)lock_side(producers, forever);
  MutexGuard locked(&producers.mutex());
  (void)revoke_bias(producers, forever, false);
  s.ctl->closed.store(2, std::memory_order_release);
}

void RingView::close() {
  RingControl& c = *s_.ctl;
  std::uint32_t expected = 0;
  c.closed.compare_exchange_strong(expected, 1, std::memory_order_acq_rel);
  // Wake every sleeper so that it sees the flag.
  c.data_seq.fetch_add(1, std::memory_order_release);
  c.space_seq.fetch_add(1, std::memory_order_release);
  sys::futex_wake(&c.data_seq, INT_MAX);
  sys::futex_wake(&c.space_seq, INT_MAX);
  if (c.closed.load(std::memory_order_acquire) == 1) finish_close(s_);
  c.data_seq.fetch_add(1, std::memory_order_release);
  sys::futex_wake(&c.data_seq, INT_MAX);
}

bool RingView::closed() const noexcept {
  return s_.ctl->closed.load(std::memory_order_acquire) != 0;
}

std::size_t RingView::unfinished() const noexcept {
  return count_of(s_.ctl->head.load(std::memory_order_acquire)) -
         s_.ctl->tasks_done.load(std::memory_order_acquire);
}

void RingView::task_done() {
  RingControl& c = *s_.ctl;
  std::uint32_t done = c.tasks_done.load(std::memory_order_relaxed);
  for (;;) {
    // More task_done() calls than items taken by get() is a caller error, as in Python.
    if (done == count_of(c.tail.load(std::memory_order_acquire))) {
      throw UsageError(std::string("task_done() called more times than items were taken from the ") +
                       s_.what);
    }
    if (c.tasks_done.compare_exchange_weak(done, done + 1, std::memory_order_acq_rel)) break;
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (c.join_waiters.load(std::memory_order_relaxed) != 0) sys::futex_wake(&c.tasks_done, INT_MAX);
}

bool RingView::join_tasks(Clock::time_point deadline) {
  RingControl& c = *s_.ctl;
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

}  // namespace mproc::detail
