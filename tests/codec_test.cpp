// Decoding messages that another process wrote (include/mproc/detail/codec.hpp): a record of the
// right type whose bytes are not a valid encoding is an mproc::Error (EBADMSG), never a crash,
// an overread or an allocation the record cannot justify. Each test here reproduces something
// fuzz/fuzz_decode.cpp found (fuzz/README.md).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mproc/detail/codec.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"

std::size_t take_largest_allocation();  // tests/support/alloc_counter.cpp
std::size_t take_allocated_bytes();

namespace {

using mproc::detail::RecordView;

struct Tree {
  std::string label;
  std::vector<Tree> children;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(label, children);
  }
};

struct Empty {
  template <class Archive>
  void serialize(Archive&) {}
};

template <class T>
std::vector<std::byte> encode(const T& value) {
  const mproc::detail::Encoded e = mproc::detail::encode(value);
  const auto* b = static_cast<const std::byte*>(e.data);
  return {b, b + e.size};
}

template <class T>
void append(std::vector<std::byte>& out, const T& value) {
  const auto* b = reinterpret_cast<const std::byte*>(&value);
  out.insert(out.end(), b, b + sizeof value);
}

// Decodes `bytes` as a T (with T's tag, cut in two at `cut` as at a ring's end); returns the
// errno of the mproc::Error it threw, or 0.
template <class T>
int decode_errno(const std::vector<std::byte>& bytes, T& out, std::size_t cut = SIZE_MAX) {
  cut = std::min(cut, bytes.size());
  const RecordView r{bytes.data(), cut, bytes.data() + cut, bytes.size() - cut, mproc::detail::type_tag<T>()};
  try {
    EXPECT_TRUE(mproc::detail::decode(r, out));
  } catch (const mproc::Error& e) {
    return e.code().value();
  }
  return 0;
}

TEST(Codec, a_length_prefix_of_2_to_the_28_in_a_short_message_is_refused_before_allocating) {
  // std::optional<std::vector<std::uint64_t>>: cereal's "nullopt" flag (0: a value follows),
  // then a length, then the elements.
  std::vector<std::byte> bytes;
  append(bytes, std::uint8_t{0});
  append(bytes, std::uint64_t{1} << 28);  // 2 GiB of elements, in a message of 17 bytes
  append(bytes, std::uint64_t{42});
  std::optional<std::vector<std::uint64_t>> out;
  (void)take_largest_allocation();
  EXPECT_EQ(decode_errno(bytes, out), EBADMSG);
  EXPECT_LT(take_largest_allocation(), std::size_t{1} << 20);
}

TEST(Codec, a_length_prefix_of_2_to_the_60_is_an_error_not_a_bad_alloc) {
  std::vector<std::byte> bytes;
  append(bytes, std::uint64_t{1} << 60);
  std::vector<std::string> out;
  EXPECT_EQ(decode_errno(bytes, out), EBADMSG);
}

TEST(Codec, nested_length_prefixes_cannot_multiply_what_a_short_message_allocates) {
  // A Tree 250 levels deep in 4 KB, each level claiming as many children as one prefix may
  // (the bytes left, plus the allowance for elements that encode to nothing). Each claim alone
  // is plausible; together they asked for about 250 * 69000 Trees (a gigabyte) before the
  // prefixes were bounded as a whole.
  std::vector<std::byte> bytes;
  const std::size_t levels = 250, size = levels * 16;
  for (std::size_t i = 0; i < levels; ++i) {
    append(bytes, std::uint64_t{0});  // label: empty
    const std::size_t left = size - bytes.size() - 8;
    append(bytes, std::uint64_t{left + mproc::detail::RecordInputArchive::kMaxBareElements});
  }
  Tree out;
  (void)take_allocated_bytes();
  EXPECT_EQ(decode_errno(bytes, out), EBADMSG);
  const std::size_t claimable = size + mproc::detail::RecordInputArchive::kMaxBareElements;
  EXPECT_LT(take_allocated_bytes(), claimable * sizeof(Tree) + (1 << 20));
}

