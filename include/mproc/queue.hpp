#pragma once
/// mproc::Queue<T>, JoinableQueue<T>, SimpleQueue<T> — FIFO queues shared by processes.
///
///   mproc::Queue<std::string> q;                    // 1 MiB ring in shared memory
///   mproc::Process p([&] { q.put("hello"); });
///   p.start();
///   std::optional<std::string> s = q.get();         // blocks; empty optional: closed and drained
///   while (auto job = q.get()) handle(*job);        // the consumer loop, ends at close()
///
/// The queue is a bounded ring of bytes in shared memory, created by the constructor and
/// inherited by every process started afterwards. Messages vary in size: a 3-byte string and a
/// 60 KiB vector go through the same queue.
///
/// Sizing: `capacity_bytes` is rounded up to a power of two (at least 4 KiB, at most 16 GiB).
///   A message of n bytes occupies 8 + n bytes rounded up to a multiple of 8; the largest
///   message a queue can hold is capacity − 8 bytes, and a bigger one is an mproc::Error
///   (EMSGSIZE) at put(), never a hang. `max_messages` (0: no limit) also bounds the count,
///   like Python's maxsize. Footprint: 4096 + capacity bytes of shared memory, in all.
/// What T can be: trivially copyable types travel by memcpy, with no encoding;
///   std::vector / std::basic_string of such types as their elements' bytes; everything cereal
///   serialises (std::map, std::optional, std::tuple, std::pair, std::variant, nested) through
///   cereal's binary archive. A type of your own: give it cereal's customisation point,
///   `template <class Archive> void serialize(Archive& ar) { ar(field1, field2); }`, and a
///   default constructor. Raw bytes: Queue<mproc::Bytes>, whose put() also takes a span.
/// Compile time: this header brings all of cereal for the structured case. A program whose
///   messages are all trivially copyable, vectors, strings or Bytes may `#define MPROC_NO_CEREAL`
///   before including it (or pass -DMPROC_NO_CEREAL) and parses half as much; a
///   structured T is then a compile-time error naming the macro (detail/codec_core.hpp).
/// Allocation: put/get of trivially copyable types and of bytes allocate nothing; structured
///   types allocate only what the decoded value needs (the encoding buffer is reused per thread).
/// Order: the messages of one producer arrive in the order it put them. Across producers, the
///   order is the order in which their puts took the producer side (one total order).
/// Locking: each side (producers, consumers) has a robust lock. A thread that keeps a side to
///   itself (one producer thread, one consumer thread) is soon given it outright and then puts
///   or gets without the lock. Another thread or process that wants the side takes it back in
///   a few microseconds if the owner is idle or works between its calls (a pool's worker);
///   if the owner is streaming (calls back to back), it sleeps until the owner hands the side
///   over, at most ~500 µs later (a "lease"), and then streams in its turn. So several
///   producers (consumers) that all stream take turns in runs of ~500 µs instead of contending
///   per message, and a put (get) from a second thread may wait that long while another
///   streams. stats() counts grants, revocations and hand-overs (docs/design/queue.md,
///   "Biased sides").
/// Batches: put_many(values) and get_many(out) take the side and commit once per batch rather
///   than per message — for small messages several times the throughput of put()/get(). A
///   batch's messages are consecutive in the queue; get_many never waits for a batch to fill.
/// What non-blocking costs: try_put, try_get, put_for/get_for with a zero (or already passed)
///   timeout never wait for room or for a message. They may wait for another thread's operation
///   in flight on the same side (a put that is copying its message: nanoseconds), or take the
///   side back from a streaming owner (a few microseconds). So `false` from try_put means the
///   queue is full — or another producer is asleep in put() waiting for room, whose message
///   comes first (order is kept); a closed queue throws mproc::Closed, as put() does. An empty
///   optional from try_get means the queue is empty (or closed and drained). Never "somebody
///   else was busy". The one bound: a side's
///   owner that stays inside one operation for over 100 ms without sleeping for room or data
///   (its process stopped, say, or an encoder that slow) makes the call give up as if full
///   (empty). A timed call waits for room (data) until its deadline, and for an owner in
///   flight under the same rule. (Python's put_nowait/get_nowait also take a lock.)
/// qsize(), empty(), full(): exact at the instant they are read (not Python's "approximate").
/// close(): for good, for everyone. put() afterwards throws mproc::Closed; get() returns what is
///   left and then an empty optional instead of blocking.
///
/// Thread safety: every member may be called from any thread.
/// Process safety: any number of producer and consumer processes (forked children inherit an
///   anonymous queue; a spawned or forkserver child gets it as a `Queue<T>&` argument:
///   <mproc/start_method.hpp>).
/// Memory ordering: what a producer wrote before put() is visible to the consumer whose get()
///   returns that message.
/// Waiting: a blocked put/get spins briefly, then sleeps on a futex in shared memory and uses no
///   CPU; a put with no sleeping consumer makes no system call. Timeouts: monotonic clock.
/// If a peer dies (SIGKILL at any instruction): survivors never block on it and never read a
///   torn message. A message whose put() returned is delivered exactly once, except that a
///   consumer killed in the few instructions between taking a message and returning it loses
///   that one message (in get_many: the messages of that batch). A producer killed inside put()
///   loses only the message it was putting (in put_many: those of its batch not yet committed). A
///   consumer killed before taking the message leaves it to the next consumer. The repairs are
///   counted in stats(). Details: docs/design/queue.md.
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "mproc/detail/codec_core.hpp"
#ifndef MPROC_NO_CEREAL
#include "mproc/detail/codec.hpp"  // structured messages; MPROC_NO_CEREAL leaves cereal out
#endif
#include "mproc/detail/deadline.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"
#include "mproc/ring_stats.hpp"

