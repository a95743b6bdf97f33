#pragma once
// What every fuzz target shares: a reader that turns the fuzzer's bytes into decisions (always
// defined: an exhausted input reads as zeros), a check that stops the run with a message, and
// the seed writer behind `--write-seeds DIR`.
//
// Each target defines LLVMFuzzerTestOneInput (one input) and mproc_fuzz_seeds (its seed corpus:
// a handful of valid inputs, built with the library itself so that they stay valid when the
// formats change). libFuzzer provides main() in a fuzzing build; replay_main.cpp does otherwise.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace mproc_fuzz {

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) noexcept : p_(data), n_(size) {}

  std::size_t left() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }

  template <class T>
  T take() noexcept {
    T v{};
    const std::size_t k = n_ < sizeof v ? n_ : sizeof v;
    if (k != 0) std::memcpy(&v, p_, k);  // little-endian; missing bytes stay zero
    p_ += k;
    n_ -= k;
    return v;
  }
  /// Up to `n` bytes, fewer if the input ends first.
  std::vector<std::byte> bytes(std::size_t n) {
    const std::size_t k = n < n_ ? n : n_;
    std::vector<std::byte> out(k);
    if (k != 0) std::memcpy(out.data(), p_, k);
    p_ += k;
    n_ -= k;
    return out;
  }
  /// The rest of the input.
  std::vector<std::byte> rest() { return bytes(n_); }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

/// Stops the run: libFuzzer records the input as a crash, the replay test fails.
[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "fuzz check failed at %s:%d: %s\n", file, line, what);
  std::fflush(stderr);
  std::abort();
}
#define FUZZ_CHECK(cond)                                        \
  do {                                                          \
    if (!(cond)) ::mproc_fuzz::fail(__FILE__, __LINE__, #cond); \
  } while (0)

/// Appends a value's bytes to a seed under construction.
template <class T>
void put(std::vector<std::uint8_t>& out, const T& v) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), b, b + sizeof v);
}
inline void put_bytes(std::vector<std::uint8_t>& out, const void* data, std::size_t n) {
  const auto* b = static_cast<const std::uint8_t*>(data);
  out.insert(out.end(), b, b + n);
}

struct Seed {
  std::string name;
  std::vector<std::uint8_t> bytes;
};

}  // namespace mproc_fuzz

/// Defined by each target: its seed corpus.
std::vector<mproc_fuzz::Seed> mproc_fuzz_seeds();
