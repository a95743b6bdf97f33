#pragma once
// The header at the start of every mproc shared-memory segment. A process that attaches to a
// segment checks it before touching anything else, so a segment of another kind, another
// layout version or another element type is a clear error instead of undefined behaviour.
// Anonymous segments (inherited through fork) carry it too: the layout is the same whether a
// segment was inherited or opened by name.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace mproc::detail {

enum class SegmentKind : std::uint32_t {
  lock = 1,
  rlock = 2,
  queue = 3,
  joinable_queue = 4,
  pipe = 5,
  semaphore = 6,
  bounded_semaphore = 7,
  event = 8,
  condition = 9,
  barrier = 10,
  shared_memory = 11,
  value = 12,
  array = 13,
};

/// Where a named segment's payload starts: the header gets a cache line of its own.
inline constexpr std::size_t kSegmentDataOffset = 64;

/// Kinds that hold messages (Queue, JoinableQueue) keep their two commit words at these offsets
/// from the start of the segment: 64-bit words whose high 32 bits count the records committed
/// so far (head: put, tail: taken; both wrap). So the name layer can tell whether a queue still
/// holds an unread message — an automatic removal never discards one (docs/design/named.md) —
/// without knowing the rest of the ring's layout; src/ring/layout.hpp checks that it agrees.
inline constexpr std::size_t kQueueHeadOffset = 128;
inline constexpr std::size_t kQueueTailOffset = 256;
inline constexpr bool holds_messages(SegmentKind kind) noexcept {
  return kind == SegmentKind::queue || kind == SegmentKind::joinable_queue;
}

/// Flags in SegmentHeader::flags.
inline constexpr std::uint32_t kSegmentPersistent = 1;  // Lifetime::persistent: never swept as unused
// The element type's name (NUL-terminated, at most kTypeNameBytes with the NUL) follows the
// payload, at kSegmentDataOffset + payload_size: so that a program opening the object with
// another element type is told both types' names. Segments without the flag have no name.
inline constexpr std::uint32_t kSegmentTypeName = 2;
inline constexpr std::size_t kTypeNameBytes = 128;

struct SegmentHeader {
  // "\0\0MPROC2", little end. Version 2 added the creator and the flags (named objects' lifetime);
  // a version-1 segment is "not an mproc object" to this code, and is never swept.
  static constexpr std::uint64_t kMagic = 0x32'43'4F'52'50'4D'00'00;

  // Written last, with release order, by the creator: an attacher that reads kMagic with
  // acquire order sees the rest of the header and the initialised payload.
  std::atomic<std::uint64_t> magic;
  std::uint32_t layout_version;
  SegmentKind kind;
  std::uint64_t payload_size;  // sizeof the payload struct: a cheap fingerprint of the layout
  std::uint64_t type_hash;     // element type of typed objects (queues, values); 0 otherwise
  // Named segments only (zero in anonymous ones), written before the magic and never changed:
  std::int32_t creator_pid;     // the process that created it (for `mproc ls` and rm --stale)
  std::uint32_t flags;          // kSegmentPersistent
  std::uint64_t creator_start;  // the creator's start time (clock ticks since boot), so a
                                // recycled pid is not mistaken for the creator

  /// Fills the header of a segment whose payload was just initialised.
  void publish(SegmentKind k, std::uint32_t version, std::uint64_t size, std::uint64_t type = 0) noexcept {
    layout_version = version;
    kind = k;
    payload_size = size;
    type_hash = type;
    magic.store(kMagic, std::memory_order_release);  // pairs with the acquire in attach checks
  }
};

static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(sizeof(SegmentHeader) == 48);
static_assert(sizeof(SegmentHeader) <= kSegmentDataOffset);

}  // namespace mproc::detail
