#pragma once
// Named shared-memory segments: validation of names, race-free creation, and the checks made on
// attach (docs/design/named.md). Every named mproc object goes through here.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/detail/named_typed.hpp"
#include "segment.hpp"

namespace mproc::detail {

/// Throws mproc::Error (EINVAL) unless `name` is 1-200 of [A-Za-z0-9._-], not starting with '.'.
void validate_name(std::string_view name);
/// "/mproc.<name>", the shm_open name.
std::string shm_path(std::string_view name);
/// A human name for a kind ("SharedMemory", "Queue", ...).
const char* kind_name(SegmentKind kind) noexcept;

struct NamedSegment {
  Mapping mapping;
  bool created = false;
};

/// Creates `name` holding `total` bytes (header included), zeroed, mode set exactly, space
/// reserved. mproc::Error (EEXIST) if it exists. The caller initialises it, then publishes.
NamedSegment create_segment_raw(std::string_view name, std::size_t total, mode_t mode);
/// Publishes the header of a segment created by create_segment_raw (magic last).
void publish_segment(NamedSegment& seg, SegmentKind kind, std::uint32_t version, std::uint64_t payload,
                     std::uint64_t type_hash);
/// Opens `name` and checks its header against what the caller expects.
NamedSegment open_segment(std::string_view name, SegmentKind kind, std::uint32_t version,
                          std::uint64_t type_hash);

/// Removes a named object's file (mproc::Error ENOENT if there is none).
void unlink_named(std::string_view name, const char* kind);

/// Creates, opens or opens-or-creates the object `spec` names. A created segment of `size`
/// bytes (its own SegmentHeader at offset 0) is initialised by `init` before its header is
/// published; an opened one is checked against kind, version and type. `created` says which.
Mapping attach_named(const NamedSpec& spec, SegmentKind kind, std::uint32_t version, std::size_t size,
                     std::uint64_t type_hash, void (*init)(void* mem, const void* ctx), const void* ctx,
                     bool* created = nullptr);

}  // namespace mproc::detail
