#pragma once
// The shared-memory ring under Queue, JoinableQueue, SimpleQueue and each direction of a Pipe.
// Design, layout and invariants: docs/design/queue.md. This header is the type-erased core;
// the typed front ends (encoding, decoding) are templates in queue.hpp and pipe.hpp.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "mproc/detail/deadline.hpp"
#include "mproc/ring_stats.hpp"

namespace mproc::detail {

struct RingControl;  // the shared layout, defined in src/ring/layout.hpp

/// A record as it lies in the ring: the payload may be split in two pieces at the wrap.
struct RecordView {
  const std::byte* first;
  std::size_t first_size;
  const std::byte* second;
  std::size_t second_size;
  std::uint32_t tag;

  std::size_t size() const noexcept { return first_size + second_size; }
  /// memcpy with a null pointer is undefined even for 0 bytes, and an empty vector's data() may
  /// be null: empty pieces are skipped.
  void copy_to(void* out) const noexcept {
    if (first_size != 0) std::memcpy(out, first, first_size);
    if (second_size != 0) std::memcpy(static_cast<std::byte*>(out) + first_size, second, second_size);
  }
};

/// What a get() asks of its caller: take the record (return true: it is consumed) or leave it
/// (return false: a type mismatch; the record stays for a get of the right type). May throw,
/// in which case the record stays too. A plain function pointer plus context: no allocation.
struct Taker {
  bool (*fn)(void* ctx, const RecordView& record);
  void* ctx;
  bool operator()(const RecordView& r) const { return fn(ctx, r); }
};

/// A get_many()'s consumer: offered record `index` of the batch (0, 1, ...); returns as Taker.
struct BatchTaker {
  bool (*fn)(void* ctx, std::size_t index, const RecordView& record);
  void* ctx;
  bool operator()(std::size_t index, const RecordView& r) const { return fn(ctx, index, r); }
};

/// One piece of a record that put_gather() assembles in the ring.
struct RecordPiece {
  const void* data;
  std::size_t size;
};

/// A put_many()'s messages: sets `data` and `size` to message `index` (0, 1, ...), which must
/// stay valid until the next call. May throw (an encoder that fails).
struct MessageSource {
  void (*fn)(void* ctx, std::size_t index, const void*& data, std::size_t& size);
  void* ctx;
  void operator()(std::size_t index, const void*& data, std::size_t& size) const {
    fn(ctx, index, data, size);
  }
};

enum class RingStatus : std::uint8_t {
  ok,
  timed_out,
  closed,      ///< put: the queue is closed; get: closed (or peer gone) and nothing left
  wrong_type,  ///< get: the next record has another type tag; it was left in place
};

/// The public name is mproc::RingStats (<mproc/ring_stats.hpp>).
using RingStats = mproc::RingStats;

/// What one RingView holds: a few words, copied with it. Read and written only by the ring's
/// implementation in src/ring/ (docs/design/queue.md, "Where the code is"); nothing here is API.
struct RingState {
  RingControl* ctl = nullptr;
  std::byte* data = nullptr;
  std::size_t capacity = 0;  // this process's copy (see RingView's constructor)
  const char* what = "Queue";
  int wake_fd = -1;                     // a pipe direction's socket, or -1
  int event_fd = -1;                    // a queue's eventfd for fileno(), or -1
  std::uint8_t waiter = 0;              // how sleepers sleep: futex or socket, fixed at construction
  std::uint8_t learned_pauses[2] = {};  // how long a put [0] or get [1] pauses before it yields
  std::uint32_t keep_behind_rest = 0;   // gets before the consumer may wait to keep behind again
  std::int64_t next_peer_check_ns = 0;  // pipes: when put() next checks that the peer lives
};

/// One process's view of a ring in shared memory. Cheap to copy; owns nothing.
class RingView {
 public:
  static constexpr std::size_t kControlSize = 4096;
  /// The layout version in every ring's header (docs/design/queue.md).
  static constexpr std::uint32_t kLayoutVersion = 4;
  static constexpr std::size_t kRecordHeader = 8;

  /// The capacity actually used for a requested one: a power of two, at least 4 KiB, at most
  /// 16 GiB (mproc::Error EINVAL beyond).
  static std::size_t round_capacity(std::size_t requested);
  /// Bytes of shared memory for a ring of (rounded) capacity `capacity`.
  static std::size_t footprint(std::size_t capacity) noexcept { return kControlSize + capacity; }
  /// Checks a ring that another process initialised (a named queue being opened), in a mapping
  /// of `mapped` bytes: its capacity must be one round_capacity() gives and fit the mapping.
  /// mproc::Error (EINVAL) otherwise, naming `what` (e.g. "Queue \"jobs\"").
  static void check_mapped(const void* base, std::size_t mapped, const std::string& what);
  /// Initialises a ring at `base` (zeroed memory of footprint(capacity) bytes).
  /// `publish` false: leave the header to the caller (a named segment publishes it itself).
  static void initialize(void* base, std::size_t capacity, std::size_t max_messages, std::uint32_t kind,
                         std::uint64_t type_hash, bool publish = true);

