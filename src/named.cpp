#include "named.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <algorithm>

#include "mproc/error.hpp"
#include "sys.hpp"

namespace mproc::detail {
namespace {

std::string quoted(std::string_view name) { return "\"" + std::string(name) + "\""; }

// Maps an open shm descriptor; the descriptor is closed either way.
Mapping map_fd(int fd, std::size_t size, std::string_view name) {
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  sys::close_fd(fd);
  if (addr == MAP_FAILED) throw Error(err, "cannot map shared memory", quoted(name));
  return Mapping::adopt(addr, size);
}

}  // namespace

void validate_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 200 && name.front() != '.';
  for (char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         c == '.' || c == '_' || c == '-';
    ok = ok && allowed;
  }
  if (!ok) {
    throw Error(EINVAL, "invalid name " + quoted(name),
                "(a name is 1 to 200 letters, digits, '.', '_' or '-', and does not start with '.')");
  }
}

std::string shm_path(std::string_view name) { return "/mproc." + std::string(name); }

const char* kind_name(SegmentKind kind) noexcept {
  switch (kind) {
    case SegmentKind::lock: return "Lock";
    case SegmentKind::rlock: return "RLock";
    case SegmentKind::queue: return "Queue";
    case SegmentKind::joinable_queue: return "JoinableQueue";
    case SegmentKind::pipe: return "Pipe";
    case SegmentKind::semaphore: return "Semaphore";
    case SegmentKind::bounded_semaphore: return "BoundedSemaphore";
    case SegmentKind::event: return "Event";
    case SegmentKind::condition: return "Condition";
    case SegmentKind::barrier: return "Barrier";
    case SegmentKind::shared_memory: return "SharedMemory";
    case SegmentKind::value: return "Value";
    case SegmentKind::array: return "Array";
  }
  return "unknown kind";
}

NamedSegment create_segment_raw(std::string_view name, std::size_t total, mode_t mode) {
  validate_name(name);
  const std::string path = shm_path(name);
  const int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) sys::throw_errno("cannot create shared memory", quoted(name));
  // The umask may have taken bits away: set exactly what was asked.
  if (::fchmod(fd, mode) != 0) {
    const int err = errno;
    sys::close_fd(fd);
    ::shm_unlink(path.c_str());
    throw Error(err, "cannot set the mode of shared memory", quoted(name));
  }
  // Reserve the space now: on a full /dev/shm this fails with ENOSPC here instead of a SIGBUS
  // on first touch. posix_fallocate returns the error instead of setting errno.
  const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(total));
  if (rc != 0) {
    sys::close_fd(fd);
    ::shm_unlink(path.c_str());
    throw Error(rc, "cannot reserve " + std::to_string(total) + " bytes of shared memory for",
                quoted(name));
  }
  try {
    return NamedSegment{map_fd(fd, total, name), true};
  } catch (...) {
    ::shm_unlink(path.c_str());
    throw;
  }
}

void publish_segment(NamedSegment& seg, SegmentKind kind, std::uint32_t version, std::uint64_t payload,
                     std::uint64_t type_hash) {
  static_cast<SegmentHeader*>(seg.mapping.data())->publish(kind, version, payload, type_hash);
}

