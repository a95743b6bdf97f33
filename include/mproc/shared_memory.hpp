#pragma once
/// mproc::SharedMemory — a named block of shared memory that separately started programs can
/// open, as Python's multiprocessing.shared_memory.SharedMemory.
///
///   auto shm = mproc::SharedMemory::create("frames", 1 << 20);     // in one program
///   auto same = mproc::SharedMemory::open("frames");               // in another
///   std::span<std::byte> bytes = same.buf();
///
/// Names: 1 to 200 characters of letters, digits, '.', '_' and '-', not starting with '.';
///   anything else is an mproc::Error (EINVAL) naming the rule. The object lives in /dev/shm as
///   "mproc.<name>" (so `ls /dev/shm` and `mproc ls` can tell mproc's objects apart).
/// Layout: a 64-byte header (magic, layout version, kind, size) before the bytes you see, so
///   opening a name that holds something else — another mproc kind, a truncated or foreign file —
///   is a clear error (EINVAL) saying what was expected and what was found, never a crash.
/// Creation: create() fails with EEXIST if the name exists; open_or_create() is race-free
///   (exactly one creator). The name appears only once the block is complete, so a creator
///   killed half-way leaves nothing. Space is reserved at creation (posix_fallocate), so a full
///   /dev/shm is an ENOSPC error then, not a SIGBUS later.
/// Size: at least one byte. 0 is an mproc::UsageError (Python's ValueError: "'size' must be
///   a positive number different from zero"), from create() and open_or_create() alike; a
///   size no file can hold is an mproc::Error (EFBIG).
/// Permissions: mode 0600 unless asked otherwise (set exactly, whatever the umask): other users
///   cannot open it.
/// Lifetime (<mproc/named_options.hpp>): tracked by default — the name is removed once no
///   process has the block open. For results one program writes and another reads later,
///   create it with Lifetime::persistent: it then stays until unlink() (by anyone allowed to)
///   or `mproc rm --stale` after its creator died. The memory stays valid in a process until it
///   closes its SharedMemory, even after an unlink.
/// Thread safety: distinct objects may be used concurrently; the bytes are yours to synchronise.
#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "mproc/detail/mapping.hpp"
#include "mproc/error.hpp"
#include "mproc/named_options.hpp"

namespace mproc {

class SharedMemory {
 public:
  static SharedMemory create(std::string_view name, std::size_t size, NamedOptions options = {});
  static SharedMemory open(std::string_view name);
  /// Opens `name`, or creates it with `size` bytes if it does not exist; created() tells which.
  /// An existing block of another size is an mproc::Error (EINVAL).
  static SharedMemory open_or_create(std::string_view name, std::size_t size, NamedOptions options = {});
  /// Removes the name (ENOENT if it does not exist).
  static void unlink(std::string_view name);

  SharedMemory(SharedMemory&&) noexcept = default;
  SharedMemory& operator=(SharedMemory&&) noexcept = default;

  std::span<std::byte> buf() const noexcept { return {data_, size_}; }
  std::size_t size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }
  /// Whether this object created the block (open_or_create).
  bool created() const noexcept { return created_; }
  /// Unmaps it from this process.
  void close() noexcept;
  /// Removes the name (the memory stays mapped here until close()).
  void unlink() const { unlink(name_); }

 private:
  SharedMemory(std::string name, detail::Mapping mapping, std::size_t size, bool created) noexcept;

  std::string name_;
  detail::Mapping mapping_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool created_ = false;
};

}  // namespace mproc
