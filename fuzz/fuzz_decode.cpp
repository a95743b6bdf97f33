// Fuzz target: decoding a message of each supported kind from bytes another process wrote
// (include/mproc/detail/codec.hpp). A record whose type tag matches but whose payload is
// arbitrary must decode to a value or fail with mproc::Error (EBADMSG): never a crash, a read
// outside the record, an allocation the record cannot justify, or undefined behaviour.
//
// Input:  byte 0  which type (one of kTypes, modulo)
//         byte 1  where the payload is cut in two pieces, as a record wrapping around the end
//                 of a ring is (0: one piece; k: the first piece is k * size / 256 bytes)
//         rest    the payload
// Each piece lives in a heap block of exactly its size, so that a sanitizer sees any overread.
// A value that decodes is encoded again and decoded again, and must come back the same.
// Under AddressSanitizer, the bytes a decode allocates in all are counted, and must stay within
// what the record can justify: kBytesPerElement for each element its length prefixes may claim
// (codec.hpp: no more than the record's size plus kMaxBareElements), plus a constant.
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "fuzz_support.hpp"
#include "mproc/detail/codec.hpp"
#include "mproc/error.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define MPROC_FUZZ_COUNT_ALLOCATIONS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MPROC_FUZZ_COUNT_ALLOCATIONS 1
#endif
#endif
#ifdef MPROC_FUZZ_COUNT_ALLOCATIONS
// From <sanitizer/allocator_interface.h>, which g++ does not ship; the runtime has it.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             std::size_t),
                                                         void (*free_hook)(const volatile void*));
#endif

namespace {

// Bytes allocated while g_counting (the target is single-threaded).
bool g_counting = false;
std::size_t g_allocated = 0;
#ifdef MPROC_FUZZ_COUNT_ALLOCATIONS
void on_malloc(const volatile void*, std::size_t n) {
  if (g_counting) g_allocated += n;
}
void on_free(const volatile void*) {}
[[maybe_unused]] const bool g_hooked = __sanitizer_install_malloc_and_free_hooks(&on_malloc, &on_free) != 0;
#endif
// Generous: the largest element here (a map node of strings, an Order) is under 200 bytes.
constexpr std::size_t kBytesPerElement = 256;

using mproc::detail::RecordView;

// ---- the message types: every case codec.hpp distinguishes ------------------------------------

struct Pod {  // raw: memcpy
  std::int32_t a;
  std::uint16_t b;
  char c[6];
  double d;
};

enum class Side : std::uint8_t { buy, sell };

struct Leg {
  std::string symbol;
  double price = 0;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(symbol, price);
  }
};

struct Order {  // a user type with the customisation point, nesting other user types
  std::string id;
  std::int32_t quantity = 0;
  Side side = Side::buy;
  std::vector<Leg> legs;
  std::optional<std::string> note;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(id, quantity, side, legs, note);
  }
};

struct Tree {  // recursive: nesting depth is up to the sender
  std::string label;
  std::vector<Tree> children;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(label, children);
  }
};

struct Empty {  // encodes to no bytes at all
  template <class Ar>
  void serialize(Ar&) {}
};

template <class T>
std::vector<std::byte> encoded(const T& v) {
  const mproc::detail::Encoded e = mproc::detail::encode(v);
  const auto* b = static_cast<const std::byte*>(e.data);
  return {b, b + e.size};
}

// Decodes the record as a T; a value that comes out must survive a round trip unchanged
// (compared by its encoding: NaNs compare equal that way, and every type here encodes
// deterministically except the unordered ones, compared with ==).
template <class T, bool kUnordered = false>
void decode_as(RecordView record) {
  record.tag = mproc::detail::type_tag<T>();  // a wrong tag is the ring target's business
  T value{};
  bool taken = false;
  g_allocated = 0;
  g_counting = true;
  try {
    taken = mproc::detail::decode(record, value);  // false: a size that cannot be a T
  } catch (const mproc::Error& e) {
    FUZZ_CHECK(e.code().value() == EBADMSG);
  }
  g_counting = false;
  const std::size_t claimable = record.size() + mproc::detail::RecordInputArchive::kMaxBareElements;
  FUZZ_CHECK(g_allocated <= claimable * kBytesPerElement + (std::size_t{1} << 20));
  if (!taken) return;
  const std::vector<std::byte> once = encoded(value);
  T again{};
  FUZZ_CHECK(mproc::detail::decode(
      RecordView{once.data(), once.size(), nullptr, 0, mproc::detail::type_tag<T>()}, again));
  if constexpr (kUnordered) {
    FUZZ_CHECK(again == value);
  } else {
    FUZZ_CHECK(encoded(again) == once);
  }
}

