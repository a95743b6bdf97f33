#pragma once
// Structured messages: how a T that is neither raw nor contiguous (see detail/codec_core.hpp)
// becomes bytes in a ring and back, through cereal. Including this header brings all of cereal
// and its std type bindings (std::map, std::optional, std::tuple, std::variant, nested
// containers, user types with a `serialize(Archive&)` function): cereal's binary archive,
// encoded through a per-thread reused buffer and decoded straight from the ring by
// RecordInputArchive, which reads it defensively. queue.hpp, pipe.hpp and pool.hpp include it
// (the first two unless MPROC_NO_CEREAL is defined).
// Decoding trusts nothing in the record but its type tag: the bytes come from another process,
// which may be faulty or hostile. A record that is not a valid encoding of T is an mproc::Error
// (EBADMSG), never a crash, a read outside the record or an allocation the record cannot
// justify. The one exception is the raw case, where T's bytes are taken as they come: a peer
// can hand over a bool member that is neither 0 nor 1, or an enum value out of range, as memcpy
// would; send such types through cereal (a serialize function) where that matters. Fuzzed by
// fuzz/fuzz_decode.cpp.
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

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <ostream>
#include <streambuf>
#include <string>
#include <type_traits>

#include "mproc/detail/codec_core.hpp"

namespace mproc {
namespace detail {

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

/// Reads cereal's binary format (what cereal::BinaryOutputArchive writes) straight from a record,
/// trusting none of it. Unlike cereal::BinaryInputArchive it
///  - bounds length prefixes by the record's bytes, so that a prefix of 2^60 is an error instead
///    of an attempt at that allocation. Every element of every container owns at least one byte
///    of the encoding (its own, or its size prefix's), except elements that encode to nothing
///    (empty structs, std::tuple<>), of which a record may hold kMaxBareElements. So a prefix
///    may not exceed the bytes left, and all the prefixes of a record together may not exceed
///    its size: nested containers (a recursive type) cannot multiply what one record makes the
///    receiver allocate, which stays within (record size + kMaxBareElements) elements;
///  - takes a bool only as 0 or 1 (any other byte would give the bool an undefined value);
///  - bounds nesting at kMaxDepth, so that a recursive type cannot run the stack out;
///  - never reads past the record, and copies no istream (cereal's does the same check).
/// A failure is a cereal::Exception, as cereal's own (a std::variant's index out of range);
/// decode() turns both into mproc::Error (EBADMSG).
/// A type's serialize/load functions must be templates on the archive (cereal's customary
/// `template <class Archive> void serialize(Archive&)`): one written for
/// cereal::BinaryInputArchive alone is not found.
class RecordInputArchive final
    : public cereal::InputArchive<RecordInputArchive, cereal::AllowEmptyClassElision> {
 public:
  /// Levels of cereal nesting: each level of a user's nesting (a struct holding a vector of
  /// such structs) is two, so a recursive type may nest about 250 deep. A level costs a few
  /// hundred bytes of stack (under 1 KiB with AddressSanitizer): about 0.5 MiB at the limit.
  static constexpr std::size_t kMaxDepth = 512;
  static constexpr std::uint64_t kMaxBareElements = 1 << 16;

  explicit RecordInputArchive(const RecordView& r) noexcept
      : cereal::InputArchive<RecordInputArchive, cereal::AllowEmptyClassElision>(this), r_(r) {}

  std::size_t remaining() const noexcept { return r_.size() - pos_; }

  void loadBinary(void* out, std::size_t n) {
    if (n > remaining()) {
      throw cereal::Exception("it ends too early (" + std::to_string(n) + " bytes wanted at offset " +
                              std::to_string(pos_) + ", " + std::to_string(remaining()) + " left)");
    }
    if (n == 0) return;  // out may be null (an empty vector's data())
    auto* dst = static_cast<std::byte*>(out);
    if (pos_ < r_.first_size) {
      const std::size_t k = std::min(n, r_.first_size - pos_);
      std::memcpy(dst, r_.first + pos_, k);
      dst += k;
      pos_ += k;
      n -= k;
    }
    if (n != 0) {
      std::memcpy(dst, r_.second + (pos_ - r_.first_size), n);
      pos_ += n;
    }
  }

  /// A container is about to be resized to `count` elements.
  void check_count(std::uint64_t count) {
    const std::uint64_t budget = std::uint64_t{r_.size()} + kMaxBareElements;
    if ((count > remaining() && count - remaining() > kMaxBareElements) || count > budget - claimed_) {
      throw cereal::Exception("a length of " + std::to_string(count) + " at offset " + std::to_string(pos_) +
                              ", but only " + std::to_string(remaining()) + " bytes follow");
    }
    claimed_ += count;  // <= budget
  }

  void enter() {
    if (++depth_ > kMaxDepth) {
      throw cereal::Exception("nested more than " + std::to_string(kMaxDepth) + " levels deep");
    }
  }
  void leave() noexcept { --depth_; }

 private:
  RecordView r_;
  std::size_t pos_ = 0;
  std::size_t depth_ = 0;
  std::uint64_t claimed_ = 0;  // elements promised by the length prefixes so far
};

}  // namespace detail
}  // namespace mproc

