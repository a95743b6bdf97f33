#pragma once
// The one loop in which a put waits for room, a get for a record, and wait_readable for a record
// without the consumer side: spin, then sleep (queue.md, "Waking": announce, fence, snapshot,
// re-check, sleep), until ready, the deadline, a close or a gone peer.
#include <atomic>
#include <cstdint>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/ring.hpp"
#include "os/wait.hpp"
#include "ring/side.hpp"
#include "ring/waiter.hpp"

namespace mproc::detail {

/// What a waiter's hooks say: wait on, stop ready, or stop with the ring closed.
enum class Verdict : std::uint8_t { wait, ready, closed };

/// One sleep of a waiter (queue.md, "Waking"): announce in `self`'s waiting flag, fence,
/// snapshot the wake sequence, re-check, sleep. False if the pipe's peer end is gone.
template <class Want>
bool sleep_once(const RingState& s, Side self, Want& want, Clock::time_point deadline) {
  self.waiting().store(1, std::memory_order_relaxed);
  sleeper_fence();
  const std::uint32_t seen = self.wake_seq().load(std::memory_order_acquire);
  want.reload();
  bool peer_ok = true;
  if (!want.ready() && s.ctl->closed.load(std::memory_order_acquire) == 0) {
    peer_ok = sleep(s, self, seen, deadline);
  }
  self.waiting().store(0, std::memory_order_relaxed);
  return peer_ok;
}

/// Waits until `want.ready()`. `Want` (a put's, a get's or wait_readable's) supplies:
///   bool ready()                 whether what it waits for is there, by its cached words
///   void reload()                re-reads the other side's commit word into its cache
///   Verdict look_at_close()      before each spin step: whether a close ends the wait
///   RingStatus at_deadline()     what to answer once `deadline` has passed
///   void before_sleep()          may throw (a put into a closed queue, to a gone peer)
///   Verdict after_peer_gone()    after a sleep that found the pipe's peer gone
/// The caller has reloaded once. Sleeps announce themselves in `self`'s waiting flag.
/// `learned`: the side's LearnedPauses state in this view, which the caller may write (it holds
/// the side); null for a fixed full pause phase. A wait that ends ready teaches it; one that ends
/// at its deadline, or in a close, leaves it.
template <class Want>
RingStatus wait_until_ready(const RingState& s, Side self, Want& want, Clock::time_point deadline,
                            std::uint8_t* learned = nullptr) {
  const int pauses = learned == nullptr ? sys::Spin::kPauses : sys::LearnedPauses(*learned).pauses();
  sys::Spin spin(sys::may_wait(deadline), pauses);  // a try_ call does not spin
  bool waited = false;
  while (!want.ready()) {
    waited = true;
    Verdict v = want.look_at_close();
    if (v == Verdict::wait && !spin.next()) {
      if (Clock::now() >= deadline) return want.at_deadline();
      want.before_sleep();
      if (!sleep_once(s, self, want, deadline)) v = want.after_peer_gone();
    }
    if (v != Verdict::wait) return v == Verdict::ready ? RingStatus::ok : RingStatus::closed;
    want.reload();
  }
  // Only a wait teaches: not a call that found what it wanted at once (a stale cached word). A
  // wait that slept had spent its spin, so only_paused() is false for it as for one that yielded.
  if (learned != nullptr && waited) sys::LearnedPauses(*learned).ended(spin.only_paused());
  return RingStatus::ok;
}

}  // namespace mproc::detail
