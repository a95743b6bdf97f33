// Waiting and waking: futexes for a queue, the socket for a pipe (waiter.hpp).
#include "ring/waiter.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <ctime>

#include "os/futex.hpp"
#include "os/wait.hpp"

namespace mproc::detail {

namespace {

void wake_futex(const RingState& s, Side sleepers) noexcept {
  RingControl& c = *s.ctl;
  // An armed descriptor (fileno()) becomes readable when the first record lands.
  if (!sleepers.is_producers() && s.event_fd >= 0 && c.fd_armed.load(std::memory_order_relaxed) != 0 &&
      c.data_signaled.exchange(1, std::memory_order_acq_rel) == 0) {
    (void)::eventfd_write(s.event_fd, 1);
  }
  if (sleepers.waiting().load(std::memory_order_relaxed) == 0) return;
  std::atomic<std::uint32_t>& seq = sleepers.wake_seq();
  seq.fetch_add(1, std::memory_order_release);
  sys::futex_wake(&seq, 1);
}

void wake_socket(const RingState& s, Side sleepers) noexcept {
  RingControl& c = *s.ctl;
  // The byte goes to the peer's socket of this direction.
  bool send = sleepers.waiting().load(std::memory_order_relaxed) != 0;
  if (!sleepers.is_producers() && c.fd_armed.load(std::memory_order_relaxed) != 0) {
    // An external poller: keep the socket readable while records wait (one byte pending).
    send = c.data_signaled.exchange(1, std::memory_order_acq_rel) == 0 || send;
  }
  if (send) (void)::send(s.wake_fd, "w", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

bool sleep_on_socket(const RingState& s, Side self, Clock::time_point until) {
  pollfd p{s.wake_fd, POLLIN, 0};
  const timespec ts = sys::timespec_until(until);
  const int rc = ::ppoll(&p, 1, &ts, nullptr);
  if (rc > 0 && (p.revents & (POLLHUP | POLLERR)) != 0) return false;
  if (rc > 0 && (p.revents & POLLIN) != 0) {
    char buf[64];
    ssize_t n = ::recv(s.wake_fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return false;  // EOF: the peer end is closed everywhere
    while (n == static_cast<ssize_t>(sizeof buf)) n = ::recv(s.wake_fd, buf, sizeof buf, MSG_DONTWAIT);
    if (!self.is_producers()) {
      // The pending byte is gone: let the next commit send another. The caller re-checks the
      // ring after this fence, so a commit that saw the flag still set is not missed (the
      // other half of the handshake with the producer's commit).
      s.ctl->data_signaled.store(0, std::memory_order_relaxed);
      sleeper_fence();
    }
  }
  return true;
}

}  // namespace

void wake(const RingState& s, Side sleepers) noexcept {
  switch (waiter_of(s)) {
    case WaiterKind::futex: wake_futex(s, sleepers); return;
    case WaiterKind::socket: wake_socket(s, sleepers); return;
  }
}

bool sleep(const RingState& s, Side self, std::uint32_t seen, Clock::time_point until) {
  until = sys::next_wake(until);
  switch (waiter_of(s)) {
    case WaiterKind::futex: sys::futex_wait(&self.wake_seq(), seen, until); return true;
    case WaiterKind::socket: return sleep_on_socket(s, self, until);
  }
  return true;
}

bool peer_gone(const RingState& s) noexcept {
  if (waiter_of(s) != WaiterKind::socket) return false;
  pollfd p{s.wake_fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
}

// Order matters: drain first, then clear the flag, then fence and re-check. A record committed
// before the clear saw the flag set and sent nothing: the re-check finds it (and, for a queue,
// re-signals). One committed after the clear signals for itself. So the descriptor is not left
// readable with nothing to read (a level-triggered poller would spin).
bool unsignal_if_empty(const RingState& s, Word t) noexcept {
  RingControl& c = *s.ctl;
  if (c.data_signaled.load(std::memory_order_acquire) == 0) return false;
  if (s.event_fd >= 0) {
    eventfd_t drained;
    (void)::eventfd_read(s.event_fd, &drained);
  } else {
    char buf[64];
    while (::recv(s.wake_fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {}
  }
  c.data_signaled.store(0, std::memory_order_relaxed);
  sleeper_fence();  // the other half of the handshake with a commit
  if (pos_of(c.head.load(std::memory_order_acquire)) == pos_of(t)) return false;
  // A pipe's reader cannot signal its own socket (only the peer writes to it); the caller, which
  // found the record, reports it ready instead.
  if (s.event_fd >= 0 && c.data_signaled.exchange(1, std::memory_order_acq_rel) == 0) {
    (void)::eventfd_write(s.event_fd, 1);
  }
  return true;
}

}  // namespace mproc::detail
