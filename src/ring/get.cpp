// get, get_many, get_many_fixed and wait_readable: records taken from tail under the consumer
// side and released by one store of tail (docs/design/queue.md, "Commit words", "Invariants",
// "Batches", "Faulty or hostile peers").
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"
#include "ring/close.hpp"
#include "ring/keep_behind.hpp"
#include "ring/layout.hpp"
#include "ring/side.hpp"
#include "ring/wait_ready.hpp"
#include "ring/waiter.hpp"

namespace mproc::detail {

namespace {

// Out of line and cold: building the message inline made every get's frame larger.
[[noreturn, gnu::cold, gnu::noinline]] void throw_corrupted(const RingState& s, std::uint32_t size, Word t,
                                                            std::uint32_t committed) {
  const std::string detail = "a record of " + std::to_string(size) + " bytes at position " +
                             std::to_string(pos_of(t)) + ", with " + std::to_string(committed) +
                             " units committed in a ring of " + std::to_string(s.capacity / 8);
  throw Error(EPROTO, std::string("cannot get from a corrupted ") + s.what,
              "(" + detail + ": a process wrote into its shared memory outside mproc's protocol)");
}

// A consumer under its side waiting for a record at tail word `t` (wait_until_ready's hooks).
struct WantRecord {
  RingState& s;
  Word t;

  bool ready() const noexcept { return pos_of(s.ctl->cached_head) != pos_of(t); }
  void reload() noexcept { s.ctl->cached_head = s.ctl->head.load(std::memory_order_acquire); }
  Verdict look_at_close() {
    const std::uint32_t closed = s.ctl->closed.load(std::memory_order_acquire);
    if (closed == 1) finish_close(s);
    if (closed == 0) return Verdict::wait;
    // Closed for good: one last look, since a put may have committed before the close.
    reload();
    return ready() ? Verdict::ready : Verdict::closed;
  }
  RingStatus at_deadline() noexcept {
    if (peer_gone(s)) return RingStatus::closed;
    if (s.ctl->fd_armed.load(std::memory_order_relaxed) != 0) (void)unsignal_if_empty(s, t);
    return RingStatus::timed_out;
  }
  static void before_sleep() noexcept {}
  Verdict after_peer_gone() noexcept {
    reload();
    return ready() ? Verdict::ready : Verdict::closed;  // closed: end of stream, nothing left
  }
};

// wait_readable: a record, looked for without the consumer side (both commit words read fresh).
struct WantReadable {
  RingState& s;

