#pragma once
/// mproc::redis::Queue<T>, JoinableQueue<T> — the shared-memory queues' twins over Redis
/// Streams, for producers and consumers on different machines.
///
///   auto q = mproc::redis::Queue<Job>::open_or_create("redis://10.0.0.5/jobs");
///   q.put(job);                                   // on one machine
///   while (auto job = q.get()) handle(*job);      // on another; ends when someone close()s it
///
/// The typed contract is the shared-memory Queue's (<mproc/queue.hpp>): the same T (the same
/// codec: trivially copyable, vectors and strings of such, cereal-serialisable), the same type
/// tag in every message and the same clear error (mproc::Error, EBADMSG) for a message of
/// another type; put/put_for/put_until/try_put, get/get_for/get_until/try_get/get_into,
/// put_many/get_many, qsize/empty/full, close/closed. Bounded by `max_messages` (0: not
/// bounded): a full queue blocks put() or fails try_put(), with any number of producers on
/// any number of machines (the check and the add are one Lua script).
///
/// Redis (7.0 or later): a stream `mproc:{name}:q` with one consumer group, a hash
/// `mproc:{name}:m` (type, bound, closed) and a wake-up stream `mproc:{name}:e`. A Queue counts
/// its unread messages with the group's own counters (its lag), so a get is one bare
/// `XREADGROUP … NOACK`, no script; delivered entries are trimmed as consumers go on. Keys,
/// scripts and waits: docs/design/redis.md.
///
/// Thread safety: one object per thread (each holds one connection); open the same address
/// in as many threads, processes and machines as you like.
/// Process safety: never share an object across fork(): a child opens its own (an inherited
///   one notices and reconnects under a new consumer name).
/// Memory ordering: what a producer wrote before put() returned is in the message; nothing
///   else is shared.
/// Order: per producer, the order of its puts; across producers, the order the server ran
///   their scripts. A JoinableQueue's redelivered message comes out of order.
/// Waiting: a blocked call waits in the server (XREAD BLOCK on the wake-up streams), in
///   slices of Options::wait_slice, so a dead server is noticed; no polling in between.
/// If a peer dies — Queue (at most once): a message is delivered and acknowledged by the one
///   XREADGROUP NOACK that hands it to get(), so a consumer that dies after that command ran and
///   before get() returned loses that message (get_many: the batch); nothing else is lost,
///   nothing is ever delivered twice. A producer that dies loses only the message it was
///   putting. A consumer that dies between taking a message and waking a putter that waits for
///   room delays that putter by at most one wait slice (Options::wait_slice).
/// If the server dies: see the persistence table in docs/design/redis.md — with
///   `appendonly yes` + `appendfsync always` nothing whose put() returned is lost; without
///   persistence the queue is gone and calls fail with mproc::Error (ENOENT), never hang.
/// If the connection drops: waits reconnect (with back-off) and resume; a state-changing call
///   whose reply was lost throws mproc::redis::ConnectionLost (it may or may not have run).
/// A message of another type, or an entry that is not mproc's (no `t`/`d` fields): moved to
///   the dead-letter stream `mproc:{name}:dead` and reported as mproc::Error (EBADMSG); the
///   next get goes on with the next message.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "mproc/detail/codec_core.hpp"
#ifndef MPROC_NO_CEREAL
#include "mproc/detail/codec.hpp"
#endif
#include "mproc/detail/deadline.hpp"
#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"
#include "mproc/redis/address.hpp"

namespace mproc::redis {

struct QueueOptions {
  /// The bound, as Python's maxsize: unread messages (0: none). Ignored by open().
  std::size_t max_messages = 0;
  /// JoinableQueue: a message taken and not task_done() for this long is handed to another
  /// consumer (its consumer is taken for dead or stuck).
  std::chrono::milliseconds visibility_timeout{30000};
  /// JoinableQueue: a message delivered more than this many times goes to the dead-letter
  /// stream instead of a consumer.
  unsigned max_deliveries = 5;
  Options connection{};
};

namespace detail {

enum class OpenHow { create, open, open_or_create };

/// What every redis::Queue<T> holds, whatever T: the connection and the scripts.
class QueueCore {
 public:
  QueueCore(std::string_view address, OpenHow how, bool joinable, const QueueOptions& options,
            std::uint32_t tag, const std::string& type_name);
  QueueCore(QueueCore&&) noexcept;
  QueueCore& operator=(QueueCore&&) noexcept;
  ~QueueCore();