// The archive's cereal bindings, as cereal/archives/binary.hpp gives BinaryInputArchive its own.
namespace cereal {

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(mproc::detail::RecordInputArchive& ar,
                                                                    T& t) {
  if constexpr (std::is_same_v<T, bool>) {
    std::uint8_t byte = 0;
    ar.loadBinary(&byte, 1);
    if (byte > 1) throw Exception("a bool holds " + std::to_string(byte) + ", neither 0 nor 1");
    t = byte != 0;
  } else {
    ar.loadBinary(std::addressof(t), sizeof t);
  }
}

template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(mproc::detail::RecordInputArchive& ar, NameValuePair<T>& t) {
  ar(t.value);
}

template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(mproc::detail::RecordInputArchive& ar, SizeTag<T>& t) {
  ar(t.size);
  ar.check_count(static_cast<std::uint64_t>(t.size));
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(mproc::detail::RecordInputArchive& ar, BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

// Called around every value the archive loads: the nesting depth.
template <class T>
void prologue(mproc::detail::RecordInputArchive& ar, const T&) {
  ar.enter();
}
template <class T>
void epilogue(mproc::detail::RecordInputArchive& ar, const T&) noexcept {
  ar.leave();
}

namespace traits::detail {
// load_minimal (enums) is checked against the matching output archive's save_minimal.
template <>
struct get_output_from_input<mproc::detail::RecordInputArchive> {
  using type = BinaryOutputArchive;
};
}  // namespace traits::detail

}  // namespace cereal

namespace mproc::detail {

/// The structured case of encode() and decode() (detail/codec_core.hpp).
template <class T>
struct StructuredCodec<T, std::enable_if_t<!is_raw_v<T> && !is_contiguous_v<T>>> {
  static constexpr bool available = true;
  static constexpr bool serialisable =
      std::is_default_constructible_v<T> &&
      cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value &&
      cereal::traits::is_input_serializable<T, RecordInputArchive>::value;

  static Encoded encode(const T& value) {
    thread_local GrowBuf buf;
    thread_local std::ostream out(&buf);
    buf.bytes.clear();  // keeps its capacity: steady-state puts do not allocate
    {
      cereal::BinaryOutputArchive archive(out);
      archive(value);
    }
    return {buf.bytes.data(), buf.bytes.size()};
  }

  static void decode(const RecordView& r, T& out) {
    RecordInputArchive archive(r);
    try {
      archive(out);
    } catch (const cereal::Exception& e) {
      throw_undecodable(type_name<T>(), r.size(), e.what());
    }
  }
};

}  // namespace mproc::detail
