// Anonymous objects sent to a spawned or forkserver child as descriptors (Travel<T>,
// <mproc/start_method.hpp>; docs/design/start-methods.md, "Anonymous objects"). An object's
// bytes are the indices of its descriptors among the child's (SpawnCall::fds) and, for a
// Connection, where its rings lie in the shared memory; the child maps the memory again and
// checks what it finds there before using it, as an open by name does.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mproc/detail/demangle.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/ring.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/start_method.hpp"
#include "mproc/value.hpp"
#include "process/start.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint64_t kNone = ~std::uint64_t{0};

// Adds `fd` to the descriptors the child is sent (once, however many arguments name it) and
// returns its index.
std::uint64_t add_fd(std::vector<int>& fds, int fd) {
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] == fd) return i;
  }
  fds.push_back(fd);
  return fds.size() - 1;
}

template <std::size_t N>
std::string words(const std::uint64_t (&w)[N]) {
  return std::string(reinterpret_cast<const char*>(w), sizeof w);
}

template <std::size_t N>
void read_words(const std::string& bytes, std::uint64_t (&w)[N], const char* what) {
  if (bytes.size() != sizeof w) {
    throw Error(EINVAL, std::string("cannot rebuild ") + what + " received by this process",
                "(" + std::to_string(bytes.size()) + " bytes, expected " + std::to_string(sizeof w) + ")");
  }
  std::memcpy(w, bytes.data(), sizeof w);
}

// An anonymous object's memory: its memfd's index.
std::uint64_t memory_index(int memfd, const char* kind, std::vector<int>& fds) {
  if (memfd < 0) {
    throw UsageError(
        std::string("cannot send ") + with_article(kind) +
        " to a spawned or forkserver child as an anonymous object: it is a named one (pass "
        "mproc::ByName<" +
        kind +
        ">(name)), or it was made before mproc::init(argc, argv) ran, or when this process had "
        "used half of its descriptors (RLIMIT_NOFILE), or could not make a memfd: name it, or raise the "
        "limit");
  }
  return add_fd(fds, memfd);
}

std::string encode_memory(int memfd, const char* kind, std::vector<int>& fds) {
  const std::uint64_t w[1] = {memory_index(memfd, kind, fds)};
  return words(w);
}

Mapping decode_memory(const std::string& bytes, const char* what) {
  std::uint64_t w[1];
  read_words(bytes, w, what);
  return Mapping::from_memfd(take_received_fd(w[0]), what);
}

}  // namespace

std::string encode_descriptor(int fd, std::vector<int>& fds) {
  if (fd < 0) throw Error(EBADF, std::string("cannot send a descriptor to a child"), "(it is closed)");
  const std::uint64_t w[1] = {add_fd(fds, fd)};
  return words(w);
}

int decode_descriptor(const std::string& bytes, const char* what) {
  std::uint64_t w[1];
  read_words(bytes, w, what);
  return take_received_fd(w[0]);
}

std::string Travel<Lock>::encode(const Lock& lock, std::vector<int>& fds) {
  return encode_memory(lock.memfd(), "Lock", fds);
}
Lock Travel<Lock>::decode(const std::string& bytes) {
  return Lock(decode_memory(bytes, "a Lock"));
}

std::string Travel<RLock>::encode(const RLock& lock, std::vector<int>& fds) {
  return encode_memory(lock.memfd(), "RLock", fds);
}
RLock Travel<RLock>::decode(const std::string& bytes) {
  return RLock(decode_memory(bytes, "an RLock"));
}

std::string Travel<Event>::encode(const Event& event, std::vector<int>& fds) {
  return encode_memory(event.mapping_.memfd(), "Event", fds);
}
Event Travel<Event>::decode(const std::string& bytes) {
  return Event(decode_memory(bytes, "an Event"));
}

std::string Travel<Semaphore>::encode(const Semaphore& semaphore, std::vector<int>& fds) {
  return encode_memory(semaphore.mapping_.memfd(), "Semaphore", fds);
}
Semaphore Travel<Semaphore>::decode(const std::string& bytes) {
  return Semaphore(decode_memory(bytes, "a Semaphore"), false);
}

std::string Travel<BoundedSemaphore>::encode(const BoundedSemaphore& semaphore, std::vector<int>& fds) {
  return encode_memory(semaphore.mapping_.memfd(), "BoundedSemaphore", fds);
}
BoundedSemaphore Travel<BoundedSemaphore>::decode(const std::string& bytes) {
  return BoundedSemaphore(decode_memory(bytes, "a BoundedSemaphore"));
}

std::string Travel<Barrier>::encode(const Barrier& barrier, std::vector<int>& fds) {
  return encode_memory(barrier.mapping_.memfd(), "Barrier", fds);
}
Barrier Travel<Barrier>::decode(const std::string& bytes) {
  return Barrier(decode_memory(bytes, "a Barrier"));
}

// A Condition with its own RLock: its block and its lock's memory.
std::string Travel<Condition>::encode(const Condition& condition, std::vector<int>& fds) {
  if (condition.own_lock_ == nullptr) {
    throw UsageError(
        "cannot send a Condition over a lock of your own (Condition(lock)) to a spawned or forkserver "
        "child: the lock would arrive as another object than the argument that names it; send a "
        "Condition() (its own RLock, reached through lock()), or name it (mproc::ByName<Condition>)");
  }
  const std::uint64_t w[2] = {memory_index(condition.mapping_.memfd(), "Condition", fds),
                              memory_index(condition.own_lock_->memfd(), "Condition", fds)};
  return words(w);
}
Condition Travel<Condition>::decode(const std::string& bytes) {
  std::uint64_t w[2];
  read_words(bytes, w, "a Condition");
  Mapping block = Mapping::from_memfd(take_received_fd(w[0]), "a Condition");
  Mapping lock = Mapping::from_memfd(take_received_fd(w[1]), "a Condition's lock");
  return Condition(std::move(lock), std::move(block));
}

