#pragma once
// The contenders of mproc_compare. Every channel carries fixed-size messages of type Msg one
// way (send in one process, recv in another) and is created in the parent before the children
// are forked, so that every child inherits it: the same way an mproc::Queue is used. A batched
// channel moves several messages per call instead (send_many / recv_many, below). Every lock
// has lock()/unlock() and lives in shared memory mapped before the fork.
//
// Buffers: where a contender lets us choose, it gets about as much as mproc's default queue
// (1 MiB): Boost's message_queue 1 MiB / message size messages, the raw rings 1 MiB of slots.
// pipe(2) and the socketpair keep the kernel's defaults (a 64 KiB pipe buffer, the socket's
// wmem_default), as programs use them. POSIX message queues are capped by the kernel: see
// mq_depth_for.
#include <fcntl.h>
#include <mqueue.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "bench_util.hpp"
#include "compare/harness.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"

#if MPROC_HAVE_BOOST
#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#endif

namespace bench::compare {

inline constexpr std::size_t kBufferBytes = std::size_t{1} << 20;

/// A pause between two polls of a spinning contender: the CPU's spin-wait hint, and after a
/// while sched_yield(), so that a spinner sharing its core with the process it waits for (more
/// processes than cores) gives that process the core instead of burning its time slice.
class Backoff {
 public:
  void pause() {
    if (++spins_ < 256) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      ::sched_yield();
    }
  }

 private:
  unsigned spins_ = 0;
};

// ---- channels --------------------------------------------------------------------------------

/// mproc::Queue<Msg>: put / get_into. By default its default 1 MiB ring and no message limit;
/// Capacity (bytes, rounded up to a power of two by the queue) and MaxMessages (Python's
/// maxsize; 0: none) size it otherwise (the ring-size workloads rtpipe and mpmc2small).
template <class Msg, std::size_t Capacity = mproc::Queue<Msg>::kDefaultCapacity, std::size_t MaxMessages = 0>
class MprocChannel {
 public:
  void send(const Msg& m) { q_.put(m); }
  void recv(Msg& m) {
    if (!q_.get_into(m)) fail("mproc::Queue: closed");
  }
  /// The ring's counters (bias grants, revocations, hand-overs): the queue lives in shared
  /// memory, so the parent reads what its children did.
  mproc::RingStats stats() const noexcept { return q_.stats(); }

 private:
  mproc::Queue<Msg> q_{Capacity, MaxMessages};
};

/// One pipe(2): one write(2) and one read(2) of sizeof(Msg) bytes per message. Writes of up to
/// PIPE_BUF (4096) bytes are atomic, so many writers and readers may share it.
template <class Msg>
class PipeChannel {
  static_assert(sizeof(Msg) <= 4096, "pipe writes above PIPE_BUF are not atomic");

 public:
  void send(const Msg& m) { write_full(p_.write_end(), &m, sizeof m, "pipe"); }
  void recv(Msg& m) { read_full(p_.read_end(), &m, sizeof m, "pipe"); }

 private:
  OsPipe p_;
};

// ---- round-trip links ------------------------------------------------------------------------
// A link joins two processes both ways: A sends with a_send and reads the reply with a_recv; B
// reads with b_recv and answers with b_send. The round trip (rt8, rtpipe) runs on a link.

/// Two one-way channels: ping (A -> B) and pong (B -> A).
template <class Chan>
class ChannelPairLink {
 public:
  template <class T>
  void a_send(const T& v) {
    ping_.send(v);
  }
  template <class T>
  void a_recv(T& v) {
    pong_.recv(v);
  }
  template <class T>
  void b_recv(T& v) {
    ping_.recv(v);
  }
  template <class T>
  void b_send(const T& v) {
    pong_.send(v);
  }

 private:
  Chan ping_;
  Chan pong_;
};

/// One duplex mproc::Pipe (both directions' rings in one mapping, and a socketpair per
/// direction for wake-ups): A holds the first end, B the second. Capacity: bytes per direction
/// (Pipe's default is 1 MiB).
template <std::size_t Capacity = std::size_t{1} << 20>
class MprocPipeLink {
 public:
  MprocPipeLink() : ends_(mproc::Pipe(true, Capacity)) {}
  template <class T>
  void a_send(const T& v) {
    ends_.first.send(v);
  }
  template <class T>
  void a_recv(T& v) {
    take(ends_.first, v);
  }
  template <class T>
  void b_recv(T& v) {
    take(ends_.second, v);
  }
  template <class T>
  void b_send(const T& v) {
    ends_.second.send(v);
  }

