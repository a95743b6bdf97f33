#pragma once
// The cereal-free half of message encoding (the other half: detail/codec.hpp): what a Queue<T>
// or a Connection needs for the raw and contiguous cases, and the dispatch to the structured
// one. Three cases, chosen at compile time:
//   raw         trivially copyable T (no pointers): memcpy, no encoding at all;
//   contiguous  std::vector<E> / std::basic_string<E> of raw E (std::string, mproc::Bytes, ...):
//               the elements' bytes, copied once in and once out;
//   structured  anything cereal can serialise: StructuredCodec<T>, which only detail/codec.hpp
//               defines (and which brings all of cereal with it).
// queue.hpp and pipe.hpp include detail/codec.hpp too, unless MPROC_NO_CEREAL is defined before
// them: then a Queue<int>, Queue<std::string> or Queue<mproc::Bytes> compiles without parsing
// cereal, and a structured T is a compile-time error that names the macro.
// Design note: the structured case is a class template specialised in detail/codec.hpp, not a
// function found by lookup, because ADL would not look in mproc::detail for T = std::map.
// Decoding trusts nothing in the record but its type tag: see detail/codec.hpp.
// Parse cost, measured when this header was split off (g++ 12.2, -std=c++20, on a shared
// 2-core machine; t.cpp includes <mproc/queue.hpp> and uses Queue<int>):
//   g++ -std=c++20 -Iinclude -E t.cpp | wc -c          time g++ -std=c++20 -Iinclude -fsyntax-only t.cpp
//   before the split               2,731,780 bytes     0.99 s (best of 5)
//   after, default (with cereal)   2,731,790 bytes     1.07 s (noise: the same text)
//   after, -DMPROC_NO_CEREAL       1,387,123 bytes     0.49 s
// Queue<std::string> + Queue<mproc::Bytes>: the same sizes, 0.95 s -> 0.46 s. <mproc/value.hpp>
// alone never parsed cereal: 1,728,626 bytes, 0.57 s, unchanged.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/bytes.hpp"
#include "mproc/detail/ring.hpp"
#include "mproc/detail/type_tag.hpp"

namespace mproc::detail {

/// mproc::Error (EBADMSG): the next message is not a `expected`; it was left in place.
[[noreturn]] void throw_wrong_type(const char* what, const std::string& expected);
/// mproc::Error (EBADMSG): a record of `size` bytes tagged as a `type` is not a valid encoding of
/// one (`why`); it was left in place.
[[noreturn]] void throw_undecodable(const std::string& type, std::size_t size, const char* why);

template <class T>
inline constexpr bool is_raw_v =
    std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T>;

template <class T>
struct contiguous_traits {
  static constexpr bool value = false;
};
template <class E, class A>
struct contiguous_traits<std::vector<E, A>> {
  static constexpr bool value = is_raw_v<E> && !std::is_same_v<E, bool>;
  using element = E;
};
template <class C, class Tr, class A>
struct contiguous_traits<std::basic_string<C, Tr, A>> {
  static constexpr bool value = is_raw_v<C>;
  using element = C;
};
template <class T>
inline constexpr bool is_contiguous_v = contiguous_traits<T>::value;

/// The bytes of one message, ready to be copied into a ring.
struct Encoded {
  const void* data;
  std::size_t size;
};

/// The structured case: not available here. detail/codec.hpp specialises it for every T that
/// is neither raw nor contiguous, with `encode`, `decode` and whether cereal serialises T.
template <class T, class = void>
struct StructuredCodec {
  static constexpr bool available = false;
  static constexpr bool serialisable = false;
};

/// Whether this translation unit can encode a T at all (false: a structured T with
/// MPROC_NO_CEREAL defined and detail/codec.hpp not included).
template <class T>
inline constexpr bool codec_available_v = is_raw_v<T> || is_contiguous_v<T> || StructuredCodec<T>::available;

#define MPROC_DETAIL_NO_CEREAL_MESSAGE                                                               \
  "this message type is encoded by cereal (it is neither trivially copyable nor a vector or string " \
  "of such), but MPROC_NO_CEREAL is defined: remove that macro, or #include "                        \
  "<mproc/detail/codec.hpp> before using the type"

template <class T>
Encoded encode(const T& value) {
  if constexpr (is_raw_v<T>) {
    return {&value, sizeof(T)};
  } else if constexpr (is_contiguous_v<T>) {
    return {value.data(), value.size() * sizeof(typename contiguous_traits<T>::element)};
  } else {
    static_assert(StructuredCodec<T>::available, MPROC_DETAIL_NO_CEREAL_MESSAGE);
    return StructuredCodec<T>::encode(value);
  }
}

/// Decodes `r` into `out`. Returns false (leaving `out` alone) when the record has another
/// type or, for raw and contiguous T, a size no T can have; throws mproc::Error (EBADMSG) when
/// a record of the right type is not a valid encoding (`out` is then left in a valid but
/// unspecified state).
template <class T>
bool decode(const RecordView& r, T& out) {
  if (r.tag != type_tag<T>()) return false;
  if constexpr (is_raw_v<T>) {
    if (r.size() != sizeof(T)) return false;
    // A small T whose record does not wrap: a copy of a size known here, inlined (no call).
    // Not a large one: GCC inlines that as `rep movsq`, three times slower than glibc's memcpy
    // at 4 KiB.
    bool copied = false;
    if constexpr (sizeof(T) <= 64) {
      if (r.second_size == 0) {
        std::memcpy(&out, r.first, sizeof(T));
        copied = true;
      }
    }
    if (!copied) r.copy_to(&out);
  } else if constexpr (is_contiguous_v<T>) {
    using E = typename contiguous_traits<T>::element;
    if (r.size() % sizeof(E) != 0) return false;
    out.resize(r.size() / sizeof(E));
    r.copy_to(out.data());
  } else {
    static_assert(StructuredCodec<T>::available, MPROC_DETAIL_NO_CEREAL_MESSAGE);
    StructuredCodec<T>::decode(r, out);
  }
  return true;
}

/// A Taker that decodes into an existing T.
template <class T>
Taker taker_into(T& out) {
  return Taker{[](void* ctx, const RecordView& r) { return decode(r, *static_cast<T*>(ctx)); }, &out};
}

/// A Taker that emplaces a decoded T into an optional.
template <class T>
Taker taker_emplace(std::optional<T>& out) {
  return Taker{[](void* ctx, const RecordView& r) {
                 auto& o = *static_cast<std::optional<T>*>(ctx);
                 T value{};
                 if (!decode(r, value)) return false;
                 o.emplace(std::move(value));
                 return true;
               },
               &out};
}

/// Any record, as raw bytes.
inline Taker taker_bytes(Bytes& out) {
  return Taker{[](void* ctx, const RecordView& r) {
                 auto& b = *static_cast<Bytes*>(ctx);
                 b.resize(r.size());
                 r.copy_to(b.data());
                 return true;
               },
               &out};
}

/// A type a Queue, a Connection or a Pool task can carry. A structured T counts only where
/// detail/codec.hpp is included (see codec_available_v for the error to give otherwise).
template <class T>
concept Message = is_raw_v<T> || is_contiguous_v<T> || StructuredCodec<T>::serialisable;

}  // namespace mproc::detail