NamedSegment open_segment(std::string_view name, SegmentKind kind, std::uint32_t version,
                          std::uint64_t type_hash) {
  validate_name(name);
  const int fd = ::shm_open(shm_path(name).c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) sys::throw_errno(std::string("cannot open ") + kind_name(kind), quoted(name));
  // A creator that won the O_EXCL race may not have sized the file yet: give it a moment, as
  // for the magic below (found by eight processes racing through open_or_create).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::size_t size = 0;
  for (;;) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      sys::close_fd(fd);
      throw Error(err, "cannot inspect shared memory", quoted(name));
    }
    size = static_cast<std::size_t>(st.st_size);
    if (size >= kSegmentDataOffset || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (size < kSegmentDataOffset) {
    sys::close_fd(fd);
    throw Error(EINVAL, std::string("cannot open ") + kind_name(kind) + " " + quoted(name),
                "(the segment is " + std::to_string(size) + " bytes, too small for an mproc header: "
                "truncated, not created by mproc, or its creator died while creating it)");
  }
  NamedSegment seg{map_fd(fd, size, name), false};
  const auto& h = *static_cast<const SegmentHeader*>(seg.mapping.data());
  // A creator publishes the magic last; give one that is still initialising a moment.
  while (h.magic.load(std::memory_order_acquire) != SegmentHeader::kMagic &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const std::string what = std::string("cannot open ") + kind_name(kind) + " " + quoted(name);
  if (h.magic.load(std::memory_order_acquire) != SegmentHeader::kMagic) {
    throw Error(EINVAL, what, "(it is not an mproc object: no mproc header, or its creator died "
                              "before finishing it)");
  }
  if (h.kind != kind) {
    throw Error(EINVAL, what, std::string("(it holds a ") + kind_name(h.kind) + ")");
  }
  if (h.layout_version != version) {
    throw Error(EINVAL, what, "(it has layout version " + std::to_string(h.layout_version) +
                                  "; this program expects " + std::to_string(version) + ")");
  }
  if (h.type_hash != type_hash) {
    throw Error(EINVAL, what, "(it holds a different element type)");
  }
  if (kSegmentDataOffset + h.payload_size > size) {
    throw Error(EINVAL, what, "(the header says " + std::to_string(h.payload_size) +
                                  " bytes but the segment has only " + std::to_string(size) +
                                  ": truncated)");
  }
  return seg;
}

void unlink_named(std::string_view name, const char* kind) {
  validate_name(name);
  if (::shm_unlink(shm_path(name).c_str()) != 0) {
    sys::throw_errno(std::string("cannot unlink ") + kind, quoted(name));
  }
}

Mapping attach_named(const NamedSpec& spec, SegmentKind kind, std::uint32_t version, std::size_t size,
                     std::uint64_t type_hash, void (*init)(void* mem, const void* ctx), const void* ctx,
                     bool* created) {
  if (spec.how != OpenHow::open) {
    const std::size_t total = std::max(size, kSegmentDataOffset);
    try {
      NamedSegment seg = create_segment_raw(spec.name, total, spec.mode);
      try {
        init(seg.mapping.data(), ctx);
      } catch (...) {
        ::shm_unlink(shm_path(spec.name).c_str());
        throw;
      }
      publish_segment(seg, kind, version, total - kSegmentDataOffset, type_hash);
      if (created != nullptr) *created = true;
      return std::move(seg.mapping);
    } catch (const Error& e) {
      if (spec.how == OpenHow::create || e.code().value() != EEXIST) throw;
    }
  }
  if (created != nullptr) *created = false;
  return std::move(open_segment(spec.name, kind, version, type_hash).mapping);
}

std::byte* attach_typed(const NamedSpec& spec, bool array, std::size_t bytes, std::uint64_t type_hash,
                        void (*init)(void* data, const void* ctx), const void* ctx, Mapping& mapping,
                        std::size_t& payload) {
  struct Ctx {
    void (*init)(void*, const void*);
    const void* ctx;
  } c{init, ctx};
  mapping = attach_named(
      spec, array ? SegmentKind::array : SegmentKind::value, 1, kSegmentDataOffset + bytes, type_hash,
      [](void* mem, const void* raw) {
        const auto& cc = *static_cast<const Ctx*>(raw);
        cc.init(static_cast<std::byte*>(mem) + kSegmentDataOffset, cc.ctx);
      },
      &c);
  payload = static_cast<const SegmentHeader*>(mapping.data())->payload_size;
  return static_cast<std::byte*>(mapping.data()) + kSegmentDataOffset;
}

}  // namespace mproc::detail

namespace mproc::detail {
void unlink_named_public(std::string_view name, const char* kind) { unlink_named(name, kind); }
}  // namespace mproc::detail
