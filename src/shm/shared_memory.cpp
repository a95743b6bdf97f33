#include "mproc/shared_memory.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <limits>
#include <string>

#include "mproc/error.hpp"
#include "shm/named.hpp"
#include "os/sys.hpp"

namespace mproc {
namespace {
constexpr std::uint32_t kLayoutVersion = 1;
using detail::kSegmentDataOffset;
using detail::SegmentKind;
}  // namespace

SharedMemory::SharedMemory(std::string name, detail::Mapping mapping, std::size_t size, bool created) noexcept
    : name_(std::move(name)),
      mapping_(std::move(mapping)),
      data_(static_cast<std::byte*>(mapping_.data()) + kSegmentDataOffset),
      size_(size),
      created_(created) {}

namespace {

// A size create() can honour: at least one byte (as Python), and not so large that the header
// added to it wraps round to a small file (the block would then claim bytes it does not have).
void check_size(std::string_view name, std::size_t size) {
  if (size == 0) {
    throw UsageError("cannot create SharedMemory \"" + std::string(name) +
                     "\": its size must be a positive number of bytes, not 0");
  }
  if (size > static_cast<std::size_t>(std::numeric_limits<off_t>::max()) - kSegmentDataOffset) {
    throw Error(EFBIG, "cannot create SharedMemory \"" + std::string(name) + "\"",
                "(" + std::to_string(size) + " bytes is more than a file can hold)");
  }
}

}  // namespace

SharedMemory SharedMemory::create(std::string_view name, std::size_t size, NamedOptions options) {
  detail::validate_name(name);
  check_size(name, size);
  const std::string what = "SharedMemory \"" + std::string(name) + "\"";
  detail::NamedSegment seg = detail::create_unnamed_segment(kSegmentDataOffset + size, options.mode, what);
  detail::publish_segment(seg, SegmentKind::shared_memory, kLayoutVersion, size, 0, options.lifetime);
  detail::link_segment(seg, name, SegmentKind::shared_memory);
  return SharedMemory(std::string(name), std::move(seg.mapping), size, true);
}

SharedMemory SharedMemory::open(std::string_view name) {
  detail::NamedSegment seg = detail::open_segment(name, SegmentKind::shared_memory, kLayoutVersion, 0);
  const auto& h = *static_cast<const detail::SegmentHeader*>(seg.mapping.data());
  return SharedMemory(std::string(name), std::move(seg.mapping), h.payload_size, false);
}

SharedMemory SharedMemory::open_or_create(std::string_view name, std::size_t size, NamedOptions options) {
  detail::validate_name(name);
  check_size(name, size);  // refused before looking: an existing block cannot make 0 right
  // Open first; create if absent; open again if another process created it meanwhile.
  for (int round = 0;; ++round) {
    try {
      SharedMemory shm = open(name);
      if (shm.size() != size) {
        throw Error(EINVAL, "cannot open SharedMemory \"" + std::string(name) + "\"",
                    "(it exists with " + std::to_string(shm.size()) + " bytes; " + std::to_string(size) +
                        " were asked for)");
      }
      return shm;
    } catch (const Error& e) {
      if (e.code().value() != ENOENT || round > 100) throw;
    }
    try {
      return create(name, size, options);
    } catch (const Error& e) {
      if (e.code().value() != EEXIST) throw;
    }
  }
}

void SharedMemory::unlink(std::string_view name) {
  detail::unlink_named(name, "SharedMemory");
}

void SharedMemory::close() noexcept {
  mapping_ = detail::Mapping();
  data_ = nullptr;
  size_ = 0;
}

}  // namespace mproc
