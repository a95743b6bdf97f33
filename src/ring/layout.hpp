#pragma once
// The shared layout of a ring (docs/design/queue.md, "Layout"): what src/ring/ implements,
// and what the fuzz target (fuzz/fuzz_ring.cpp) overwrites to play a faulty peer.
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "mproc/detail/ring.hpp"
#include "shm/segment.hpp"

namespace mproc::detail {

// Commit word: low 32 bits position in 8-byte units, high 32 bits record count (both wrap).
using Word = std::uint64_t;
constexpr std::uint32_t pos_of(Word w) noexcept {
  return static_cast<std::uint32_t>(w);
}
constexpr std::uint32_t count_of(Word w) noexcept {
  return static_cast<std::uint32_t>(w >> 32);
}
constexpr Word make_word(std::uint32_t pos, std::uint32_t count) noexcept {
  return (Word{count} << 32) | pos;
}

// One thread's claim on a side's bias (docs/design/queue.md, "Biased sides"): a cache line of
// its own, since its owner writes `busy` twice per operation.
struct alignas(64) BiasSlot {
  std::atomic<std::uint32_t> busy;   // written only by the owner: 1 inside an operation on the side
  std::uint32_t pid;                 // the owner's process: a revoker checks that it lives
  std::uint64_t start_ticks;         // ... with its start time, so that a recycled pid is not it
  std::atomic<std::uint64_t> token;  // the owner thread's sys::thread_token(); 0: a free slot
  // A hand-over asked for (kBiasWanted): operations the owner made since it saw the request, and
  // when it first saw it (CLOCK_MONOTONIC, ns). Both written by the owner, reset by the asker.
  std::atomic<std::uint32_t> wanted_ops;
  std::uint32_t reserved;
  std::atomic<std::uint64_t> wanted_since_ns;
};

inline constexpr std::uint32_t kBiasSlots = 4;         // per side
inline constexpr std::uint32_t kBiasRevoked = 0x100;   // in holder: revoked, the owner may be busy
inline constexpr std::uint32_t kBiasWanted = 0x200;    // in holder: another thread asks for the side
inline constexpr std::uint32_t kBiasDeclined = 0x400;  // holder: the owner gave the bias up when asked

struct RingControl {
  static constexpr std::uint32_t kLayoutVersion = RingView::kLayoutVersion;

  SegmentHeader header;
  std::uint64_t capacity;      // bytes, a power of two
  std::uint32_t max_messages;  // 0: limited by bytes only
  std::uint32_t reserved0;

  // Producer-private line: only producers touch it, so taking the lock moves no cache line
  // between a producer and a consumer.
  alignas(64) pthread_mutex_t put_mutex;
  Word cached_tail;  // guarded by the producer side (invariant 3)
  // The producer side's bias: 0, or the index + 1 of the slot whose thread owns the side without
  // the mutex (| kBiasRevoked while a revoker waits for it). Written under put_mutex only.
  std::atomic<std::uint32_t> put_holder;
  std::uint32_t put_streak;  // guarded by put_mutex: operations in a row by put_streak_tid
  std::uint32_t put_streak_tid;
  std::uint32_t put_threshold;  // streak that earns the bias; doubles when a live owner is revoked

  // head on a line of its own: written by the put_mutex holder (invariant 1), read by consumers.
  // A consumer spinning on it must not also pull the producer's lock away from the producer.
  alignas(64) std::atomic<Word> head;

  // Consumer-private line.
  alignas(64) pthread_mutex_t get_mutex;
  Word cached_head;                       // guarded by the consumer side
  std::atomic<std::uint32_t> get_holder;  // as put_holder, for consumers
  std::uint32_t get_streak;
  std::uint32_t get_streak_tid;
  std::uint32_t get_threshold;

  // tail on a line of its own: written by the get_mutex holder, read by producers.
  alignas(64) std::atomic<Word> tail;

  // Wake line: read on every commit, written only around sleeps.
  alignas(64) std::atomic<std::uint32_t> data_seq;  // futex: bumped to wake a sleeping consumer
  std::atomic<std::uint32_t> space_seq;             // futex: bumped to wake a sleeping producer
  std::atomic<std::uint32_t> get_waiting;           // set by the get_mutex holder while it sleeps
  std::atomic<std::uint32_t> put_waiting;           // set by the put_mutex holder while it sleeps
  std::atomic<std::uint32_t> fd_armed;              // a poller watches the wake descriptor
  std::atomic<std::uint32_t> data_signaled;         // a wake byte is (or is about to be) pending

  // State line.
  alignas(64) std::atomic<std::uint32_t> closed;  // 0 open, 1 closing, 2 closed
  std::atomic<std::uint32_t> tasks_done;          // JoinableQueue; futex for join()
  std::atomic<std::uint32_t> join_waiters;
  std::atomic<std::uint64_t> abandoned_puts;
  std::atomic<std::uint64_t> abandoned_gets;
  std::atomic<std::uint64_t> bias_grants[2];  // [0] producers, [1] consumers
  std::atomic<std::uint64_t> bias_revocations[2];
  std::atomic<std::uint64_t> bias_handovers[2];  // an owner gave the side up when asked

  BiasSlot put_slots[kBiasSlots];
  BiasSlot get_slots[kBiasSlots];
};

static_assert(std::is_standard_layout_v<RingControl>);
static_assert(sizeof(RingControl) <= RingView::kControlSize);
static_assert(offsetof(RingControl, put_mutex) % 64 == 0);
static_assert(offsetof(RingControl, head) % 64 == 0 && offsetof(RingControl, tail) % 64 == 0,
              "each commit word has a cache line of its own");
static_assert(offsetof(RingControl, head) == kQueueHeadOffset &&
                  offsetof(RingControl, tail) == kQueueTailOffset,
              "the name layer finds a queue's commit words where segment.hpp says (unread messages)");
static_assert(offsetof(RingControl, head) - offsetof(RingControl, put_mutex) >= 64,
              "the producer lock and head must not share a cache line");
static_assert(offsetof(RingControl, tail) - offsetof(RingControl, get_mutex) >= 64,
              "the consumer lock and tail must not share a cache line");
static_assert(offsetof(RingControl, put_threshold) + sizeof(std::uint32_t) <=
                      offsetof(RingControl, put_mutex) + 64 &&
                  offsetof(RingControl, get_threshold) + sizeof(std::uint32_t) <=
                      offsetof(RingControl, get_mutex) + 64,
              "a side's lock, cached word and bias words fit its one private line");
static_assert(offsetof(RingControl, put_slots) % 64 == 0 && sizeof(BiasSlot) == 64);
static_assert(std::atomic<Word>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// Every record starts with this, 8-aligned in the data area; the payload follows.
struct RecordHeader {
  std::uint32_t size;
  std::uint32_t tag;
};
static_assert(sizeof(RecordHeader) == RingView::kRecordHeader);

// A record of `payload` bytes, in 8-byte units: header, payload, padding.
inline std::uint32_t units_for(std::size_t payload) noexcept {
  return static_cast<std::uint32_t>((RingView::kRecordHeader + payload + 7) / 8);
}

}  // namespace mproc::detail
