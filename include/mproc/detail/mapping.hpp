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
  static Mapping shared_anonymous(std::size_t size, std::string_view what);
  /// Takes ownership of an existing mapping (from mmap of a named segment).
  static Mapping adopt(void* addr, std::size_t size) noexcept { return Mapping{addr, size}; }

  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      addr_ = std::exchange(other.addr_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  void* data() const noexcept { return addr_; }
  std::size_t size() const noexcept { return size_; }

 private:
  Mapping(void* addr, std::size_t size) noexcept : addr_(addr), size_(size) {}
  void reset() noexcept;

  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace mproc::detail
