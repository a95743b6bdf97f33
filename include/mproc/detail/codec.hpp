#pragma once
// How a message of type T becomes bytes in a ring and back. Three cases, chosen at compile time:
//   raw         trivially copyable T (no pointers): memcpy, no encoding at all;
//   contiguous  std::vector<E> / std::basic_string<E> of raw E (std::string, mproc::Bytes, ...):
//               the elements' bytes, copied once in and once out;
//   structured  anything cereal can serialise (std::map, std::optional, std::tuple, nested
//               containers, user types with a `serialize(Archive&)` function): cereal's binary
//               archive, encoded through a per-thread reused buffer and decoded straight from
//               the ring.
#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <cstddef>
#include <cstdint>
#include <istream>
#include <optional>
#include <ostream>
#include <streambuf>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "mproc/detail/demangle.hpp"
#include "mproc/detail/ring.hpp"

namespace mproc {

/// The raw-bytes message type: `Queue<mproc::Bytes>`, `Connection::send_bytes`.
using Bytes = std::vector<std::byte>;

namespace detail {

std::uint32_t fnv1a(const char* s, std::uint32_t seed) noexcept;
/// mproc::Error (EBADMSG): the next message is not a `expected`; it was left in place.
[[noreturn]] void throw_wrong_type(const char* what, const std::string& expected);

template <class T>
inline constexpr bool is_raw_v = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                                 !std::is_member_pointer_v<T>;

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

/// A 32-bit tag naming T (its mangled name and size), carried in every record so that a
/// receiver expecting another type finds out instead of decoding garbage.
template <class T>
std::uint32_t type_tag() noexcept {
  static const std::uint32_t tag = fnv1a(typeid(T).name(), static_cast<std::uint32_t>(sizeof(T)));
  return tag;
}

template <class T>
std::string type_name() {
  return demangle(typeid(T).name());
}

/// Appends what cereal writes to a reusable string.
class GrowBuf final : public std::streambuf {
 public:
  std::string bytes;

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    bytes.append(s, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type ch) override {
    if (!traits_type::eq_int_type(ch, traits_type::eof())) bytes.push_back(traits_type::to_char_type(ch));
    return ch;
  }
};

/// Reads the (possibly two) pieces of a record in place.
class ViewBuf final : public std::streambuf {
 public:
  explicit ViewBuf(const RecordView& r) : r_(r) { set(r.first, r.first_size); }

 protected:
  int_type underflow() override {
    if (!second_ && r_.second_size != 0) {
      second_ = true;
      set(r_.second, r_.second_size);
      return traits_type::to_int_type(*gptr());
    }
    return traits_type::eof();
  }

 private:
  void set(const std::byte* p, std::size_t n) {
    auto* c = const_cast<char*>(reinterpret_cast<const char*>(p));
    setg(c, c, c + n);
  }
  RecordView r_;
  bool second_ = false;
};

/// The bytes of one message, ready to be copied into a ring.
struct Encoded {
  const void* data;
  std::size_t size;
};

template <class T>
Encoded encode(const T& value) {
  if constexpr (is_raw_v<T>) {
    return {&value, sizeof(T)};
  } else if constexpr (is_contiguous_v<T>) {
    return {value.data(), value.size() * sizeof(typename contiguous_traits<T>::element)};
  } else {
    thread_local GrowBuf buf;
    thread_local std::ostream out(&buf);
    buf.bytes.clear();  // keeps its capacity: steady-state puts do not allocate
    {
      cereal::BinaryOutputArchive archive(out);
      archive(value);
    }
    return {buf.bytes.data(), buf.bytes.size()};
  }
}

/// Decodes `r` into `out`. Returns false (leaving `out` alone) when the record has another
/// type; throws when a record of the right type cannot be decoded.
template <class T>
bool decode(const RecordView& r, T& out) {
  if (r.tag != type_tag<T>()) return false;
  if constexpr (is_raw_v<T>) {
    if (r.size() != sizeof(T)) return false;
    r.copy_to(&out);
  } else if constexpr (is_contiguous_v<T>) {
    using E = typename contiguous_traits<T>::element;
    if (r.size() % sizeof(E) != 0) return false;
    out.resize(r.size() / sizeof(E));
    r.copy_to(out.data());
  } else {
    ViewBuf buf(r);
    std::istream in(&buf);
    cereal::BinaryInputArchive archive(in);
    archive(out);
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

template <class T>
concept Message = is_raw_v<T> || is_contiguous_v<T> ||
                  (std::is_default_constructible_v<T> &&
                   cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value &&
                   cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value);

}  // namespace detail
}  // namespace mproc
