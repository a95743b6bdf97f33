#pragma once
// Deterministic message payloads and their checksums, shared by the tests that kill processes
// and then account for every message (queue_stress_test, tests/chaos): a payload depends on its
// id alone, so a receiver can tell a torn or misdelivered message from a whole one.
// No GoogleTest here: the chaos harness is a plain program.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mproc/queue.hpp"

namespace mproc_test {

/// SplitMix64: the next pseudo-random word from `state` (which it advances).
inline std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Makes `out` `size` bytes long and fills it from `state`.
inline void fill_payload(std::uint64_t& state, std::size_t size, mproc::Bytes& out) {
  out.resize(size);
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t word = splitmix(state);
    std::memcpy(out.data() + i, &word, std::min<std::size_t>(8, size - i));
  }
}

/// FNV-1a over `n` bytes, continuing from `h` (start with 2166136261).
inline std::uint32_t fnv1a(std::uint32_t h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

}  // namespace mproc_test
