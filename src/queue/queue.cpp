#include "mproc/queue.hpp"

#include <sys/eventfd.h>

#include <algorithm>
#include <string>
#include <utility>

#include "shm/named.hpp"
#include "os/sys.hpp"

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

// The public header names these kinds without seeing segment.hpp; keep the two in step.
static_assert(kQueueKind == static_cast<std::uint32_t>(SegmentKind::queue));
static_assert(kJoinableQueueKind == static_cast<std::uint32_t>(SegmentKind::joinable_queue));

namespace {
const char* queue_kind_name(std::uint32_t kind) noexcept {
  return kind == kJoinableQueueKind ? "JoinableQueue" : "Queue";
}

struct RingInit {
  std::size_t capacity, max_messages;
  std::uint32_t kind;
  std::uint64_t type_hash;
};
void init_ring(void* mem, const void* ctx) {
  const auto& r = *static_cast<const RingInit*>(ctx);
  RingView::initialize(mem, r.capacity, r.max_messages, r.kind, r.type_hash, false);
}
}  // namespace

QueueCore::QueueCore(const NamedSpec& spec, std::uint32_t kind, std::size_t capacity_bytes,
                     std::size_t max_messages, std::uint64_t type_hash, std::string_view type_name) {
  const std::size_t capacity = RingView::round_capacity(std::max<std::size_t>(capacity_bytes, 1));
  const RingInit init{capacity, max_messages, kind, type_hash};
  mapping_ = attach_named(spec, static_cast<SegmentKind>(kind), RingView::kLayoutVersion,
                          RingView::footprint(capacity), type_hash, &init_ring, &init, nullptr, type_name);
  RingView::check_mapped(mapping_.data(), mapping_.size(),
                         std::string(queue_kind_name(kind)) + " \"" + std::string(spec.name) + "\"");
  ring_ = RingView(mapping_.data(), -1, queue_kind_name(kind), -1);
}

QueueCore::QueueCore(Mapping mapping, int event_fd, std::uint32_t kind, std::uint64_t type_hash,
                     std::string_view type_name)
    : mapping_(std::move(mapping)), event_fd_(event_fd) {
  const std::string what = std::string(kind == kJoinableQueueKind ? "a JoinableQueue" : "a Queue") +
                           " received from another process";
  try {
    check_segment_header(mapping_.data(), mapping_.size(), static_cast<SegmentKind>(kind),
                         RingView::kLayoutVersion, type_hash, what, type_name);
    RingView::check_mapped(mapping_.data(), mapping_.size(), what);
  } catch (...) {
    sys::close_fd(event_fd_);  // no destructor runs for a constructor that throws
    throw;
  }
  ring_ = RingView(mapping_.data(), -1, queue_kind_name(kind), event_fd_);
}

void QueueCore::unlink(std::string_view name, std::uint32_t kind) {
  unlink_named(name, queue_kind_name(kind));
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

QueueCore::~QueueCore() {
  sys::close_fd(event_fd_);
}

int QueueCore::fileno() {
  if (event_fd_ < 0) {
    throw UsageError(
        "fileno() is not available on a Queue opened by name: its descriptor is "
        "shared only with children that inherit the queue");
  }
  ring_.arm_fd();
  return event_fd_;
}

}  // namespace mproc::detail
