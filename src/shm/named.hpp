#pragma once
// Named shared-memory segments: validation of names, race-free creation, the checks made on
// attach, and the lease that decides when an unused object is removed (docs/design/named.md).
// Every named mproc object goes through here.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/detail/named_typed.hpp"
#include "shm/segment.hpp"

namespace mproc::detail {

/// Throws mproc::Error (EINVAL) unless `name` is 1-200 of [A-Za-z0-9._-], not starting with '.'.
void validate_name(std::string_view name);
/// "/mproc.<name>", the shm_open name.
std::string shm_path(std::string_view name);
/// "/dev/shm/mproc.<name>", the file.
std::string file_path(std::string_view name);
/// A human name for a kind ("SharedMemory", "Queue", ...).
const char* kind_name(SegmentKind kind) noexcept;

/// Checks the header of a segment of `size` bytes at `mem` (which another process wrote)
/// against what the caller expects: size, magic, kind, layout version, element type, payload
/// size. Throws mproc::Error (EINVAL) naming the object (`what` is e.g. "Queue \"jobs\"") and
/// what was expected and found. Reads nothing past `size`; reads only the header.
/// `type_name` (optional) names the element type the caller expects, for the message when the
/// segment holds another.
void check_segment_header(const void* mem, std::size_t size, SegmentKind kind, std::uint32_t version,
                          std::uint64_t type_hash, std::string_view what, std::string_view type_name = {});

struct NamedSegment {
  Mapping mapping;  // holds this process's lease on the segment
  bool created = false;
};

/// A new, zeroed segment of `total` bytes (header included) with no name yet, mode set exactly,
/// space reserved, this process's lease taken. The caller initialises it, then calls
/// publish_segment and link_segment. `what` names it in errors.
NamedSegment create_unnamed_segment(std::size_t total, mode_t mode, std::string_view what);
/// Publishes the header (creator, lifetime, kind...; magic last).
/// With a `type_name`, the segment must have kTypeNameBytes after the payload for it.
void publish_segment(NamedSegment& seg, SegmentKind kind, std::uint32_t version, std::uint64_t payload,
                     std::uint64_t type_hash, Lifetime lifetime, std::string_view type_name = {});
/// Gives a published segment its name: the object appears complete or not at all.
/// mproc::Error (EEXIST) if the name exists — after removing it first if it was a tracked
/// object that nobody uses any more.
void link_segment(NamedSegment& seg, std::string_view name, SegmentKind kind);
/// Opens `name`, takes this process's lease, and checks the header.
NamedSegment open_segment(std::string_view name, SegmentKind kind, std::uint32_t version,
                          std::uint64_t type_hash, std::string_view type_name = {});

/// Removes a named object's file (mproc::Error ENOENT if there is none).
void unlink_named(std::string_view name, const char* kind);

/// Creates, opens or opens-or-creates the object `spec` names. A created segment of `size`
/// bytes (its own SegmentHeader at offset 0) is initialised by `init` before its header is
/// published and its name linked; an opened one is checked against kind, version and type.
/// `created` says which. A typed object passes its element type's name (`type_name`): a created
/// segment records it, and an open that finds another type names both.
Mapping attach_named(const NamedSpec& spec, SegmentKind kind, std::uint32_t version, std::size_t size,
                     std::uint64_t type_hash, void (*init)(void* mem, const void* ctx), const void* ctx,
                     bool* created = nullptr, std::string_view type_name = {});

/// Drops a lease taken by create_unnamed_segment/open_segment (closing `fd`) and, if the
/// segment is tracked and no other process holds a lease, removes its name. Called by
/// Mapping::reset with `tracked` read from the header before unmapping.
void release_lease(int fd, bool tracked) noexcept;
/// Whether the segment at `mem` (size bytes) is a complete mproc segment whose name is to be
/// removed once unused.
bool segment_is_tracked(const void* mem, std::size_t size) noexcept;

/// Which unused objects a sweep removes. None of them ever removes a queue that still holds an
/// unread message, except stale_discarding.
enum class Sweep {
  unused_tracked,    ///< tracked objects nobody has open (the automatic sweep)
  stale,             ///< those, and persistent ones whose creator is dead (`mproc rm --stale`)
  stale_discarding,  ///< as stale, unread messages or not (`mproc rm --stale --discard`)
};
struct SweptObject {
  std::string name;
  SegmentKind kind{};
  std::uint32_t unread = 0;  ///< messages a removed queue still held (stale_discarding only)
};
/// Removes this user's unused mproc objects in /dev/shm whose names start with `prefix`, as
/// `which` says; returns what it removed, sorted by name.
std::vector<SweptObject> sweep_named(Sweep which, std::string_view prefix = {});
/// The automatic sweep run before each creation: at most once a second per process; errors are
/// ignored (a sweep never makes a creation fail).
void sweep_now_and_then() noexcept;

}  // namespace mproc::detail