namespace mproc {

namespace detail {
enum : std::uint32_t { kQueueKind = 3, kJoinableQueueKind = 4 };

template <class T>
struct Travel;  // <mproc/start_method.hpp>: how an anonymous queue reaches a spawned child

/// What every Queue<T> holds, whatever T: the shared ring and the descriptor behind fileno().
class QueueCore {
 public:
  QueueCore(std::uint32_t kind, std::size_t capacity_bytes, std::size_t max_messages,
            std::uint64_t type_hash);
  /// Named: created with the given sizes, or opened (sizes then come from the segment).
  QueueCore(const NamedSpec& spec, std::uint32_t kind, std::size_t capacity_bytes, std::size_t max_messages,
            std::uint64_t type_hash, std::string_view type_name = {});
  static void unlink(std::string_view name, std::uint32_t kind);
  QueueCore(QueueCore&& other) noexcept;
  QueueCore& operator=(QueueCore&& other) noexcept;
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;
  ~QueueCore();

  /// An anonymous queue's memory and eventfd received from another process (Travel, owned from
  /// now on, also when this throws): the header (kind, layout, element type) and the ring are
  /// checked as an open by name checks them.
  QueueCore(Mapping mapping, int event_fd, std::uint32_t kind, std::uint64_t type_hash,
            std::string_view type_name);

  RingView& ring() noexcept { return ring_; }
  const RingView& ring() const noexcept { return ring_; }
  std::size_t footprint() const noexcept { return mapping_.size(); }
  int fileno();
  /// What an anonymous queue is sent to a spawned child as: -1 for a named queue.
  int memfd() const noexcept { return mapping_.memfd(); }
  int event_fd() const noexcept { return event_fd_; }

 private:
  Mapping mapping_;
  int event_fd_ = -1;
  RingView ring_;
};
}  // namespace detail

template <class T>
class Queue {
  static_assert(detail::codec_available_v<T>, "mproc::Queue<T>: " MPROC_DETAIL_NO_CEREAL_MESSAGE);
  static_assert(!detail::codec_available_v<T> || detail::Message<T>,
                "mproc::Queue<T>: T must be trivially copyable (and hold no pointers), a vector or "
                "string of such, or serialisable by cereal (give it a serialize(Archive&) member "
                "and a default constructor)");

 public:
  static constexpr std::size_t kDefaultCapacity = std::size_t{1} << 20;

  explicit Queue(std::size_t capacity_bytes = kDefaultCapacity, std::size_t max_messages = 0)
      : Queue(detail::kQueueKind, capacity_bytes, max_messages) {}