using Decoder = void (*)(RecordView);
const Decoder kTypes[] = {
    // raw: memcpy
    &decode_as<std::int32_t>,
    &decode_as<double>,
    &decode_as<Pod>,
    &decode_as<std::chrono::nanoseconds>,
    &decode_as<std::optional<std::int64_t>>,  // trivially copyable too
    // contiguous: the elements' bytes
    &decode_as<std::string>,
    &decode_as<mproc::Bytes>,
    &decode_as<std::vector<std::int64_t>>,
    &decode_as<std::u32string>,
    &decode_as<std::vector<Pod>>,
    // structured: cereal
    &decode_as<std::vector<std::string>>,
    &decode_as<std::map<std::string, std::int32_t>>,
    &decode_as<std::optional<std::string>>,
    &decode_as<std::tuple<std::int32_t, std::string, double>>,
    &decode_as<std::pair<std::uint8_t, std::vector<std::uint16_t>>>,
    &decode_as<std::map<std::string, std::vector<std::optional<std::int64_t>>>>,
    &decode_as<std::variant<std::int32_t, std::string, std::vector<double>>>,
    &decode_as<std::vector<bool>>,
    &decode_as<std::pair<bool, std::string>>,
    &decode_as<std::set<std::int32_t>>,
    &decode_as<std::unordered_map<std::int32_t, std::string>, true>,
    &decode_as<std::unordered_set<std::string>, true>,
    &decode_as<std::array<std::string, 3>>,
    &decode_as<std::list<std::chrono::milliseconds>>,
    &decode_as<std::deque<std::pair<std::string, bool>>>,
    &decode_as<std::vector<std::vector<std::vector<std::int8_t>>>>,
    &decode_as<std::vector<Empty>>,
    &decode_as<Order>,
    &decode_as<Tree>,
};
constexpr std::size_t kTypeCount = sizeof kTypes / sizeof kTypes[0];

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mproc_fuzz::Input in(data, size);
  const auto type = in.take<std::uint8_t>();
  const auto cut = in.take<std::uint8_t>();
  const std::vector<std::byte> payload = in.rest();
  const std::size_t first = payload.size() * cut / 256;
  const std::size_t second = payload.size() - first;
  // Two heap blocks of exactly the pieces' sizes.
  auto a = std::make_unique<std::byte[]>(first);
  auto b = std::make_unique<std::byte[]>(second);
  if (first != 0) std::memcpy(a.get(), payload.data(), first);
  if (second != 0) std::memcpy(b.get(), payload.data() + first, second);
  kTypes[type % kTypeCount](RecordView{a.get(), first, b.get(), second, 0});
  return 0;
}

// ---- seeds: one valid encoding of most types, some cut in two ---------------------------------

namespace {

template <class T, bool kUnordered = false>
void add(std::vector<mproc_fuzz::Seed>& out, const char* name, const T& value, std::uint8_t cut = 0) {
  std::size_t index = 0;
  while (kTypes[index] != &decode_as<T, kUnordered>) ++index;
  std::vector<std::uint8_t> bytes{static_cast<std::uint8_t>(index), cut};
  const std::vector<std::byte> e = encoded(value);
  mproc_fuzz::put_bytes(bytes, e.data(), e.size());
  out.push_back({name, std::move(bytes)});
}

}  // namespace