// A Condition over a caller's lock: its block only (the lock travels by itself).
std::string encode_condition_block(const Condition& condition, std::vector<int>& fds) {
  if (condition.own_lock_ != nullptr) {
    throw UsageError(
        "encode_condition_block: this Condition has a lock of its own, which would not travel with it");
  }
  return encode_memory(condition.mapping_.memfd(), "Condition", fds);
}
std::unique_ptr<Condition> decode_condition_over(const std::string& bytes, RobustLock& lock) {
  return std::unique_ptr<Condition>(new Condition(lock, decode_memory(bytes, "a Condition")));
}

// A queue: its memory and its eventfd (an anonymous queue always has one; fileno() in the child
// then works as in a forked one).
std::string encode_queue(const QueueCore& core, bool joinable, std::vector<int>& fds) {
  const char* kind = joinable ? "JoinableQueue" : "Queue";
  const std::uint64_t w[2] = {memory_index(core.memfd(), kind, fds),
                              core.event_fd() >= 0 ? add_fd(fds, core.event_fd()) : kNone};
  return words(w);
}

QueueCore decode_queue(const std::string& bytes, bool joinable, std::uint64_t type_hash,
                       const std::string& type_name) {
  const char* what = joinable ? "a JoinableQueue" : "a Queue";
  std::uint64_t w[2];
  read_words(bytes, w, what);
  Mapping memory = Mapping::from_memfd(take_received_fd(w[0]), what);
  const int event_fd = w[1] != kNone ? take_received_fd(w[1]) : -1;
  return QueueCore(std::move(memory), event_fd, joinable ? kJoinableQueueKind : kQueueKind, type_hash,
                   type_name);
}

// Value, Array and their raw forms: the data's memory, the lock's memory, the element count.
std::string encode_data(int data_memfd, int lock_memfd, std::size_t count, const char* kind,
                        std::vector<int>& fds) {
  const std::uint64_t data = memory_index(data_memfd, kind, fds);
  const std::uint64_t lock = lock_memfd >= 0 ? memory_index(lock_memfd, kind, fds) : kNone;
  const std::uint64_t w[3] = {data, lock, count};
  return words(w);
}

ReceivedData decode_data(const std::string& bytes, bool locked, const char* what) {
  std::uint64_t w[3];
  read_words(bytes, w, what);
  if ((w[1] != kNone) != locked) {
    throw Error(EINVAL, std::string("cannot rebuild ") + what + " received by this process",
                locked ? "(its lock was not sent)" : "(a lock was sent with it)");
  }
  ReceivedData d;
  d.data = Mapping::from_memfd(take_received_fd(w[0]), what);
  if (locked) d.lock = Mapping::from_memfd(take_received_fd(w[1]), what);
  d.count = static_cast<std::size_t>(w[2]);
  return d;
}

// A Connection: the pair's memory, this end's sockets (either may be absent on a one-way pipe)
// and where each of its rings starts in the memory.
std::string Travel<Connection>::encode(const Connection& c, std::vector<int>& fds) {
  if (c.closed()) throw UsageError("cannot send a closed Connection to a spawned or forkserver child");
  const std::uint64_t memory = memory_index(c.mapping_->memfd(), "Connection", fds);
  const auto* base = static_cast<const std::byte*>(c.mapping_->data());
  auto offset = [&](const RingView& ring) {
    return static_cast<std::uint64_t>(reinterpret_cast<const std::byte*>(ring.control()) - base);
  };
  const std::uint64_t w[5] = {
      memory,
      c.in_fd_ >= 0 ? add_fd(fds, c.in_fd_) : kNone,
      c.out_fd_ >= 0 ? add_fd(fds, c.out_fd_) : kNone,
      c.in_fd_ >= 0 ? offset(c.in_) : kNone,
      c.out_fd_ >= 0 ? offset(c.out_) : kNone,
  };
  return words(w);
}

Connection Travel<Connection>::decode(const std::string& bytes) {
  std::uint64_t w[5];
  read_words(bytes, w, "a Connection");
  Connection c;
  // Each descriptor is owned by `c` as soon as it is taken, so that nothing leaks if a later
  // check throws.
  c.mapping_ = std::make_shared<Mapping>(Mapping::from_memfd(take_received_fd(w[0]), "a Connection"));
  if (w[1] != kNone) c.in_fd_ = take_received_fd(w[1]);
  if (w[2] != kNone) c.out_fd_ = take_received_fd(w[2]);
  if ((c.in_fd_ >= 0) != (w[3] != kNone) || (c.out_fd_ >= 0) != (w[4] != kNone) || c.closed()) {
    throw Error(EINVAL, "cannot rebuild a Connection received by this process",
                "(its description is inconsistent)");
  }
  auto* base = static_cast<std::byte*>(c.mapping_->data());
  const std::size_t size = c.mapping_->size();
  auto ring_at = [&](std::uint64_t offset, int fd) {
    if (offset >= size) {
      throw Error(EINVAL, "cannot rebuild a Connection received by this process",
                  "(a ring at " + std::to_string(offset) + " of " + std::to_string(size) + " bytes)");
    }
    RingView::check_mapped(base + offset, size - offset, "a Connection received by this process");
    return RingView(base + offset, fd, "Connection");
  };
  if (c.in_fd_ >= 0) c.in_ = ring_at(w[3], c.in_fd_);
  if (c.out_fd_ >= 0) c.out_ = ring_at(w[4], c.out_fd_);
  return c;
}

}  // namespace mproc::detail