  bool put(std::uint32_t tag, const void* data, std::size_t size, mproc::detail::Deadline deadline);
  std::size_t put_many(std::uint32_t tag, mproc::detail::MessageSource source, std::size_t count,
                       mproc::detail::Deadline deadline);
  /// Offers up to `max` messages to `take` (index 0, 1, ...); returns how many it took. 0:
  /// timed out, or closed and drained. A message `take` refuses (another type) or throws on
  /// is dead-lettered and reported (mproc::Error, EBADMSG) if it is the first of the call.
  std::size_t get(mproc::detail::BatchTaker take, std::size_t max, mproc::detail::Deadline deadline);

  std::size_t qsize();
  bool full();
  void close();
  bool closed();
  std::size_t dead_letters();
  std::string address() const;
  const std::string& consumer() const noexcept;

  void task_done();
  bool join(mproc::detail::Deadline deadline);
  std::size_t unfinished();

  static void unlink(std::string_view address, const Options& options);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace detail

template <class T>
class Queue {
  static_assert(mproc::detail::codec_available_v<T>,
                "mproc::redis::Queue<T>: " MPROC_DETAIL_NO_CEREAL_MESSAGE);
  static_assert(!mproc::detail::codec_available_v<T> || mproc::detail::Message<T>,
                "mproc::redis::Queue<T>: T must be a type mproc::Queue<T> can carry");

 public:
  /// Creates the queue (mproc::Error EEXIST if it exists), opens it (ENOENT if it does not;
  /// EINVAL if it carries another T or is a JoinableQueue), or either.
  static Queue create(std::string_view address, QueueOptions options = {}) {
    return Queue(address, detail::OpenHow::create, false, options);
  }
  static Queue open(std::string_view address, QueueOptions options = {}) {
    return Queue(address, detail::OpenHow::open, false, options);
  }
  static Queue open_or_create(std::string_view address, QueueOptions options = {}) {
    return Queue(address, detail::OpenHow::open_or_create, false, options);
  }
  /// Deletes the queue's keys (messages, dead letters and all).
  static void unlink(std::string_view address, const Options& options = {}) {
    detail::QueueCore::unlink(address, options);
  }

  // ---- put: as <mproc/queue.hpp> ----
  void put(const T& value) { (void)put_until(value, mproc::detail::Deadline::forever()); }
  bool put_for(const T& value, mproc::detail::Timeout timeout) { return put_until(value, timeout); }
  bool put_until(const T& value, mproc::detail::Deadline deadline) {
    const mproc::detail::Encoded e = mproc::detail::encode(value);
    return core_.put(mproc::detail::type_tag<T>(), e.data, e.size, deadline);
  }
  bool try_put(const T& value) { return put_until(value, mproc::detail::Deadline::now()); }

  // ---- get ----
  std::optional<T> get() { return get_until(mproc::detail::Deadline::forever()); }
  std::optional<T> get_for(mproc::detail::Timeout timeout) { return get_until(timeout); }
  std::optional<T> get_until(mproc::detail::Deadline deadline) {
    std::optional<T> out;
    auto take = [](void* ctx, std::size_t, const mproc::detail::RecordView& r) {
      T value{};
      if (!mproc::detail::decode(r, value)) return false;
      static_cast<std::optional<T>*>(ctx)->emplace(std::move(value));
      return true;
    };
    (void)core_.get({take, &out}, 1, deadline);
    return out;
  }
  std::optional<T> try_get() { return get_until(mproc::detail::Deadline::now()); }
  bool get_into(T& out) {
    auto take = [](void* ctx, std::size_t, const mproc::detail::RecordView& r) {
      return mproc::detail::decode(r, *static_cast<T*>(ctx));
    };
    return core_.get({take, &out}, 1, mproc::detail::Deadline::forever()) == 1;
  }

