#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "mproc/detail/mapping.hpp"
#include "mproc/error.hpp"
#include "shm/named.hpp"
#include "os/sys.hpp"

namespace mproc::detail {

namespace {

std::atomic<bool> g_keep_descriptors{false};

// A memfd for anonymous memory, or -1 where the memory is to be plain MAP_ANONYMOUS: before
// mproc::init (such a program cannot start spawn or forkserver children, the only users of the
// descriptor), past half of this process's descriptor limit — one descriptor per object for its
// whole life must not eat the table the program's own files and sockets need — or when
// memfd_create fails for any reason (out of descriptors, a sandbox that forbids it): the object
// is still made, only without the descriptor, and sending it says why.
int anonymous_memfd() {
  if (!g_keep_descriptors.load(std::memory_order_relaxed)) return -1;
  const int fd = ::memfd_create("mproc-anonymous", MFD_CLOEXEC);
  if (fd < 0) return -1;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      static_cast<rlim_t>(fd) >= limit.rlim_cur / 2) {
    sys::close_fd(fd);
    return -1;
  }
  return fd;
}

}  // namespace

void keep_anonymous_descriptors() noexcept {
  g_keep_descriptors.store(true, std::memory_order_relaxed);
}

Mapping Mapping::shared_anonymous(std::size_t size, std::string_view what) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t length = (size + page - 1) / page * page;
  // A memfd rather than MAP_ANONYMOUS where it can be used and spared: the same shmem pages, but
  // with a descriptor that a spawned or forkserver child can receive and map
  // (docs/design/start-methods.md). Without one, forked children share the memory as before.
  const int fd = anonymous_memfd();
  if (fd >= 0 && sys::retry_eintr([&] { return ::ftruncate(fd, static_cast<off_t>(length)); }) != 0) {
    const int err = errno;
    sys::close_fd(fd);
    throw Error(err, "cannot size shared memory for", what);
  }
  void* addr = ::mmap(nullptr, length, PROT_READ | PROT_WRITE,
                      fd >= 0 ? MAP_SHARED : MAP_SHARED | MAP_ANONYMOUS, fd, 0);
  if (addr == MAP_FAILED) {
    const int err = errno;
    if (fd >= 0) sys::close_fd(fd);
    throw Error(err, "cannot map shared memory for", what);
  }
  Mapping m{addr, length};
  m.memfd_ = fd;
  return m;
}

Mapping Mapping::from_memfd(int fd, std::string_view what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    sys::close_fd(fd);
    throw Error(err, "cannot map the shared memory of", what);
  }
  const auto length = static_cast<std::size_t>(st.st_size);
  void* addr = length == 0 ? MAP_FAILED : ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    const int err = length == 0 ? EINVAL : errno;
    sys::close_fd(fd);
    throw Error(err, "cannot map the shared memory of", what);
  }
  Mapping m{addr, length};
  m.memfd_ = fd;
  return m;
}

void Mapping::reset() noexcept {
  // Read the lifetime from the header before the memory goes; then drop the lease.
  const bool tracked = lease_fd_ >= 0 && segment_is_tracked(addr_, size_);
  if (addr_ != nullptr) ::munmap(addr_, size_);
  if (lease_fd_ >= 0) release_lease(lease_fd_, tracked);
  if (memfd_ >= 0) sys::close_fd(memfd_);
  memfd_ = -1;
  addr_ = nullptr;
  size_ = 0;
  lease_fd_ = -1;
}

}  // namespace mproc::detail