 private:
  template <class T>
  static void take(mproc::Connection& c, T& v) {
    const std::optional<T> got = c.recv<T>();
    if (!got) fail("mproc::Pipe: end of stream");
    v = *got;
  }
  std::pair<mproc::Connection, mproc::Connection> ends_;
};

// ---- batched channels ------------------------------------------------------------------------
// A batched channel moves up to kBatch messages per call: send_many(span) sends them all, in
// order and consecutive (no other producer's message between them); recv_many(span of kBatch)
// takes at least one and returns how many. kWholeBatches: every send_many must carry exactly
// kBatch messages (the caller pads the last one).

/// mproc::Queue<Msg> with its default 1 MiB ring, up to 64 messages per call: put_many /
/// get_many (which takes what is waiting, up to 64, and never waits for a batch to fill).
template <class Msg>
class BatchedMprocChannel {
 public:
  static constexpr std::size_t kBatch = 64;
  static constexpr bool kWholeBatches = false;
  void send_many(std::span<const Msg> m) { q_.put_many(m); }
  std::size_t recv_many(std::span<Msg> out) {
    const std::size_t got = q_.get_many(out);
    if (got == 0) fail("mproc::Queue: closed");
    return got;
  }

 private:
  mproc::Queue<Msg> q_;
};

/// One pipe(2) carrying whole 4096-byte (PIPE_BUF) chunks of 4096 / sizeof(Msg) messages: one
/// write(2) and one read(2) of 4096 bytes per chunk, the pipe's fair counterpart of put_many.
///
/// Several readers rely on this: a write of at most PIPE_BUF bytes is atomic (its bytes are not
/// interleaved with another writer's), and as every write is exactly 4096 bytes, on Linux a
/// read(2) of 4096 bytes returns exactly one whole chunk (each chunk fills a pipe buffer page of
/// its own, or whole 4096-byte pieces of a larger page, and every read takes exactly 4096 bytes
/// from the front, so no chunk is ever split). POSIX promises the atomic write, not the whole
/// read. read_full loops on a short read, which is right with one reader; with several it would
/// join pieces of two chunks, and the consumers' checks (every message intact, each producer's
/// sequence numbers rising at each consumer, each message exactly once) would catch that.
template <class Msg>
class BatchedPipeChannel {
  static_assert(4096 % sizeof(Msg) == 0, "a chunk must hold whole messages");

 public:
  static constexpr std::size_t kBatch = 4096 / sizeof(Msg);
  static constexpr bool kWholeBatches = true;
  void send_many(std::span<const Msg> m) {
    if (m.size() != kBatch) fail("pipe: a chunk of " + std::to_string(m.size()) + " messages");
    write_full(p_.write_end(), m.data(), m.size_bytes(), "pipe");
  }
  std::size_t recv_many(std::span<Msg> out) {
    if (out.size() != kBatch) fail("pipe: room for " + std::to_string(out.size()) + " messages");
    read_full(p_.read_end(), out.data(), out.size_bytes(), "pipe");
    return kBatch;
  }

 private:
  OsPipe p_;
};

/// A socketpair(AF_UNIX, SOCK_SEQPACKET): one send(2) and one recv(2) per message. SEQPACKET,
/// not SOCK_STREAM, because it keeps message boundaries: each recv returns exactly one whole
/// message, so several readers and writers may share one socket (as they share one pipe).
template <class Msg>
class SocketChannel {
 public:
  SocketChannel() {
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds_) != 0) {
      fail_errno("socketpair(AF_UNIX, SOCK_SEQPACKET)");
    }
  }
  ~SocketChannel() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  SocketChannel(const SocketChannel&) = delete;
  SocketChannel& operator=(const SocketChannel&) = delete;
  void send(const Msg& m) {
    for (;;) {
      const ssize_t n = ::send(fds_[0], &m, sizeof m, MSG_NOSIGNAL);
      if (n == static_cast<ssize_t>(sizeof m)) return;
      if (n < 0 && errno == EINTR) continue;
      fail_errno("send on socketpair");
    }
  }
  void recv(Msg& m) {
    for (;;) {
      const ssize_t n = ::recv(fds_[1], &m, sizeof m, 0);
      if (n == static_cast<ssize_t>(sizeof m)) return;
      if (n < 0 && errno == EINTR) continue;
      if (n >= 0) fail("socketpair: a message of " + std::to_string(n) + " bytes");
      fail_errno("recv on socketpair");
    }
  }

 private:
  int fds_[2] = {-1, -1};
};