  // ---- batches: one script call per batch (and one round trip) ----
  void put_many(std::span<const T> values) {
    (void)put_many_until(values, mproc::detail::Deadline::forever());
  }
  std::size_t put_many_for(std::span<const T> values, mproc::detail::Timeout timeout) {
    return put_many_until(values, timeout);
  }
  std::size_t put_many_until(std::span<const T> values, mproc::detail::Deadline deadline) {
    auto next = [](void* ctx, std::size_t i, const void*& data, std::size_t& size) {
      const mproc::detail::Encoded e =
          mproc::detail::encode((*static_cast<const std::span<const T>*>(ctx))[i]);
      data = e.data;
      size = e.size;
    };
    return core_.put_many(mproc::detail::type_tag<T>(), {next, &values}, values.size(), deadline);
  }
  std::size_t try_put_many(std::span<const T> values) {
    return put_many_until(values, mproc::detail::Deadline::now());
  }
  std::size_t get_many(std::span<T> out) { return get_many_until(out, mproc::detail::Deadline::forever()); }
  std::size_t get_many_for(std::span<T> out, mproc::detail::Timeout timeout) {
    return get_many_until(out, timeout);
  }
  std::size_t get_many_until(std::span<T> out, mproc::detail::Deadline deadline) {
    if (out.empty()) throw UsageError("get_many() needs room for at least one message (out is empty)");
    auto take = [](void* ctx, std::size_t i, const mproc::detail::RecordView& r) {
      return mproc::detail::decode(r, (*static_cast<std::span<T>*>(ctx))[i]);
    };
    return core_.get({take, &out}, out.size(), deadline);
  }
  std::size_t try_get_many(std::span<T> out) { return get_many_until(out, mproc::detail::Deadline::now()); }

  // ---- state ----
  /// Messages put and not yet taken by any consumer (exact when read; one round trip). After
  /// someone else's XDEL of an unread entry, Redis 7.0 may overstate it (and the bound admit
  /// fewer) until a get next finds the queue empty and repairs the count: docs/design/redis.md.
  std::size_t qsize() { return core_.qsize(); }
  bool empty() { return qsize() == 0; }
  bool full() { return core_.full(); }
  void close() { core_.close(); }
  bool closed() { return core_.closed(); }
  /// Entries in the dead-letter stream mproc:{name}:dead (read them with XRANGE).
  std::size_t dead_letters() { return core_.dead_letters(); }
  /// The address, without password.
  std::string address() const { return core_.address(); }
  /// This object's consumer name in the group (host:pid:random).
  const std::string& consumer() const noexcept { return core_.consumer(); }

 protected:
  Queue(std::string_view address, detail::OpenHow how, bool joinable, const QueueOptions& options)
      : core_(address, how, joinable, options, mproc::detail::type_tag<T>(), mproc::detail::type_name<T>()) {}

  detail::QueueCore core_;
};

/// At least once: get() leaves the message pending (owned by this consumer) until task_done()
/// acknowledges it. A message not task_done() within `visibility_timeout` — its consumer died,
/// hung, or is slow — is reclaimed by the next get() of any consumer (XAUTOCLAIM) and delivered
/// again; one delivered more than `max_deliveries` times goes to the dead-letter stream.
/// task_done() finishes the oldest message this object was given and has not finished (as
/// Python's, it names none). join() waits until nothing is unread and nothing is pending.
///
/// What can be duplicated (the twin of Queue's "what can be lost"): a message is delivered
/// again when its consumer died after get() returned and before task_done(), or took longer
/// than visibility_timeout (then both may finish it); at most max_deliveries times. A put()
/// that threw ConnectionLost may have added its message: retrying may duplicate it. Nothing
/// whose put() returned is lost while the server keeps its data (docs/design/redis.md).
template <class T>
class JoinableQueue : public Queue<T> {
 public:
  static JoinableQueue create(std::string_view address, QueueOptions options = {}) {
    return JoinableQueue(address, detail::OpenHow::create, options);
  }
  static JoinableQueue open(std::string_view address, QueueOptions options = {}) {
    return JoinableQueue(address, detail::OpenHow::open, options);
  }
  static JoinableQueue open_or_create(std::string_view address, QueueOptions options = {}) {
    return JoinableQueue(address, detail::OpenHow::open_or_create, options);
  }

  /// Acknowledges the oldest message this object got and has not finished. mproc::UsageError
  /// when there is none.
  void task_done() { this->core_.task_done(); }
  void join() { (void)join_until(mproc::detail::Deadline::forever()); }
  bool join_for(mproc::detail::Timeout timeout) { return join_until(timeout); }
  bool join_until(mproc::detail::Deadline deadline) { return this->core_.join(deadline); }
  bool join(mproc::detail::Timeout timeout) { return join_until(timeout); }
  /// Messages unread or pending (taken, not yet done), across all consumers.
  std::size_t unfinished_tasks() { return this->core_.unfinished(); }

 private:
  JoinableQueue(std::string_view address, detail::OpenHow how, const QueueOptions& options)
      : Queue<T>(address, how, true, options) {}
};

}  // namespace mproc::redis
