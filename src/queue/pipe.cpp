// Pipe and Connection: one ring per direction plus one socketpair per direction, whose only
// jobs are wake-ups and telling each end that the other is gone (docs/design/queue.md, "Pipe").
#include "mproc/pipe.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "shm/segment.hpp"
#include "os/sys.hpp"
#include "os/wait.hpp"

namespace mproc {
namespace {

constexpr auto kPipeKind = static_cast<std::uint32_t>(detail::SegmentKind::pipe);

[[noreturn]] void throw_socketpair() {
  sys::throw_errno("cannot create the sockets of a", "Pipe");
}

}  // namespace

std::pair<Connection, Connection> Pipe(bool duplex, std::size_t capacity_bytes) {
  const std::size_t capacity = detail::RingView::round_capacity(capacity_bytes);
  const std::size_t one = detail::RingView::footprint(capacity);
  auto mapping =
      std::make_shared<detail::Mapping>(detail::Mapping::shared_anonymous(duplex ? 2 * one : one, "Pipe"));
  auto* base = static_cast<std::byte*>(mapping->data());

  detail::RingView::initialize(base, capacity, 0, kPipeKind, 0);
  if (duplex) detail::RingView::initialize(base + one, capacity, 0, kPipeKind, 0);

  // Direction 0 carries second -> first; direction 1 (duplex only) first -> second.
  // In each socketpair, [0] belongs to the sending end and [1] to the receiving end.
  int s0[2] = {-1, -1}, s1[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s0) != 0) throw_socketpair();
  if (duplex && ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s1) != 0) {
    const int err = errno;
    sys::close_fd(s0[0]);
    sys::close_fd(s0[1]);
    errno = err;
    throw_socketpair();
  }

  Connection first, second;
  first.mapping_ = mapping;
  second.mapping_ = mapping;
  first.in_ = detail::RingView(base, s0[1], "Connection");
  first.in_fd_ = s0[1];
  second.out_ = detail::RingView(base, s0[0], "Connection");
  second.out_fd_ = s0[0];
  if (duplex) {
    first.out_ = detail::RingView(base + one, s1[0], "Connection");
    first.out_fd_ = s1[0];
    second.in_ = detail::RingView(base + one, s1[1], "Connection");
    second.in_fd_ = s1[1];
  }
  return {std::move(first), std::move(second)};
}

Connection::Connection(Connection&& other) noexcept
    : mapping_(std::move(other.mapping_)),
      in_(other.in_),
      out_(other.out_),
      in_fd_(std::exchange(other.in_fd_, -1)),
      out_fd_(std::exchange(other.out_fd_, -1)) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    close();
    mapping_ = std::move(other.mapping_);
    in_ = other.in_;
    out_ = other.out_;
    in_fd_ = std::exchange(other.in_fd_, -1);
    out_fd_ = std::exchange(other.out_fd_, -1);
  }
  return *this;
}

Connection::~Connection() {
  close();
}

void Connection::close() noexcept {
  // Closing this process's descriptors is what the peer observes (POLLHUP once every copy is
  // closed). The shared memory stays mapped until the last Connection using it here is gone.
  sys::close_fd(in_fd_);
  sys::close_fd(out_fd_);
  in_fd_ = -1;
  out_fd_ = -1;
  mapping_.reset();
}

void Connection::check_usable(bool receiving) const {
  if (closed()) throw UsageError("cannot use a closed Connection");
  if (receiving && in_fd_ < 0) {
    throw UsageError("cannot receive on the sending end of a one-way Pipe");
  }
  if (!receiving && out_fd_ < 0) {
    throw UsageError("cannot send on the receiving end of a one-way Pipe");
  }
}

void Connection::send_raw(const void* data, std::size_t size, std::uint32_t tag) {
  check_usable(false);
  (void)out_.put(data, size, tag, detail::Clock::time_point::max());
}

detail::RingStatus Connection::recv_raw(detail::Taker take) {
  check_usable(true);
  return in_.get(take, detail::Clock::time_point::max());
}

bool Connection::received_or_throw_wrong_type(detail::RingStatus status, std::string (*type_name)()) {
  if (status == detail::RingStatus::wrong_type) detail::throw_wrong_type("Connection", type_name());
  return status == detail::RingStatus::ok;
}

bool Connection::poll_until(detail::Deadline deadline) {
  check_usable(true);
  return in_.wait_readable(deadline) != detail::RingStatus::timed_out;
}

int Connection::fileno() {
  if (closed()) throw UsageError("cannot use a closed Connection");
  if (in_fd_ < 0) return out_fd_;
  in_.arm_fd();
  return in_fd_;
}

std::vector<Connection*> wait(std::span<Connection* const> connections, detail::Deadline deadline) {
  std::vector<Connection*> ready;
  std::vector<pollfd> fds;
  for (;;) {
    // A cheap look first: what is ready now (a message waiting, or the peer gone).
    for (Connection* c : connections) {
      if (c->poll(std::chrono::seconds(0))) ready.push_back(c);
    }
    if (!ready.empty()) return ready;
    const auto now = detail::Clock::now();
    if (now >= deadline) return ready;
    fds.clear();
    for (Connection* c : connections) fds.push_back(pollfd{c->fileno(), POLLIN, 0});
    // Armed now: a message committed from here on makes its descriptor readable. One that
    // landed between the look above and the arming is caught by the look after this sleep,
    // which the heartbeat bounds.
    const timespec ts = sys::timespec_until(sys::next_wake(deadline));
    if (::ppoll(fds.data(), fds.size(), &ts, nullptr) < 0 && errno != EINTR) {
      sys::throw_errno("cannot wait for", "Connections");
    }
  }
}

}  // namespace mproc