  RingView() noexcept = default;
  /// `wake_fd`: -1 for a queue (waiters sleep on futexes); for a pipe direction, this end's
  /// socket of that direction (waiters sleep in ppoll on it, wakers write a byte to it).
  /// `event_fd`: a queue's eventfd for fileno(), or -1.
  /// The view keeps its own copy of the capacity (check_mapped() it first when another process
  /// wrote the ring): every position is masked with it, so that no word another process writes
  /// afterwards can move a read or a write outside the ring.
  explicit RingView(void* base, int wake_fd = -1, const char* what = "Queue", int event_fd = -1) noexcept;

  /// Copies `size` bytes into the ring as one record. Throws mproc::Error (EMSGSIZE) for a
  /// message that can never fit, mproc::Closed after close(), mproc::Error (EPIPE) when a
  /// pipe's receiving end is gone.
  RingStatus put(const void* data, std::size_t size, std::uint32_t tag, Clock::time_point deadline);
  /// put() of the concatenation of `pieces[0, count)` as one record, each piece copied straight
  /// into the ring (a header, a body and buffers that live apart need not be gathered first).
  RingStatus put_gather(const RecordPiece* pieces, std::size_t count, std::uint32_t tag,
                        Clock::time_point deadline);
  /// Puts `count` messages, in order and consecutively (no other producer's message comes
  /// between them), under one hold of the producer lock. Committed at the end, before waiting
  /// for room, and after each eighth of the ring, so every commit makes complete records visible
  /// at once. Returns how many were put: `count`, or fewer if `deadline` passed first. Throws as
  /// put() (and whatever `source` throws) after committing the messages before the failing one;
  /// the error says how many that was.
  std::size_t put_many(MessageSource source, std::size_t count, std::uint32_t tag,
                       Clock::time_point deadline);
  /// put_many of `count` messages of `size` bytes each, one after another from `base` (an
  /// array of a trivially copyable type): the same, without a call per message.
  std::size_t put_many_fixed(const void* base, std::size_t size, std::size_t count, std::uint32_t tag,
                             Clock::time_point deadline);
  /// Waits for a record and offers it to `take`. Throws mproc::Error (EPROTO), leaving the
  /// ring as it is, when the record or the commit words are impossible (a process wrote into
  /// the ring outside this protocol): a record is delivered only if it lies within the ring and
  /// within what was committed.
  RingStatus get(Taker take, Clock::time_point deadline);
  /// Waits, as get(), for one record, then takes up to `max` of those committed, and commits
  /// them all with one store. `taken` says how many; status ok whenever taken > 0. A record
  /// that `take` leaves or throws on, or that is impossible, ends the batch and stays at the
  /// front; only if it is the first does get_many fail as get() would (wrong_type, the
  /// exception, EPROTO).
  RingStatus get_many(BatchTaker take, std::size_t max, Clock::time_point deadline, std::size_t& taken);
  /// get_many into an array of up to `max` elements of `size` bytes at `out`, taking records of
  /// exactly that size and type tag (another record ends the batch, as a Taker's refusal).
  RingStatus get_many_fixed(void* out, std::size_t size, std::size_t max, std::uint32_t tag,
                            Clock::time_point deadline, std::size_t& taken);
  /// Waits until a record is available (or closed/peer gone) without taking it.
  RingStatus wait_readable(Clock::time_point deadline);

  void close();
  bool closed() const noexcept;
  /// Exact at the instant it is read (a consistent snapshot of both commit words).
  std::size_t size() const noexcept;
  bool full() const noexcept;
  std::size_t capacity() const noexcept { return s_.capacity; }
  std::size_t max_message() const noexcept { return s_.capacity - kRecordHeader; }
  RingStats stats() const noexcept;
  /// Whether a consumer / a producer is asleep on this ring right now, in a thread that is alive
  /// (for `mproc ls`).
  bool consumer_waiting() const noexcept;
  bool producer_waiting() const noexcept;

  /// JoinableQueue: items put and not yet marked done.
  std::size_t unfinished() const noexcept;
  void task_done();
  bool join_tasks(Clock::time_point deadline);

  /// fileno(): from now on the wake socket (pipe) or eventfd (queue) is readable whenever a
  /// record waits.
  void arm_fd() noexcept;

  RingControl* control() const noexcept { return s_.ctl; }
  /// What this view keeps of its own (src/ring/ reads and writes it; tests read it).
  const RingState& state() const noexcept { return s_; }

 private:
  RingState s_;
};

}  // namespace mproc::detail
