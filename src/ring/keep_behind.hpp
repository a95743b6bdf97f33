#pragma once
// Keeping behind a streaming producer (docs/design/queue.md, "Chasing"). A consumer right behind
// the producer reads each record as it lands, in the cache line that the producer is still
// writing, and the head word with it: both lines then cross between the two cores once per
// message, and the pair settles at about half the throughput it has when the consumer keeps a
// little behind. Inline: get.cpp runs it on every get that finds little committed.
#include <cstdint>
#include <cstring>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/ring.hpp"
#include "os/wait.hpp"
#include "ring/layout.hpp"

namespace mproc::detail {

// A consumer that finds less than kKeepBehindUnits committed (8-byte units) keeps a cache line
// behind the producer, waiting up to kKeepBehindPauses pauses for it, unless its last such wait
// was fruitless within kKeepBehindRest gets.
inline constexpr std::uint32_t kKeepBehindUnits = 64;
inline constexpr int kKeepBehindPauses = 4;
inline constexpr std::uint32_t kKeepBehindRest = 64;

/// The end of the last of the records from tail word `t` on that lie wholly before the cache
/// line holding cached_head's position (8 units to a line: the data area is page-aligned); `t`
/// if none does.
inline Word last_record_before_head_line(const RingState& s, Word t) noexcept {
  const RingControl& c = *s.ctl;
  const std::uint32_t avail = pos_of(c.cached_head) - pos_of(t);
  const std::uint32_t into_line = pos_of(c.cached_head) & 7u;
  if (avail <= into_line) return t;
  const std::uint32_t limit = avail - into_line;
  const std::size_t mask = s.capacity - 1;
  Word p = t;
  std::uint32_t done = 0;
  while (done < limit) {
    RecordHeader rh;
    std::memcpy(&rh, s.data + ((std::size_t{pos_of(p)} * 8) & mask), sizeof rh);
    if (rh.size > s.capacity - RingView::kRecordHeader) break;  // not a record: the get reports it
    const std::uint32_t units = units_for(rh.size);
    if (done + units > limit) break;
    done += units;
    p = make_word(pos_of(p) + units, count_of(p) + 1);
  }
  return p;
}

/// Under the consumer side, with tail word `t` and little committed: takes only the records that
/// end before the line `head` is in (the producer writes the next record there), by setting
/// cached_head back to the last such record's end, a committed record boundary like any other.
/// If even the first record reaches into that line, waits a few pauses for the producer to move
/// on, and takes it anyway if the producer stays quiet (a request and its reply): such a
/// fruitless wait is not repeated for the next kKeepBehindRest gets.
inline void keep_behind(RingState& s, Word t, Clock::time_point deadline) noexcept {
  if (s.keep_behind_rest != 0) {
    --s.keep_behind_rest;
    return;
  }
  RingControl& c = *s.ctl;
  Word end = last_record_before_head_line(s, t);
  if (end == t) {
    if (deadline != Clock::time_point::max() && Clock::now() >= deadline) return;  // try_get
    const std::uint32_t before = pos_of(c.cached_head);
    for (int i = 0; end == t && i < kKeepBehindPauses; ++i) {
      sys::cpu_relax();
      c.cached_head = c.head.load(std::memory_order_acquire);
      end = last_record_before_head_line(s, t);
    }
    if (end == t) {
      if (pos_of(c.cached_head) == before) s.keep_behind_rest = kKeepBehindRest;
      return;  // take what there is
    }
  }
  c.cached_head = end;
}

}  // namespace mproc::detail