  bool ready() const noexcept {
    return pos_of(s.ctl->head.load(std::memory_order_acquire)) !=
           pos_of(s.ctl->tail.load(std::memory_order_acquire));
  }
  static void reload() noexcept {}
  Verdict look_at_close() const noexcept {
    return s.ctl->closed.load(std::memory_order_acquire) != 0 ? Verdict::closed : Verdict::wait;
  }
  RingStatus at_deadline() noexcept {
    if (peer_gone(s)) return RingStatus::closed;
    if (s.ctl->fd_armed.load(std::memory_order_relaxed) != 0 &&
        unsignal_if_empty(s, s.ctl->tail.load(std::memory_order_acquire))) {
      return RingStatus::ok;
    }
    return RingStatus::timed_out;
  }
  static void before_sleep() noexcept {}
  Verdict after_peer_gone() const noexcept { return ready() ? Verdict::ready : Verdict::closed; }
};

// The record at tail word `t`, checked: a complete record starts at t (invariant 2), unless a
// process wrote into the ring outside this protocol. Its header is read from the ring, so it is
// checked before it is used; the words compared are in registers already, and the branches are
// never taken. False for an impossible record (`size` then says what its header claims).
inline bool record_at(const RingState& s, Word t, RecordView& view, std::uint32_t& size,
                      std::uint32_t& committed) noexcept {
  const std::size_t mask = s.capacity - 1;
  committed = pos_of(s.ctl->cached_head) - pos_of(t);  // units; wraps if t > head
  const std::size_t at = (std::size_t{pos_of(t)} * 8) & mask;
  RecordHeader rh;
  std::memcpy(&rh, s.data + at, sizeof rh);
  size = rh.size;
  if (committed > s.capacity / 8 || rh.size > s.capacity - RingView::kRecordHeader ||
      units_for(rh.size) > committed) {
    return false;
  }
  const std::size_t body = (at + sizeof rh) & mask;
  const std::size_t first = std::min<std::size_t>(rh.size, s.capacity - body);
  view = RecordView{s.data + body, first, s.data, rh.size - first, rh.tag};
  return true;
}

// Offers record `index` of a batch to `take`. The first may throw, which leaves the ring as it
// was; a later one that throws is left, keeping what was taken (the next get throws for it).
template <class Take>
inline bool offer(Take& take, std::size_t index, const RecordView& view) {
  if (index == 0) return take(std::size_t{0}, view);
  try {
    return take(index, view);
  } catch (...) {
    return false;
  }
}

// Offers up to `max` records from tail word `t` to `take`, with at least one committed; returns
// the tail word after the last one taken. A record that take() leaves, or that throws, or that
// is impossible, ends the batch; if it is the first, the get fails as a single get would
// (wrong_type; the exception; EPROTO), and the record stays at the front for the next get.
template <class Take>
Word take_records(RingState& s, Word t, Take& take, std::size_t max, std::size_t& taken, RingStatus& status) {
  RingControl& c = *s.ctl;
  for (;;) {
    RecordView view{};
    std::uint32_t size = 0;
    std::uint32_t committed = 0;
    if (!record_at(s, t, view, size, committed)) {
      if (taken != 0) break;  // the next get reports it
      throw_corrupted(s, size, t, committed);
    }
    if (!offer(take, taken, view)) {
      if (taken != 0) break;
      status = RingStatus::wrong_type;  // left in place, tail unchanged
      return t;
    }
    t = make_word(pos_of(t) + units_for(size), count_of(t) + 1);
    if (++taken == max) break;
    if (pos_of(c.cached_head) == pos_of(t)) {
      c.cached_head = c.head.load(std::memory_order_acquire);
      if (pos_of(c.cached_head) == pos_of(t)) break;  // a batch never waits for more
    }
  }
  status = RingStatus::ok;
  return t;
}

// One get or get_many: waits (spins, then sleeps) for the first record only, then takes up to
// `max` records (take_records) and commits them all by one store of tail.
template <class Take>
RingStatus get_records(RingState& s, Take& take, std::size_t max, Clock::time_point deadline,
                       std::size_t& taken) {
  taken = 0;
  RingControl& c = *s.ctl;
  const Side side = Side::consumers(s);
  const HeldBy held = enter_side(side, deadline);
  if (held.nothing()) return RingStatus::timed_out;
  const SideGuard guard{side, held};

  const Word t = c.tail.load(std::memory_order_relaxed);  // ours
  if (pos_of(c.cached_head) == pos_of(t)) {
    WantRecord record{s, t};
    record.reload();  // pairs with the producer's commit
    if (!record.ready()) {
      const RingStatus st = wait_until_ready(s, side, record, deadline, &s.learned_pauses[1]);
      if (st != RingStatus::ok) return st;
    }
  }
  // Little left in the cached view, fresh or not: keep behind the producer. Checking only right
  // after a reload of head measured half the throughput (30 against 65 M msg/s in a bare 1->1
  // loop): the records taken from an older view walk into the producer's line too.
  if (pos_of(c.cached_head) - pos_of(t) < kKeepBehindUnits) keep_behind(s, t, deadline);

  RingStatus status = RingStatus::ok;
  const Word new_tail = take_records(s, t, take, max, taken, status);
  if (status != RingStatus::ok) return status;
  c.tail.store(new_tail, std::memory_order_release);
  committer_fence();
  if (c.put_waiting.load(std::memory_order_relaxed) != 0)
    wake(s, Side::producers(s));  // nothing else to wake
  return RingStatus::ok;
}

}  // namespace

RingStatus RingView::get(Taker take, Clock::time_point deadline) {
  auto one = [take](std::size_t, const RecordView& r) { return take(r); };
  std::size_t taken = 0;
  return get_records(s_, one, 1, deadline, taken);
}

RingStatus RingView::get_many_fixed(void* out, std::size_t size, std::size_t max, std::uint32_t tag,
                                    Clock::time_point deadline, std::size_t& taken) {
  taken = 0;
  if (max == 0) return RingStatus::ok;
  auto take = [out, size, tag](std::size_t i, const RecordView& r) noexcept {
    if (r.tag != tag || r.size() != size) return false;
    r.copy_to(static_cast<std::byte*>(out) + i * size);
    return true;
  };
  return get_records(s_, take, max, deadline, taken);
}

RingStatus RingView::get_many(BatchTaker take, std::size_t max, Clock::time_point deadline,
                              std::size_t& taken) {
  taken = 0;
  if (max == 0) return RingStatus::ok;
  return get_records(s_, take, max, deadline, taken);
}

RingStatus RingView::wait_readable(Clock::time_point deadline) {
  WantReadable readable{s_};
  return wait_until_ready(s_, Side::consumers(s_), readable, deadline);
}

}  // namespace mproc::detail
