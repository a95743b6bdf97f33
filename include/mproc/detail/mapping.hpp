#pragma once
// An owned memory mapping (address + length), unmapped on destruction. Shared-memory objects
// keep one; the layout inside is theirs. Only offsets are stored inside shared memory, never
// pointers, so a mapping may sit at a different address in each process.
#include <cstddef>
#include <string_view>
#include <utility>

namespace mproc::detail {

class Mapping {
 public:
  Mapping() noexcept = default;
  /// A MAP_SHARED anonymous mapping of at least `size` bytes, zero-filled, shared with every
  /// child forked after this call. `what` names the owner in error messages.
  /// Once mproc::init has run, backed by a memfd (close-on-exec) that the mapping keeps, so that
  /// the memory can also be sent to a spawned or forkserver child (memfd()). Before init, and
  /// when this process has no descriptor to spare (EMFILE, ENFILE, or the memfd would be past
  /// half of RLIMIT_NOFILE), the memory is plain MAP_ANONYMOUS: shared with forked children
  /// only, and memfd() is -1.
  static Mapping shared_anonymous(std::size_t size, std::string_view what);
  /// Maps the whole of the memfd `fd` (another process's shared_anonymous memory, received as a
  /// descriptor) and owns `fd` from then on, also when this throws. `what` names the owner.
  static Mapping from_memfd(int fd, std::string_view what);
  /// Takes ownership of an existing mapping (from mmap of a named segment) and, when
  /// `lease_fd` >= 0, of the descriptor that holds this process's lease on the named object
  /// (named_options.hpp): on destruction the lease is dropped and, if the object is tracked and
  /// nobody else holds one, the name is removed.
  static Mapping adopt(void* addr, std::size_t size, int lease_fd = -1) noexcept {
    return Mapping{addr, size, lease_fd};
  }

  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        lease_fd_(std::exchange(other.lease_fd_, -1)),
        memfd_(std::exchange(other.memfd_, -1)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      addr_ = std::exchange(other.addr_, nullptr);
      size_ = std::exchange(other.size_, 0);
      lease_fd_ = std::exchange(other.lease_fd_, -1);
      memfd_ = std::exchange(other.memfd_, -1);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  void* data() const noexcept { return addr_; }
  std::size_t size() const noexcept { return size_; }
  /// The descriptor holding this process's lease on a named object, -1 for anonymous memory.
  int lease_fd() const noexcept { return lease_fd_; }
  /// The memfd behind anonymous memory (close-on-exec, owned by the mapping), -1 for named
  /// memory and for anonymous memory made when no descriptor was left.
  int memfd() const noexcept { return memfd_; }

 private:
  Mapping(void* addr, std::size_t size, int lease_fd = -1) noexcept
      : addr_(addr), size_(size), lease_fd_(lease_fd) {}
  void reset() noexcept;

  void* addr_ = nullptr;
  std::size_t size_ = 0;
  int lease_fd_ = -1;
  int memfd_ = -1;
};

/// From this call on, anonymous memory is a memfd that the mapping keeps, so that an anonymous
/// object can be sent to a spawned or forkserver child. mproc::init makes it; so does a binding
/// that sends descriptors by its own means (the Python module). Before it, and in programs that
/// never call init (which cannot start such children), anonymous memory is MAP_ANONYMOUS and
/// spends no descriptor. Either way it is the same shmem pages for fork.
void keep_anonymous_descriptors() noexcept;

}  // namespace mproc::detail