/// Creates a POSIX message queue of `depth` messages of `size` bytes and unlinks its name at
/// once (the descriptor stays valid, and children forked later inherit it). -1 and errno when
/// the kernel refuses.
inline mqd_t mq_open_unlinked(long depth, std::size_t size) {
  static int serial = 0;
  const std::string name = "/mproc_compare." + std::to_string(::getpid()) + "." + std::to_string(++serial);
  mq_attr attr{};
  attr.mq_maxmsg = depth;
  attr.mq_msgsize = static_cast<long>(size);
  const mqd_t q = ::mq_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &attr);
  if (q != static_cast<mqd_t>(-1)) {
    const int err = errno;
    ::mq_unlink(name.c_str());
    errno = err;
  }
  return q;
}

inline long mq_msg_max() {
  long v = 10;
  std::ifstream f("/proc/sys/fs/mqueue/msg_max");
  f >> v;
  return v > 0 ? v : 10;
}

/// The depth POSIX message queues of `msg_size`-byte messages get here: the first of 256, 64
/// and the per-user limit /proc/sys/fs/mqueue/msg_max (10 by default) that the kernel accepts,
/// twice at once (the round trip uses two queues). Unprivileged processes may not exceed
/// msg_max (root may), and all of a user's queues together must fit RLIMIT_MSGQUEUE (800 KiB by
/// default).
inline long mq_depth_for(std::size_t msg_size) {
  for (const long depth : {256L, 64L}) {
    const mqd_t a = mq_open_unlinked(depth, msg_size);
    if (a == static_cast<mqd_t>(-1)) continue;
    const mqd_t b = mq_open_unlinked(depth, msg_size);
    ::mq_close(a);
    if (b == static_cast<mqd_t>(-1)) continue;
    ::mq_close(b);
    return depth;
  }
  return mq_msg_max();
}

/// A POSIX message queue (mq_open): one mq_send(3) and one mq_receive(3) per message, priority
/// 0 (first in, first out), `mq_depth_for` messages deep.
template <class Msg>
class MqChannel {
 public:
  MqChannel() {
    static const long depth = mq_depth_for(sizeof(Msg));
    q_ = mq_open_unlinked(depth, sizeof(Msg));
    if (q_ == static_cast<mqd_t>(-1)) fail_errno("mq_open (depth " + std::to_string(depth) + ")");
  }
  ~MqChannel() { ::mq_close(q_); }
  MqChannel(const MqChannel&) = delete;
  MqChannel& operator=(const MqChannel&) = delete;
  void send(const Msg& m) {
    while (::mq_send(q_, reinterpret_cast<const char*>(&m), sizeof m, 0) != 0) {
      if (errno != EINTR) fail_errno("mq_send");
    }
  }
  void recv(Msg& m) {
    for (;;) {
      const ssize_t n = ::mq_receive(q_, reinterpret_cast<char*>(&m), sizeof m, nullptr);
      if (n == static_cast<ssize_t>(sizeof m)) return;
      if (n < 0 && errno == EINTR) continue;
      if (n >= 0) fail("mq: a message of " + std::to_string(n) + " bytes");
      fail_errno("mq_receive");
    }
  }

 private:
  mqd_t q_;
};

#if MPROC_HAVE_BOOST
/// boost::interprocess::message_queue: a named shared-memory segment holding a priority queue of
/// fixed-size slots under one interprocess_mutex and two condition variables. Created by the
/// parent (the name is removed at once; the children inherit the mapping). 1 MiB of slots.
template <class Msg>
class BoostChannel {
 public:
  BoostChannel() : name_(unique_name()), q_(make(name_)) {
    boost::interprocess::message_queue::remove(name_.c_str());
  }
  void send(const Msg& m) { q_.send(&m, sizeof m, 0); }
  void recv(Msg& m) {
    std::size_t got = 0;
    unsigned prio = 0;
    q_.receive(&m, sizeof m, got, prio);
    if (got != sizeof m) fail("boost message_queue: a message of " + std::to_string(got) + " bytes");
  }

 private:
  static std::string unique_name() {
    static int serial = 0;
    return "mproc_compare_boost." + std::to_string(::getpid()) + "." + std::to_string(++serial);
  }
  static boost::interprocess::message_queue make(const std::string& name) {
    const std::size_t depth = std::min<std::size_t>(kBufferBytes / sizeof(Msg), 16384);
    return boost::interprocess::message_queue(boost::interprocess::create_only, name.c_str(), depth,
                                              sizeof(Msg));
  }
  std::string name_;
  boost::interprocess::message_queue q_;
};
#endif

