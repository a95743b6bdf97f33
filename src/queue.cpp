#include "mproc/queue.hpp"

#include <sys/eventfd.h>

#include <utility>

#include "sys.hpp"

namespace mproc::detail {

QueueCore::QueueCore(std::uint32_t kind, std::size_t capacity_bytes, std::size_t max_messages,
                     std::uint64_t type_hash) {
  const std::size_t capacity = RingView::round_capacity(capacity_bytes);
  mapping_ = Mapping::shared_anonymous(RingView::footprint(capacity), "Queue");
  RingView::initialize(mapping_.data(), capacity, max_messages, kind, type_hash);
  // Inherited by children on purpose: any process that puts may have to signal it.
  event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) sys::throw_errno("cannot create the descriptor of a", "Queue");
  ring_ = RingView(mapping_.data(), -1, "Queue", event_fd_);
}

QueueCore::QueueCore(QueueCore&& other) noexcept
    : mapping_(std::move(other.mapping_)),
      event_fd_(std::exchange(other.event_fd_, -1)),
      ring_(std::exchange(other.ring_, RingView())) {}

QueueCore& QueueCore::operator=(QueueCore&& other) noexcept {
  if (this != &other) {
    sys::close_fd(event_fd_);
    mapping_ = std::move(other.mapping_);
    event_fd_ = std::exchange(other.event_fd_, -1);
    ring_ = std::exchange(other.ring_, RingView());
  }
  return *this;
}

QueueCore::~QueueCore() { sys::close_fd(event_fd_); }

int QueueCore::fileno() noexcept {
  ring_.arm_fd();
  return event_fd_;
}

}  // namespace mproc::detail
