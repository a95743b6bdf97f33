#pragma once
// The shared layout of a ring (docs/design/queue.md, "Layout"): what src/ring.cpp implements,
// and what the fuzz target (fuzz/fuzz_ring.cpp) overwrites to play a faulty peer.
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "mproc/detail/ring.hpp"
#include "segment.hpp"

namespace mproc::detail {

// Commit word: low 32 bits position in 8-byte units, high 32 bits record count (both wrap).
using Word = std::uint64_t;
constexpr std::uint32_t pos_of(Word w) noexcept { return static_cast<std::uint32_t>(w); }
constexpr std::uint32_t count_of(Word w) noexcept { return static_cast<std::uint32_t>(w >> 32); }
constexpr Word make_word(std::uint32_t pos, std::uint32_t count) noexcept {
  return (Word{count} << 32) | pos;
}

struct RingControl {
  static constexpr std::uint32_t kLayoutVersion = RingView::kLayoutVersion;

  SegmentHeader header;
  std::uint64_t capacity;      // bytes, a power of two
  std::uint32_t max_messages;  // 0: limited by bytes only
  std::uint32_t reserved0;

  // Producer-private line: only producers touch it, so taking the lock moves no cache line
  // between a producer and a consumer.
  alignas(64) pthread_mutex_t put_mutex;
  Word cached_tail;  // guarded by put_mutex (invariant 3)

  // head on a line of its own: written by the put_mutex holder (invariant 1), read by consumers.
  // A consumer spinning on it must not also pull the producer's lock away from the producer.
  alignas(64) std::atomic<Word> head;

  // Consumer-private line.
  alignas(64) pthread_mutex_t get_mutex;
  Word cached_head;  // guarded by get_mutex

  // tail on a line of its own: written by the get_mutex holder, read by producers.
  alignas(64) std::atomic<Word> tail;

  // Wake line: read on every commit, written only around sleeps.
  alignas(64) std::atomic<std::uint32_t> data_seq;   // futex: bumped to wake a sleeping consumer
  std::atomic<std::uint32_t> space_seq;              // futex: bumped to wake a sleeping producer
  std::atomic<std::uint32_t> get_waiting;            // set by the get_mutex holder while it sleeps
  std::atomic<std::uint32_t> put_waiting;            // set by the put_mutex holder while it sleeps
  std::atomic<std::uint32_t> fd_armed;               // a poller watches the wake descriptor
  std::atomic<std::uint32_t> data_signaled;          // a wake byte is (or is about to be) pending

  // State line.
  alignas(64) std::atomic<std::uint32_t> closed;     // 0 open, 1 closing, 2 closed
  std::atomic<std::uint32_t> tasks_done;             // JoinableQueue; futex for join()
  std::atomic<std::uint32_t> join_waiters;
  std::atomic<std::uint64_t> abandoned_puts;
  std::atomic<std::uint64_t> abandoned_gets;
};

static_assert(std::is_standard_layout_v<RingControl>);
static_assert(sizeof(RingControl) <= RingView::kControlSize);
static_assert(offsetof(RingControl, put_mutex) % 64 == 0);
static_assert(offsetof(RingControl, head) % 64 == 0 && offsetof(RingControl, tail) % 64 == 0,
              "each commit word has a cache line of its own");
static_assert(offsetof(RingControl, head) - offsetof(RingControl, put_mutex) >= 64,
              "the producer lock and head must not share a cache line");
static_assert(offsetof(RingControl, tail) - offsetof(RingControl, get_mutex) >= 64,
              "the consumer lock and tail must not share a cache line");
static_assert(std::atomic<Word>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// Every record starts with this, 8-aligned in the data area; the payload follows.
struct RecordHeader {
  std::uint32_t size;
  std::uint32_t tag;
};
static_assert(sizeof(RecordHeader) == RingView::kRecordHeader);

}  // namespace mproc::detail