/// The hardware ceiling for one producer and one consumer: a single-producer single-consumer
/// ring of Msg slots in shared memory (Lamport's ring with cached indices, as rigtorp's
/// SPSCQueue), busy-spinning on full and empty. No locks, no system calls, no crash safety.
template <class Msg>
class RawSpscRing {
  static_assert(std::is_trivially_copyable_v<Msg>);

 public:
  RawSpscRing() : map_(sizeof(Control) + kSlots * sizeof(Msg)) {
    c_ = new (map_.data()) Control{};
    slots_ = reinterpret_cast<Msg*>(static_cast<std::byte*>(map_.data()) + sizeof(Control));
  }
  void send(const Msg& m) {
    const std::uint64_t head = c_->head.load(std::memory_order_relaxed);  // ours alone
    Backoff b;
    while (head - c_->cached_tail >= kSlots) {
      // Pairs with the consumer's release store of tail: the slot it freed is ours to reuse.
      c_->cached_tail = c_->tail.load(std::memory_order_acquire);
      if (head - c_->cached_tail >= kSlots) b.pause();
    }
    slots_[head & (kSlots - 1)] = m;
    // Publishes the slot: pairs with the consumer's acquire load of head.
    c_->head.store(head + 1, std::memory_order_release);
  }
  void recv(Msg& m) {
    const std::uint64_t tail = c_->tail.load(std::memory_order_relaxed);  // ours alone
    Backoff b;
    while (tail == c_->cached_head) {
      // Pairs with the producer's release store of head: the slot's bytes are complete.
      c_->cached_head = c_->head.load(std::memory_order_acquire);
      if (tail == c_->cached_head) b.pause();
    }
    m = slots_[tail & (kSlots - 1)];
    // Frees the slot after the copy: pairs with the producer's acquire load of tail.
    c_->tail.store(tail + 1, std::memory_order_release);
  }

 private:
  static constexpr std::size_t kSlots =
      std::bit_floor(kBufferBytes / sizeof(Msg)) < 2 ? 2 : std::bit_floor(kBufferBytes / sizeof(Msg));
  // Each side's index and its cached copy of the other's sit on their own cache line, so that
  // a poll of one index moves only that line between the cores.
  struct Control {
    alignas(64) std::atomic<std::uint64_t> head;
    std::uint64_t cached_tail;  // producer's
    alignas(64) std::atomic<std::uint64_t> tail;
    std::uint64_t cached_head;  // consumer's
  };
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
  SharedMap map_;
  Control* c_;
  Msg* slots_;
};

/// The ceiling for many producers and consumers: Dmitry Vyukov's bounded MPMC ring in shared
/// memory (a sequence number per slot; producers and consumers each claim a position with a
/// CAS), spinning on full and empty. A producer descheduled between its claim and its publish
/// stalls the consumer of that slot until it runs again, which is why it cannot be made
/// crash-safe and why it suffers when there are more processes than cores.
///
/// Slots: the ring's size (a power of two); 0: 1 MiB of cells, as the other contenders' buffers.
template <class Msg, std::size_t Slots = 0>
class RawMpmcRing {
  static_assert(std::is_trivially_copyable_v<Msg>);
  static_assert(Slots == 0 || std::has_single_bit(Slots), "Slots must be a power of two");

