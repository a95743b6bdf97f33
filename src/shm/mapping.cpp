#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "mproc/detail/mapping.hpp"
#include "shm/named.hpp"
#include "os/sys.hpp"

namespace mproc::detail {

Mapping Mapping::shared_anonymous(std::size_t size, std::string_view what) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t length = (size + page - 1) / page * page;
  void* addr = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (addr == MAP_FAILED) sys::throw_errno("cannot map shared memory for", what);
  return Mapping{addr, length};
}

void Mapping::reset() noexcept {
  // Read the lifetime from the header before the memory goes; then drop the lease.
  const bool tracked = lease_fd_ >= 0 && segment_is_tracked(addr_, size_);
  if (addr_ != nullptr) ::munmap(addr_, size_);
  if (lease_fd_ >= 0) release_lease(lease_fd_, tracked);
  addr_ = nullptr;
  size_ = 0;
  lease_fd_ = -1;
}

}  // namespace mproc::detail
