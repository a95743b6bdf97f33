// put, put_many, put_many_fixed: records written beyond head under the producer side, published
// by one store of head (docs/design/queue.md, "Commit words", "Invariants", "Batches").
#include <ctime>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"
#include "ring/layout.hpp"
#include "ring/side.hpp"
#include "ring/wait_ready.hpp"
#include "ring/waiter.hpp"

namespace mproc::detail {

namespace {

// Whether a record of `need` units fits between a producer's head and a tail.
inline bool fits(const RingState& s, Word h, Word t, std::uint32_t need) noexcept {
  const std::uint32_t used = pos_of(h) - pos_of(t);
  if (static_cast<std::uint32_t>(s.capacity / 8) - used < need) return false;
  const std::uint32_t max_messages = s.ctl->max_messages;
  return max_messages == 0 || count_of(h) - count_of(t) < max_messages;
}

// In a batch, an error names the message and says how many went in before it.
std::string batch_context(std::size_t done, std::size_t count) {
  if (count == 1) return {};
  return " (message " + std::to_string(done + 1) + " of " + std::to_string(count) + " in a put_many; the " +
         std::to_string(done) + " before it were put)";
}

void check_put_open(const RingState& s, std::size_t done, std::size_t count) {
  if (s.ctl->closed.load(std::memory_order_acquire) != 0) {
    throw Closed(std::string("cannot put into a closed ") + s.what + batch_context(done, count));
  }
  if (peer_gone(s)) {
    throw Error(EPIPE, "cannot send on Connection",
                "(the receiving end was closed or its process died)" + batch_context(done, count));
  }
}

// A sender that never blocks would not notice a dead receiver: a pipe's put looks every 10 ms,
// on the coarse clock (a vDSO read, no system call).
void check_peer_now_and_then(RingState& s, std::size_t count) {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  const std::int64_t now_ns = std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  if (now_ns >= s.next_peer_check_ns) {
    s.next_peer_check_ns = now_ns + 10'000'000;
    check_put_open(s, 0, count);
  }
}

[[noreturn]] void throw_too_big(const RingState& s, std::size_t size, const std::string& context) {
  throw Error(EMSGSIZE, "cannot put a message of " + std::to_string(size) + " bytes into a " + s.what,
              "whose capacity is " + std::to_string(s.capacity) +
                  " bytes (the largest message it "
                  "can ever hold is " +
                  std::to_string(s.capacity - RingView::kRecordHeader) + " bytes)" + context);
}

void commit_head(RingState& s, Word h) noexcept {
  RingControl& c = *s.ctl;
  c.head.store(h, std::memory_order_release);
  committer_fence();
  // Inline, the usual case: nobody asleep, no poller. Then wake() would do nothing.
  if (c.get_waiting.load(std::memory_order_relaxed) != 0 || c.fd_armed.load(std::memory_order_relaxed) != 0) {
    wake(s, Side::consumers(s));
  }
}

// Copies n <= 64 bytes in at most two overlapping moves of a fixed size, inline: a small
// message's put otherwise spends a tenth of its time calling and dispatching memcpy.
inline void copy_small(std::byte* to, const std::byte* from, std::size_t n) noexcept {
  if (n >= 32) {
    std::memcpy(to, from, 32);
    std::memcpy(to + n - 32, from + n - 32, 32);
  } else if (n >= 16) {
    std::memcpy(to, from, 16);
    std::memcpy(to + n - 16, from + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(to, from, 8);
    std::memcpy(to + n - 8, from + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(to, from, 4);
    std::memcpy(to + n - 4, from + n - 4, 4);
  } else {
    for (std::size_t i = 0; i < n; ++i) to[i] = from[i];
  }
}

// Writes the header of a record of `size` bytes beyond head `h` (invariant 2); returns where its
// body starts. Whatever head says, the writes stay inside the ring: positions are masked, and
// size <= capacity - 8.
[[gnu::always_inline]] inline std::size_t write_header(const RingState& s, Word h, std::size_t size,
                                                       std::uint32_t tag) noexcept {
  const std::size_t mask = s.capacity - 1;
  const std::size_t at = (std::size_t{pos_of(h)} * 8) & mask;
  const RecordHeader rh{static_cast<std::uint32_t>(size), tag};
  std::memcpy(s.data + at, &rh, sizeof rh);  // at is 8-aligned and capacity is a multiple of 8
  return (at + sizeof rh) & mask;
}

// Copies `n` bytes to position `to`, wrapping at the ring's end; returns the position after them.
[[gnu::always_inline]] inline std::size_t copy_wrapped(const RingState& s, std::size_t to, const void* from,
                                                       std::size_t n) noexcept {
  const std::size_t first = std::min(n, s.capacity - to);
  if (first != 0) std::memcpy(s.data + to, from, first);  // an empty message's data may be null
  if (first < n) std::memcpy(s.data, static_cast<const std::byte*>(from) + first, n - first);
  return (to + n) & (s.capacity - 1);
}

// Writes a record beyond head `h`, in up to two pieces.
[[gnu::always_inline]] inline void write_record(const RingState& s, Word h, const void* data,
                                                std::size_t size, std::uint32_t tag) noexcept {
  const std::size_t body = write_header(s, h, size, tag);
  if (size <= 64 && size <= s.capacity - body) {
    copy_small(s.data + body, static_cast<const std::byte*>(data), size);
  } else {
    (void)copy_wrapped(s, body, data, size);
  }
}

// The pieces of one gathered record (put_gather): what `data` points to when put_records runs
// with kGather.
struct Gathered {
  const RecordPiece* pieces;
  std::size_t count;
};

// write_record for a record gathered from pieces: each copied where it lands.
inline void write_gathered(const RingState& s, Word h, const Gathered& g, std::size_t size,
                           std::uint32_t tag) noexcept {
  std::size_t to = write_header(s, h, size, tag);
  for (std::size_t i = 0; i < g.count; ++i) to = copy_wrapped(s, to, g.pieces[i].data, g.pieces[i].size);
}

// A producer waiting for room for a record of `need` units beyond head `h`
// (wait_until_ready's hooks).
struct WantRoom {
  RingState& s;
  Word h;
  std::uint32_t need;
  std::size_t done, count;

  bool ready() const noexcept { return fits(s, h, s.ctl->cached_tail, need); }
  void reload() noexcept { s.ctl->cached_tail = s.ctl->tail.load(std::memory_order_acquire); }
  static Verdict look_at_close() noexcept { return Verdict::wait; }  // before_sleep() looks
  static RingStatus at_deadline() noexcept { return RingStatus::timed_out; }
  void before_sleep() const { check_put_open(s, done, count); }
  Verdict after_peer_gone() const {
    check_put_open(s, done, count);
    return Verdict::wait;
  }
};

// Message `i` of `count` from `next`, into `data` and `size`. If `next` throws, or the message
// can never fit, the batch's records so far (beyond `committed`, up to `h`) are committed first.
template <class Next>
inline void next_message(RingState& s, Next& next, std::size_t i, std::size_t count, Word h, Word committed,
                         const void*& data, std::size_t& size) {
  try {
    next(i, data, size);  // may encode, and so throw
  } catch (...) {
    if (h != committed) commit_head(s, h);
    throw;
  }
  if (size > s.capacity - RingView::kRecordHeader) {
    if (h != committed) commit_head(s, h);
    throw_too_big(s, size, batch_context(i, count));
  }
}

// No room for the next record: commit what the batch wrote so far if that does not make room by
// itself (consumers may drain it meanwhile), then wait. False if the deadline passed first.
bool wait_for_room(RingState& s, Side side, WantRoom room, Word& committed, Clock::time_point deadline) {
  room.reload();  // pairs with the consumer's commit
  if (!room.ready() && room.h != committed) {
    commit_head(s, room.h);
    committed = room.h;
  }
  return wait_until_ready(s, side, room, deadline, &s.learned_pauses[0]) == RingStatus::ok;
}

// One put or put_many: `next(i, data, size)` supplies message i of `count`. Everything happens
// under the producer side, so a batch's messages are consecutive in the ring. Records are
// written beyond head and committed by one store of head: at the end, before waiting for room,
// and after every eighth of the ring, so that consumers start on a long batch early. Returns
// how many messages were put (fewer than `count` only when the deadline passed).
template <bool kGather = false, class Next>
std::size_t put_records(RingState& s, Next& next, std::size_t count, std::uint32_t tag,
                        Clock::time_point deadline) {
  RingControl& c = *s.ctl;
  const std::uint32_t cap_units = static_cast<std::uint32_t>(s.capacity / 8);
  const Side side = Side::producers(s);
  const HeldBy held = enter_side(side, deadline);
  if (held.nothing()) return 0;
  const SideGuard guard{side, held};

  if (c.closed.load(std::memory_order_acquire) != 0) check_put_open(s, 0, count);
  if (waiter_of(s) == WaiterKind::socket) check_peer_now_and_then(s, count);

  Word h = c.head.load(std::memory_order_relaxed);  // ours (invariant 1)
  Word committed = h;
  std::size_t done = 0;
  for (; done < count; ++done) {
    const void* data = nullptr;
    std::size_t size = 0;
    next_message(s, next, done, count, h, committed, data, size);
    const std::uint32_t need = units_for(size);
    if (!fits(s, h, c.cached_tail, need)) {
      if (!wait_for_room(s, side, WantRoom{s, h, need, done, count}, committed, deadline)) return done;
    }
    if constexpr (kGather) {
      write_gathered(s, h, *static_cast<const Gathered*>(data), size, tag);
    } else {
      write_record(s, h, data, size, tag);
    }
    h = make_word(pos_of(h) + need, count_of(h) + 1);
    if (pos_of(h) - pos_of(committed) >= cap_units / 8) {
      commit_head(s, h);
      committed = h;
    }
  }
  if (h != committed) commit_head(s, h);
  return done;
}

}  // namespace

RingStatus RingView::put(const void* data, std::size_t size, std::uint32_t tag, Clock::time_point deadline) {
  // A message that can never fit is the caller's error whatever the state of the ring: say so
  // before looking at anything else (a closed queue, a gone peer).
  if (size > max_message()) throw_too_big(s_, size, {});
  auto one = [data, size](std::size_t, const void*& d, std::size_t& sz) noexcept {
    d = data;
    sz = size;
  };
  return put_records(s_, one, 1, tag, deadline) == 1 ? RingStatus::ok : RingStatus::timed_out;
}

RingStatus RingView::put_gather(const RecordPiece* pieces, std::size_t count, std::uint32_t tag,
                                Clock::time_point deadline) {
  std::size_t size = 0;
  for (std::size_t i = 0; i < count; ++i) size += pieces[i].size;  // pieces of memory: no overflow
  if (size > max_message()) throw_too_big(s_, size, {});
  const Gathered g{pieces, count};
  auto one = [&g, size](std::size_t, const void*& d, std::size_t& sz) noexcept {
    d = &g;
    sz = size;
  };
  return put_records<true>(s_, one, 1, tag, deadline) == 1 ? RingStatus::ok : RingStatus::timed_out;
}

std::size_t RingView::put_many(MessageSource source, std::size_t count, std::uint32_t tag,
                               Clock::time_point deadline) {
  if (count == 0) return 0;
  return put_records(s_, source, count, tag, deadline);
}

std::size_t RingView::put_many_fixed(const void* base, std::size_t size, std::size_t count, std::uint32_t tag,
                                     Clock::time_point deadline) {
  if (count == 0) return 0;
  if (size > max_message()) throw_too_big(s_, size, batch_context(0, count));
  // Inlined into put_records: no call per message.
  auto next = [base, size](std::size_t i, const void*& d, std::size_t& sz) noexcept {
    d = static_cast<const std::byte*>(base) + i * size;
    sz = size;
  };
  return put_records(s_, next, count, tag, deadline);
}

}  // namespace mproc::detail