  Queue(Queue&&) noexcept = default;
  Queue& operator=(Queue&&) noexcept = default;
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // ---- put -----------------------------------------------------------------------------------
  /// Blocks while the queue is full. Throws mproc::Closed after close().
  void put(const T& value) { (void)put_until(value, detail::Deadline::forever()); }
  /// Waits at most `timeout` for room; false if there was none.
  bool put_for(const T& value, detail::Timeout timeout) { return put_until(value, timeout); }
  /// Waits until `deadline` (a time point of any clock, see <mproc/detail/deadline.hpp>).
  bool put_until(const T& value, detail::Deadline deadline) {
    const detail::Encoded e = detail::encode(value);
    return put_raw(e.data, e.size, deadline);
  }
  /// Waits for no room: false when full (see "What non-blocking costs" above).
  bool try_put(const T& value) { return put_until(value, detail::Deadline::now()); }

  /// Queue<Bytes> only: puts a span of bytes, copied once, straight into shared memory.
  void put(std::span<const std::byte> bytes) requires std::is_same_v<T, Bytes> {
    (void)put_raw(bytes.data(), bytes.size(), detail::Deadline::forever());
  }

  // ---- get -----------------------------------------------------------------------------------
  /// Blocks until a message arrives. An empty optional means the queue was closed and drained.
  std::optional<T> get() { return get_until(detail::Deadline::forever()); }
  /// Waits at most `timeout`. Empty: timed out, or closed and drained (see closed()).
  std::optional<T> get_for(detail::Timeout timeout) { return get_until(timeout); }
  std::optional<T> get_until(detail::Deadline deadline) {
    std::optional<T> out;
    took_or_throw_wrong_type(ring().get(detail::taker_emplace(out), deadline));
    return out;
  }
  /// Waits for no message: empty when the queue is empty (see "What non-blocking costs").
  std::optional<T> try_get() { return get_until(detail::Deadline::now()); }
  /// Blocking get into an existing object, reusing its storage (no allocation for bytes and
  /// strings once their capacity suffices). False: closed and drained.
  bool get_into(T& out) {
    return took_or_throw_wrong_type(ring().get(detail::taker_into(out), detail::Deadline::forever()));
  }

  // ---- batches -------------------------------------------------------------------------------
  // One lock and one commit per batch instead of per message: for small messages, several
  // times the throughput of put() and get() (bench/compare, "1->1, 64 B").

  /// Puts every value, in order, under one hold of the producer lock, so they are consecutive
  /// in the queue: no other producer's message comes between them. Blocks while full; a batch
  /// larger than the queue streams through it. Throws as put() — mproc::Closed, mproc::Error
  /// (EMSGSIZE) for a value that can never fit — after putting the values before the failing
  /// one; the message says how many that was.
  void put_many(std::span<const T> values) { (void)put_many_until(values, detail::Deadline::forever()); }
  /// Waits at most `timeout` in all; returns how many values were put (the first ones).
  std::size_t put_many_for(std::span<const T> values, detail::Timeout timeout) {
    return put_many_until(values, timeout);
  }
  std::size_t put_many_until(std::span<const T> values, detail::Deadline deadline) {
    if constexpr (detail::is_raw_v<T>) {
      return ring().put_many_fixed(values.data(), sizeof(T), values.size(), detail::type_tag<T>(), deadline);
    } else {
      auto next = [](void* ctx, std::size_t i, const void*& data, std::size_t& size) {
        const detail::Encoded e = detail::encode((*static_cast<const std::span<const T>*>(ctx))[i]);
        data = e.data;
        size = e.size;
      };
      return ring().put_many({next, &values}, values.size(), detail::type_tag<T>(), deadline);
    }
  }
  /// No waiting: puts the first values that fit now; returns how many.
  std::size_t try_put_many(std::span<const T> values) {
    return put_many_until(values, detail::Deadline::now());
  }

