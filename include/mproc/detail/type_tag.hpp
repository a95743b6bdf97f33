#pragma once
// The type tag and type name of a message or element type: what a record, a named Queue and a
// named Value/Array carry so that a reader expecting another type finds out. Cereal-free, so
// value.hpp and every header that only needs the tag stay light (detail/codec.hpp includes it).
#include <cstdint>
#include <string>
#include <typeinfo>

#include "mproc/detail/demangle.hpp"

namespace mproc::detail {

/// FNV-1a of a NUL-terminated string, with a seed mixed in.
constexpr std::uint32_t fnv1a(const char* s, std::uint32_t seed) noexcept {
  std::uint32_t h = 2166136261u ^ seed;
  for (; *s != '\0'; ++s) {
    h ^= static_cast<unsigned char>(*s);
    h *= 16777619u;
  }
  return h;
}

/// A 32-bit tag naming T (its mangled name and size), carried in every record so that a
/// receiver expecting another type finds out instead of decoding garbage.
template <class T>
std::uint32_t type_tag() noexcept {
  static const std::uint32_t tag = fnv1a(typeid(T).name(), static_cast<std::uint32_t>(sizeof(T)));
  return tag;
}

/// T's name as a reader would write it ("int", "std::string"), for messages.
template <class T>
std::string type_name() {
  return demangle(typeid(T).name());
}

}  // namespace mproc::detail