TEST(Codec, a_truncated_message_is_an_EBADMSG_error_that_names_the_type) {
  const std::vector<std::byte> whole = encode(std::map<std::string, int>{{"key", 1}, {"other", 2}});
  for (std::size_t n = 0; n < whole.size(); ++n) {
    const std::vector<std::byte> part(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
    std::map<std::string, int> out;
    EXPECT_EQ(decode_errno(part, out), EBADMSG) << n << " bytes";
  }
  const RecordView r{whole.data(), 5, nullptr, 0, mproc::detail::type_tag<std::map<std::string, int>>()};
  std::map<std::string, int> out;
  try {
    (void)mproc::detail::decode(r, out);
    ADD_FAILURE() << "no error";
  } catch (const mproc::Error& e) {
    EXPECT_NE(std::string(e.what()).find("std::map"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("5 bytes"), std::string::npos) << e.what();
  }
}

TEST(Codec, a_bool_that_is_neither_0_nor_1_is_refused) {
  // Any other byte would give the bool an undefined value (UBSan reports the first use).
  std::vector<bool> bits;
  std::vector<std::byte> bytes;
  append(bytes, std::uint64_t{3});
  for (int b : {1, 0, 2}) append(bytes, static_cast<std::uint8_t>(b));
  EXPECT_EQ(decode_errno(bytes, bits), EBADMSG);
  bytes.back() = std::byte{1};
  EXPECT_EQ(decode_errno(bytes, bits), 0);
  EXPECT_EQ(bits, (std::vector<bool>{true, false, true}));

  // std::optional's own flag is a bool too ("nullopt": 1 when empty).
  std::optional<std::string> maybe;
  std::vector<std::byte> flagged{std::byte{2}};
  append(flagged, std::uint64_t{0});
  EXPECT_EQ(decode_errno(flagged, maybe), EBADMSG);
  flagged[0] = std::byte{0};
  EXPECT_EQ(decode_errno(flagged, maybe), 0);
  EXPECT_EQ(maybe, std::optional<std::string>(""));
}

TEST(Codec, nesting_beyond_the_limit_is_refused_and_deep_legal_nesting_decodes) {
  // Tree: label length (8 bytes, 0), children count (8 bytes, 1), then the child, ...; depth d.
  const auto chain = [](int depth) {
    std::vector<std::byte> bytes;
    for (int i = 0; i < depth; ++i) {
      append(bytes, std::uint64_t{0});
      append(bytes, std::uint64_t{i + 1 < depth ? 1u : 0u});
    }
    return bytes;
  };
  Tree out;
  EXPECT_EQ(decode_errno(chain(200), out), 0);
  EXPECT_EQ(decode_errno(chain(300), out), EBADMSG);
  // Deep enough to overflow a stack without the limit (a few hundred bytes per level).
  EXPECT_EQ(decode_errno(chain(100000), out), EBADMSG);
}

TEST(Codec, containers_of_elements_that_encode_to_nothing_still_decode) {
  std::vector<Empty> out;
  EXPECT_EQ(decode_errno(encode(std::vector<Empty>(1000)), out), 0);
  EXPECT_EQ(out.size(), 1000u);
}

TEST(Codec, a_message_split_at_the_end_of_the_ring_decodes_as_a_whole_one_does) {
  const std::map<std::string, std::vector<int>> value{{"a", {1, 2, 3}}, {"bb", {}}, {"ccc", {4}}};
  const std::vector<std::byte> bytes = encode(value);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    std::map<std::string, std::vector<int>> out;
    EXPECT_EQ(decode_errno(bytes, out, cut), 0) << "cut at " << cut;
    EXPECT_EQ(out, value) << "cut at " << cut;
  }
}

// UBSan (the asan preset): an empty vector's data() is null, and memcpy from or to null is
// undefined even for zero bytes.
TEST(Codec, empty_vectors_and_byte_strings_travel_through_a_queue_and_a_pipe) {
  mproc::Queue<std::vector<int>> q;
  q.put(std::vector<int>{});
  const auto got = q.try_get();
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->empty());

  auto [a, b] = mproc::Pipe();
  b.send_bytes({});
  b.send(std::vector<double>{});
  const auto bytes = a.recv_bytes();
  ASSERT_TRUE(bytes.has_value());
  EXPECT_TRUE(bytes->empty());
  const auto doubles = a.recv<std::vector<double>>();
  ASSERT_TRUE(doubles.has_value());
  EXPECT_TRUE(doubles->empty());
}

// The messages of the codec's errors name the type with the right article.
TEST(Messages, a_type_name_takes_the_right_article) {
  const auto what = [](auto f) -> std::string {
    try {
      f();
    } catch (const std::exception& e) {
      return e.what();
    }
    return {};
  };
  EXPECT_NE(what([] { mproc::detail::throw_wrong_type("Connection", "int"); }).find("receive an int from"),
            std::string::npos);
  EXPECT_NE(
      what([] { mproc::detail::throw_wrong_type("Connection", "unsigned int"); }).find("an unsigned int"),
      std::string::npos);
  EXPECT_NE(what([] { mproc::detail::throw_wrong_type("Connection", "long"); }).find("receive a long from"),
            std::string::npos);
  EXPECT_NE(what([] { mproc::detail::throw_undecodable("int", 3, "short"); }).find("decode an int from"),
            std::string::npos);
  EXPECT_NE(
      what([] { mproc::detail::throw_undecodable("std::string", 3, "short"); }).find("decode a std::string"),
      std::string::npos);
}

}  // namespace