  /// Waits for a message, as get(), then takes up to out.size() of the messages waiting, into
  /// out[0], out[1], ... (reusing their storage, as get_into). Returns how many; 0 means closed
  /// and drained. Never waits for a batch to fill. If this process dies after taking them and
  /// before get_many returns, the batch is lost with it (get(): at most one message).
  /// mproc::UsageError for an empty `out`.
  std::size_t get_many(std::span<T> out) { return get_many_until(out, detail::Deadline::forever()); }
  /// Waits at most `timeout` for the first message. 0: timed out, or closed and drained.
  std::size_t get_many_for(std::span<T> out, detail::Timeout timeout) { return get_many_until(out, timeout); }
  std::size_t get_many_until(std::span<T> out, detail::Deadline deadline) {
    if (out.empty()) throw UsageError("get_many() needs room for at least one message (out is empty)");
    std::size_t taken = 0;
    if constexpr (detail::is_raw_v<T>) {
      took_or_throw_wrong_type(
          ring().get_many_fixed(out.data(), sizeof(T), out.size(), detail::type_tag<T>(), deadline, taken));
    } else {
      auto take = [](void* ctx, std::size_t i, const detail::RecordView& r) {
        return detail::decode(r, (*static_cast<std::span<T>*>(ctx))[i]);
      };
      took_or_throw_wrong_type(ring().get_many({take, &out}, out.size(), deadline, taken));
    }
    return taken;
  }
  /// No waiting.
  std::size_t try_get_many(std::span<T> out) { return get_many_until(out, detail::Deadline::now()); }

  // ---- state ---------------------------------------------------------------------------------
  std::size_t qsize() const noexcept { return ring().size(); }
  bool empty() const noexcept { return qsize() == 0; }
  /// True when not even a one-byte message would fit (or max_messages are queued).
  bool full() const noexcept { return ring().full(); }
  void close() { ring().close(); }
  bool closed() const noexcept { return ring().closed(); }

  std::size_t capacity_bytes() const noexcept { return ring().capacity(); }
  std::size_t max_message_bytes() const noexcept { return ring().max_message(); }
  std::size_t footprint_bytes() const noexcept { return core_.footprint(); }
  RingStats stats() const noexcept { return ring().stats(); }

  /// A descriptor (an eventfd, shared by every process that has the queue) that is readable
  /// while messages wait, for poll/epoll/asio loops: call try_get() until it returns empty.
  /// It may stay readable with nothing to read until a get finds the queue empty. Watching it
  /// costs nothing until fileno() is first called; from then on, a put into an empty queue
  /// writes to it (one system call per empty-to-non-empty transition).
  /// Not available on a queue opened by name (mproc::UsageError): the eventfd is shared only
  /// with children that inherit it.
  int fileno() { return core_.fileno(); }

  /// Named queues, for programs started separately (names, modes and the checks made on open:
  /// <mproc/shared_memory.hpp>). open() also checks that the queue carries this T.
  static Queue create(std::string_view name, std::size_t capacity_bytes = kDefaultCapacity,
                      std::size_t max_messages = 0, NamedOptions options = {}) {
    return Queue(detail::NamedSpec{name, detail::OpenHow::create, options}, detail::kQueueKind,
                 capacity_bytes, max_messages);
  }
  static Queue open(std::string_view name) {
    return Queue(detail::NamedSpec{name, detail::OpenHow::open, {}}, detail::kQueueKind, 0, 0);
  }
  static Queue open_or_create(std::string_view name, std::size_t capacity_bytes = kDefaultCapacity,
                              std::size_t max_messages = 0, NamedOptions options = {}) {
    return Queue(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, detail::kQueueKind,
                 capacity_bytes, max_messages);
  }
  static void unlink(std::string_view name) { detail::QueueCore::unlink(name, detail::kQueueKind); }

 protected:
  Queue(std::uint32_t kind, std::size_t capacity_bytes, std::size_t max_messages)
      : core_(kind, capacity_bytes, max_messages, detail::type_tag<T>()) {}
  Queue(const detail::NamedSpec& spec, std::uint32_t kind, std::size_t capacity_bytes,
        std::size_t max_messages)
      : core_(spec, kind, capacity_bytes, max_messages, detail::type_tag<T>(), detail::type_name<T>()) {}
  /// A queue received by a spawned child (Travel).
  explicit Queue(detail::QueueCore core) noexcept : core_(std::move(core)) {}
  template <class U>
  friend struct detail::Travel;