 public:
  RawMpmcRing() : map_(sizeof(Control) + kSlots * sizeof(Cell)) {
    c_ = new (map_.data()) Control{};
    cells_ = reinterpret_cast<Cell*>(static_cast<std::byte*>(map_.data()) + sizeof(Control));
    for (std::size_t i = 0; i < kSlots; ++i) new (&cells_[i]) Cell{{i}, {}};
  }
  void send(const Msg& m) {
    Backoff b;
    std::uint64_t pos = c_->enqueue_pos.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & (kSlots - 1)];
      // Pairs with the consumer's release store of seq: the slot is free for position pos.
      const std::uint64_t seq = cell.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - pos);
      if (diff == 0) {
        // Free for us: claim pos (a failed CAS reloads pos and retries).
        if (c_->enqueue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          cell.data = m;
          cell.seq.store(pos + 1, std::memory_order_release);  // publish to the consumer
          return;
        }
      } else if (diff < 0) {
        b.pause();  // full: the consumer of the previous lap has not freed it yet
        pos = c_->enqueue_pos.load(std::memory_order_relaxed);
      } else {
        pos = c_->enqueue_pos.load(std::memory_order_relaxed);  // another producer took it
      }
    }
  }
  void recv(Msg& m) {
    Backoff b;
    std::uint64_t pos = c_->dequeue_pos.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & (kSlots - 1)];
      // Pairs with the producer's release store of seq: the data is complete.
      const std::uint64_t seq = cell.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - (pos + 1));
      if (diff == 0) {
        if (c_->dequeue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          m = cell.data;
          cell.seq.store(pos + kSlots, std::memory_order_release);  // free for the next lap
          return;
        }
      } else if (diff < 0) {
        b.pause();  // empty (or its producer has claimed it but not yet published)
        pos = c_->dequeue_pos.load(std::memory_order_relaxed);
      } else {
        pos = c_->dequeue_pos.load(std::memory_order_relaxed);
      }
    }
  }

 private:
  struct Cell {
    std::atomic<std::uint64_t> seq;
    Msg data;
  };
  static constexpr std::size_t kSlots = Slots != 0 ? Slots : std::bit_floor(kBufferBytes / sizeof(Cell));
  struct Control {
    alignas(64) std::atomic<std::uint64_t> enqueue_pos;
    alignas(64) std::atomic<std::uint64_t> dequeue_pos;
  };
  SharedMap map_;
  Control* c_;
  Cell* cells_;
};

// ---- locks -----------------------------------------------------------------------------------

/// mproc::Lock through acquire()/release(); an owner_died() result would be a bug here.
class MprocLock {
 public:
  void lock() {
    const mproc::Acquired got = lock_.acquire();
    if (!got || got.owner_died()) fail("mproc::Lock: unexpected acquire result");
  }
  void unlock() { lock_.release(); }

 private:
  mproc::Lock lock_;
};

inline void check_rc(int rc, const char* what) {
  if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
}

/// A process-shared pthread mutex in its own shared page, robust or not: the robust one is what
/// mproc::Lock is built on (and what the target compares with).
class PthreadLock {
 public:
  explicit PthreadLock(bool robust) : map_(sizeof(pthread_mutex_t)) {
    m_ = static_cast<pthread_mutex_t*>(map_.data());
    pthread_mutexattr_t attr;
    check_rc(::pthread_mutexattr_init(&attr), "pthread_mutexattr_init");
    check_rc(::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED), "setpshared");
    if (robust) check_rc(::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST), "setrobust");
    check_rc(::pthread_mutex_init(m_, &attr), "pthread_mutex_init");
    ::pthread_mutexattr_destroy(&attr);
  }
  ~PthreadLock() { ::pthread_mutex_destroy(m_); }
  PthreadLock(const PthreadLock&) = delete;
  PthreadLock& operator=(const PthreadLock&) = delete;
  void lock() { check_rc(::pthread_mutex_lock(m_), "pthread_mutex_lock"); }
  void unlock() { check_rc(::pthread_mutex_unlock(m_), "pthread_mutex_unlock"); }

 private:
  SharedMap map_;
  pthread_mutex_t* m_;
};

#if MPROC_HAVE_BOOST
/// boost::interprocess::interprocess_mutex in a shared page (a process-shared, non-robust
/// pthread mutex on Linux).
class BoostLock {
 public:
  BoostLock() : map_(sizeof(boost::interprocess::interprocess_mutex)) {
    m_ = new (map_.data()) boost::interprocess::interprocess_mutex;
  }
  ~BoostLock() { m_->~interprocess_mutex(); }
  BoostLock(const BoostLock&) = delete;
  BoostLock& operator=(const BoostLock&) = delete;
  void lock() { m_->lock(); }
  void unlock() { m_->unlock(); }

 private:
  SharedMap map_;
  boost::interprocess::interprocess_mutex* m_;
};
#endif

/// The ceiling: a test-and-test-and-set spinlock in shared memory (pause, then sched_yield).
/// No owner, no sleeping, no crash safety: a holder that dies leaves it locked forever.
class SpinLock {
 public:
  SpinLock() : map_(64) { flag_ = new (map_.data()) std::atomic<int>{0}; }
  void lock() {
    Backoff b;
    for (;;) {
      // Acquire pairs with unlock()'s release: the guarded writes of the last holder are seen.
      if (flag_->exchange(1, std::memory_order_acquire) == 0) return;
      while (flag_->load(std::memory_order_relaxed) != 0) b.pause();
    }
  }
  void unlock() { flag_->store(0, std::memory_order_release); }

 private:
  SharedMap map_;
  std::atomic<int>* flag_;
};

}  // namespace bench::compare