std::vector<mproc_fuzz::Seed> mproc_fuzz_seeds() {
  std::vector<mproc_fuzz::Seed> s;
  add(s, "int32", std::int32_t{-7});
  add(s, "pod", Pod{1, 2, "abcde", 0.5});
  add(s, "string", std::string("hello, world"), 100);
  add(s, "bytes", mproc::Bytes{std::byte{0}, std::byte{0xff}, std::byte{7}});
  add(s, "u32string", std::u32string(U"wide"));
  add(s, "vector_string", std::vector<std::string>{"a", "", "ccc"}, 128);
  add(s, "map", std::map<std::string, std::int32_t>{{"one", 1}, {"two", 2}});
  add(s, "optional_string", std::optional<std::string>("maybe"));
  add(s, "tuple", std::tuple<std::int32_t, std::string, double>{3, "x", 2.5});
  add(s, "pair", std::pair<std::uint8_t, std::vector<std::uint16_t>>{9, {1, 2, 3}});
  add(s, "nested_map",
      std::map<std::string, std::vector<std::optional<std::int64_t>>>{{"k", {1, std::nullopt, 3}}}, 60);
  add(s, "variant", std::variant<std::int32_t, std::string, std::vector<double>>{std::string("v")});
  add(s, "vector_bool", std::vector<bool>{true, false, true});
  add(s, "pair_bool", std::pair<bool, std::string>(true, "t"));
  add(s, "set", std::set<std::int32_t>{1, 5, 9});
  add<std::unordered_map<std::int32_t, std::string>, true>(
      s, "unordered_map", std::unordered_map<std::int32_t, std::string>{{1, "a"}});
  add(s, "array", std::array<std::string, 3>{"x", "y", "z"});
  add(s, "deque", std::deque<std::pair<std::string, bool>>{{"p", true}});
  add(s, "vector3", std::vector<std::vector<std::vector<std::int8_t>>>{{{1}, {}}, {}});
  add(s, "vector_empty", std::vector<Empty>(3));
  add(s, "order", Order{"ord-1", 10, Side::sell, {{"ABC", 1.5}, {"XYZ", 2.25}}, std::string("rush")}, 90);
  add(s, "tree", Tree{"root", {Tree{"a", {}}, Tree{"b", {Tree{"c", {}}}}}});

  // Reproducers of what this target found (tests/codec_test.cpp says the same in words).
  const auto raw = [&](const char* name, Decoder d, std::vector<std::uint8_t> payload) {
    std::size_t index = 0;
    while (kTypes[index] != d) ++index;
    payload.insert(payload.begin(), {static_cast<std::uint8_t>(index), 0});
    s.push_back({name, std::move(payload)});
  };
  std::vector<std::uint8_t> p;
  mproc_fuzz::put(p, std::uint64_t{1} << 60);  // a length of 2^60 in an 8-byte message
  raw("regress-length-2-60", &decode_as<std::vector<std::string>>, p);
  p.clear();
  mproc_fuzz::put(p, std::uint64_t{1});
  mproc_fuzz::put(p, std::uint64_t{1} << 40);  // nested: 1 TiB of elements
  raw("regress-nested-length-2-40", &decode_as<std::vector<std::vector<std::vector<std::int8_t>>>>, p);
  p.clear();
  mproc_fuzz::put(p, std::uint64_t{3});
  p.push_back(1);  // two of the three bools missing: cereal::Exception escaped decode()
  raw("regress-truncated", &decode_as<std::vector<bool>>, p);
  p.clear();
  mproc_fuzz::put(p, std::uint64_t{1});
  p.push_back(2);  // a bool that is 2
  raw("regress-bool-2", &decode_as<std::vector<bool>>, p);
  p.clear();
  for (int i = 0; i < 260; ++i) {  // a Tree 260 levels deep, past the limit (deeper: a stack overflow)
    mproc_fuzz::put(p, std::uint64_t{0});
    mproc_fuzz::put(p, std::uint64_t{i + 1 < 260 ? 1u : 0u});
  }
  raw("regress-deep-tree", &decode_as<Tree>, p);
  raw("regress-empty-vector", &decode_as<std::vector<Pod>>, {});  // memcpy to a null data()
  p.clear();
  for (std::size_t i = 0, levels = 250; i < levels; ++i) {  // each level claims all it may
    mproc_fuzz::put(p, std::uint64_t{0});
    const std::size_t left = levels * 16 - p.size() - 8;
    mproc_fuzz::put(p, std::uint64_t{left + mproc::detail::RecordInputArchive::kMaxBareElements});
  }
  raw("regress-nested-claims", &decode_as<Tree>, p);  // a gigabyte from 4 KB
  return s;
}