  bool put_raw(const void* data, std::size_t size, detail::Deadline deadline) {
    return ring().put(data, size, detail::type_tag<T>(), deadline) == detail::RingStatus::ok;
  }
  /// A get's status as a bool (a message was taken), except that a message of another type
  /// throws mproc::Error (EBADMSG).
  bool took_or_throw_wrong_type(detail::RingStatus status) {
    if (status == detail::RingStatus::wrong_type) {
      detail::throw_wrong_type("Queue", detail::type_name<T>());
    }
    return status == detail::RingStatus::ok;
  }

  detail::RingView& ring() noexcept { return core_.ring(); }
  const detail::RingView& ring() const noexcept { return core_.ring(); }

  detail::QueueCore core_;
};

/// A Queue that counts unfinished work, as Python's JoinableQueue: every put() adds a task,
/// every task_done() finishes one, join() waits until none is left.
/// If a consumer dies between get() and task_done(), its task stays unfinished: join() with a
/// timeout is the way to notice.
template <class T>
class JoinableQueue : public Queue<T> {
 public:
  explicit JoinableQueue(std::size_t capacity_bytes = Queue<T>::kDefaultCapacity,
                         std::size_t max_messages = 0)
      : Queue<T>(detail::kJoinableQueueKind, capacity_bytes, max_messages) {}

  static JoinableQueue create(std::string_view name, std::size_t capacity_bytes = Queue<T>::kDefaultCapacity,
                              std::size_t max_messages = 0, NamedOptions options = {}) {
    return JoinableQueue(detail::NamedSpec{name, detail::OpenHow::create, options}, capacity_bytes,
                         max_messages);
  }
  static JoinableQueue open(std::string_view name) {
    return JoinableQueue(detail::NamedSpec{name, detail::OpenHow::open, {}}, 0, 0);
  }
  static JoinableQueue open_or_create(std::string_view name,
                                      std::size_t capacity_bytes = Queue<T>::kDefaultCapacity,
                                      std::size_t max_messages = 0, NamedOptions options = {}) {
    return JoinableQueue(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, capacity_bytes,
                         max_messages);
  }
  static void unlink(std::string_view name) { detail::QueueCore::unlink(name, detail::kJoinableQueueKind); }

  /// Marks one task taken by get() as finished. mproc::UsageError when called more times than
  /// messages were taken, as Python raises ValueError.
  void task_done() { this->ring().task_done(); }
  /// Blocks until every message put so far has been taken and marked done.
  void join() { (void)join_until(detail::Deadline::forever()); }
  /// Waits at most `timeout`; returns whether every task was done.
  bool join_for(detail::Timeout timeout) { return join_until(timeout); }
  /// Waits until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  bool join_until(detail::Deadline deadline) { return this->ring().join_tasks(deadline); }
  /// Python's spelling of join_for(): `q.join(2s)`.
  bool join(detail::Timeout timeout) { return join_until(timeout); }
  std::size_t unfinished_tasks() const noexcept { return this->ring().unfinished(); }

 private:
  JoinableQueue(const detail::NamedSpec& spec, std::size_t capacity_bytes, std::size_t max_messages)
      : Queue<T>(spec, detail::kJoinableQueueKind, capacity_bytes, max_messages) {}
  explicit JoinableQueue(detail::QueueCore core) noexcept : Queue<T>(std::move(core)) {}
  template <class U>
  friend struct detail::Travel;
};

/// Python's SimpleQueue: the same queue with the small interface (put, get, empty, close).
/// Like Python's, whose put() blocks once its pipe's 64 KiB kernel buffer is full, it is
/// bounded: by its ring, 1 MiB unless asked otherwise.
template <class T>
class SimpleQueue : private Queue<T> {
 public:
  using Queue<T>::Queue;
  using Queue<T>::put;
  using Queue<T>::get;
  using Queue<T>::empty;
  using Queue<T>::close;
  using Queue<T>::closed;

 private:
  template <class>
  friend struct detail::Travel;  // sends its queue to a spawned child
};

}  // namespace mproc
