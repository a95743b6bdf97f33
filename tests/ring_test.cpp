// The ring under Queue and Pipe, read after a faulty or hostile process wrote into its shared
// memory (src/ring/get.cpp): corruption is reported as mproc::Error (EPROTO) and leaves the ring as
// it is; nothing is read or written outside the ring. Each test reproduces something
// fuzz/fuzz_ring.cpp or fuzz/fuzz_segment_header.cpp found (fuzz/README.md).
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/codec.hpp"
#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"
#include "os/wait.hpp"
#include "ring/layout.hpp"

namespace {

using mproc::detail::Clock;
using mproc::detail::RecordView;
using mproc::detail::RingControl;
using mproc::detail::RingStatus;
using mproc::detail::RingView;

constexpr std::size_t kCapacity = 4096;
constexpr auto kNow = Clock::time_point::min();

// A ring in a heap block of exactly its footprint, as a sanitizer then sees any stray access.
class HeapRing {
 public:
  HeapRing()
      : mem_(static_cast<std::byte*>(::operator new (RingView::footprint(kCapacity), std::align_val_t{64}))) {
    std::memset(mem_, 0, RingView::footprint(kCapacity));
    RingView::initialize(mem_, kCapacity, 0, 3, 0);
    view = RingView(mem_);
  }
  ~HeapRing() { ::operator delete (mem_, std::align_val_t{64}); }
  HeapRing(const HeapRing&) = delete;
  HeapRing& operator=(const HeapRing&) = delete;

  RingControl& control() { return *view.control(); }
  std::byte* data() { return mem_ + RingView::kControlSize; }

  void put(const std::string& s) { ASSERT_EQ(view.put(s.data(), s.size(), 7, kNow), RingStatus::ok); }
  // The errno of the mproc::Error a get threw, or -1 and the record in `out`.
  int get(std::string& out, Clock::time_point deadline = kNow) {
    auto take = [](void* ctx, const RecordView& r) {
      auto& s = *static_cast<std::string*>(ctx);
      s.resize(r.size());
      r.copy_to(s.data());
      return true;
    };
    try {
      EXPECT_EQ(view.get({take, &out}, deadline), RingStatus::ok);
      return -1;
    } catch (const mproc::Error& e) {
      return e.code().value();
    }
  }

  RingView view;

 private:
  std::byte* mem_;
};

TEST(Ring, a_record_header_claiming_more_than_the_ring_holds_is_reported_as_corruption) {
  HeapRing ring;
  ring.put("hello");
  const std::uint32_t huge = 0xfffffff0;
  std::memcpy(ring.data(), &huge, sizeof huge);  // the first record's size
  std::string out;
  EXPECT_EQ(ring.get(out), EPROTO);
  EXPECT_EQ(ring.get(out), EPROTO) << "the ring is left as it is: the next get sees the same";
  EXPECT_EQ(ring.view.size(), 1u);
}

TEST(Ring, a_record_longer_than_what_was_committed_is_reported_as_corruption) {
  HeapRing ring;
  ring.put("hello");  // 8 + 5 bytes: 2 units committed
  const std::uint32_t longer = 100;
  std::memcpy(ring.data(), &longer, sizeof longer);
  std::string out;
  EXPECT_EQ(ring.get(out), EPROTO);
}

TEST(Ring, a_tail_ahead_of_head_is_reported_as_corruption) {
  HeapRing ring;
  ring.put("a");
  ring.put("b");
  // tail one record on and head rewound: head - tail wraps round to 2^32 - 2 units.
  ring.control().head.store(mproc::detail::make_word(0, 1));
  ring.control().tail.store(mproc::detail::make_word(2, 0));
  ring.control().cached_head = mproc::detail::make_word(0, 1);
  std::string out;
  EXPECT_EQ(ring.get(out), EPROTO);
}

TEST(Ring, the_error_says_what_was_found) {
  HeapRing ring;
  ring.put("x");
  const std::uint32_t huge = 1u << 20;
  std::memcpy(ring.data(), &huge, sizeof huge);
  try {
    std::string out;
    auto take = [](void*, const RecordView&) { return true; };
    (void)ring.view.get({take, &out}, kNow);
    ADD_FAILURE() << "no error";
  } catch (const mproc::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("corrupted Queue"), std::string::npos) << what;
    EXPECT_NE(what.find("1048576 bytes"), std::string::npos) << what;
  }
}

TEST(Ring, a_capacity_rewritten_after_attach_moves_no_access_outside_the_ring) {
  HeapRing ring;
  ring.control().capacity = std::uint64_t{1} << 40;  // a peer's scribble, after the view was made
  EXPECT_EQ(ring.view.capacity(), kCapacity);
  const std::string big(kCapacity - 8, 'z');  // the largest message, wrapping round the end
  ring.put("first");
  std::string out;
  EXPECT_EQ(ring.get(out), -1);
  ring.put(big);
  EXPECT_EQ(ring.get(out), -1);
  EXPECT_EQ(out, big);
}

// What a process opening a named queue checks before it makes a view (RingView::check_mapped).
TEST(Ring, opening_refuses_a_capacity_no_ring_has_or_that_the_segment_cannot_hold) {
  std::vector<std::byte> mem(RingView::footprint(kCapacity) + 64);
  auto* mem_ptr = mem.data();
  const auto check = [&](std::uint64_t capacity, std::size_t mapped) {
    std::memcpy(mem_ptr + offsetof(RingControl, capacity), &capacity, sizeof capacity);
    try {
      RingView::check_mapped(mem_ptr, mapped, "Queue \"q\"");
      return 0;
    } catch (const mproc::Error& e) {
      EXPECT_NE(std::string(e.what()).find("Queue \"q\""), std::string::npos) << e.what();
      return e.code().value();
    }
  };
  const std::size_t size = RingView::footprint(kCapacity);
  EXPECT_EQ(check(kCapacity, size), 0);
  EXPECT_EQ(check(kCapacity, size - 1), EINVAL);                                   // truncated
  EXPECT_EQ(check(kCapacity + 8, size + 8), EINVAL);                               // not a power of two
  EXPECT_EQ(check(2048, size), EINVAL);                                            // smaller than any ring
  EXPECT_EQ(check(~std::uint64_t{0} - RingView::kControlSize + 1, size), EINVAL);  // wraps footprint to 0
  EXPECT_EQ(check(kCapacity, 100), EINVAL);                                        // not even a control block
}

}  // namespace

// ---- batches: a record that cannot be taken ends a get_many and stays at the front ----------

TEST(RingBatch, a_corrupt_record_ends_a_batch_after_the_good_ones_and_is_reported_next) {
  HeapRing ring;
  ring.put("aaaaaaa");  // 8 + 7 bytes: units 0-1
  ring.put("bbbbbbb");  // units 2-3
  ring.put("ccccccc");  // units 4-5
  const std::uint32_t huge = 0xfffffff0;
  std::memcpy(ring.data() + 2 * 16, &huge, sizeof huge);  // the third record's size
  std::vector<std::string> got;
  auto take = [](void* ctx, std::size_t, const RecordView& r) {
    auto& v = *static_cast<std::vector<std::string>*>(ctx);
    v.emplace_back(r.size(), '\0');
    r.copy_to(v.back().data());
    return true;
  };
  std::size_t taken = 0;
  EXPECT_EQ(ring.view.get_many({take, &got}, 10, kNow, taken), RingStatus::ok);
  EXPECT_EQ(taken, 2u);
  EXPECT_EQ(got, (std::vector<std::string>{"aaaaaaa", "bbbbbbb"}));
  try {
    (void)ring.view.get_many({take, &got}, 10, kNow, taken);
    ADD_FAILURE() << "no error for the corrupt record";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EPROTO);
  }
  EXPECT_EQ(ring.view.size(), 1u) << "the corrupt record stays where it was";
}

TEST(RingBatch, a_throwing_taker_keeps_what_was_taken_and_the_record_it_threw_on) {
  HeapRing ring;
  for (const char* s : {"one", "two", "three"}) ring.put(s);
  struct Ctx {
    std::vector<std::string> got;
    bool throw_on_two = true;
  } ctx;
  auto take = [](void* p, std::size_t, const RecordView& r) {
    auto& c = *static_cast<Ctx*>(p);
    std::string s(r.size(), '\0');
    r.copy_to(s.data());
    if (s == "two" && c.throw_on_two) throw std::runtime_error("undecodable");
    c.got.push_back(s);
    return true;
  };
  std::size_t taken = 0;
  EXPECT_EQ(ring.view.get_many({take, &ctx}, 10, kNow, taken), RingStatus::ok);
  EXPECT_EQ(taken, 1u);
  EXPECT_THROW((void)ring.view.get_many({take, &ctx}, 10, kNow, taken), std::runtime_error);
  EXPECT_EQ(ring.view.size(), 2u);
  ctx.throw_on_two = false;
  EXPECT_EQ(ring.view.get_many({take, &ctx}, 10, kNow, taken), RingStatus::ok);
  EXPECT_EQ(taken, 2u);
  EXPECT_EQ(ctx.got, (std::vector<std::string>{"one", "two", "three"}));
}

TEST(RingBatch, get_many_fixed_takes_only_records_of_its_size_and_type) {
  HeapRing ring;
  const std::uint64_t a = 1, b = 2;
  const std::uint32_t c = 3;
  ASSERT_EQ(ring.view.put(&a, sizeof a, 9, kNow), RingStatus::ok);
  ASSERT_EQ(ring.view.put(&b, sizeof b, 9, kNow), RingStatus::ok);
  ASSERT_EQ(ring.view.put(&c, sizeof c, 9, kNow), RingStatus::ok);  // another size
  ASSERT_EQ(ring.view.put(&a, sizeof a, 5, kNow), RingStatus::ok);  // another type
  std::uint64_t out[8] = {};
  std::size_t taken = 0;
  EXPECT_EQ(ring.view.get_many_fixed(out, sizeof out[0], 8, 9, kNow, taken), RingStatus::ok);
  EXPECT_EQ(taken, 2u);
  EXPECT_EQ(out[0], 1u);
  EXPECT_EQ(out[1], 2u);
  EXPECT_EQ(ring.view.get_many_fixed(out, sizeof out[0], 8, 9, kNow, taken), RingStatus::wrong_type);
  EXPECT_EQ(taken, 0u);
  EXPECT_EQ(ring.view.size(), 2u);
}

TEST(RingBatch, put_many_fixed_of_messages_that_can_never_fit_puts_nothing) {
  HeapRing ring;
  std::vector<std::byte> big(2 * kCapacity);
  try {
    (void)ring.view.put_many_fixed(big.data(), kCapacity, 2, 9, kNow);
    ADD_FAILURE() << "no error";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EMSGSIZE);
  }
  EXPECT_EQ(ring.view.size(), 0u);
}

// put_gather writes its pieces as one record, also where the record and a piece wrap around the
// end of the ring, and refuses a record that can never fit before touching the ring.
TEST(RingGather, pieces_make_one_record_wherever_it_wraps) {
  HeapRing ring;
  for (std::size_t shift = 0; shift < 1200; shift += 24) {  // moves the wrap point through d and b
    std::string filler(kCapacity / 2 + shift, 'f'), out;
    ring.put(filler);
    ASSERT_EQ(ring.get(out), -1);
    const std::string a = "head-", b(1500, 'b'), c = "", d(700, 'd');
    const mproc::detail::RecordPiece pieces[] = {
        {a.data(), a.size()}, {b.data(), b.size()}, {c.data(), 0}, {d.data(), d.size()}};
    ASSERT_EQ(ring.view.put_gather(pieces, 4, 7, kNow), RingStatus::ok);
    ASSERT_EQ(ring.get(out), -1);
    EXPECT_EQ(out, a + b + c + d) << "starting " << shift << " bytes further";
  }
  std::vector<char> big(kCapacity);
  const mproc::detail::RecordPiece too_big[] = {{big.data(), kCapacity / 2}, {big.data(), kCapacity / 2}};
  try {
    (void)ring.view.put_gather(too_big, 2, 7, kNow);
    ADD_FAILURE() << "no error";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EMSGSIZE);
  }
  EXPECT_EQ(ring.view.size(), 0u);
}

// A put called from inside a put of the same ring (an encoder that puts into its own queue) is
// refused, whether the side is held by its lock or biased to this thread: never a deadlock, and
// never two writers at once.
TEST(RingBias, a_put_from_inside_a_put_of_the_same_ring_is_an_error_not_a_deadlock) {
  HeapRing r;
  for (bool biased : {false, true}) {
    if (biased) {
      for (int i = 0; i < 1000; ++i) {
        r.put("x");
        std::string out;
        ASSERT_EQ(r.get(out), -1);
      }
    }
    EXPECT_EQ(r.view.stats().producer_bias_grants, biased ? 1u : 0u);
    struct Ctx {
      RingView* ring;
      int value;
    } ctx{&r.view, 5};
    const mproc::detail::MessageSource source{[](void* c, std::size_t, const void*& data, std::size_t& size) {
                                                auto* x = static_cast<Ctx*>(c);
                                                (void)x->ring->put(&x->value, sizeof x->value, 7,
                                                                   Clock::time_point::max());
                                                data = &x->value;
                                                size = sizeof x->value;
                                              },
                                              &ctx};
    try {
      (void)r.view.put_many(source, 1, 7, Clock::time_point::max());
      ADD_FAILURE() << "a nested put went through";
    } catch (const mproc::Error& e) {
      EXPECT_EQ(e.code().value(), EDEADLK) << e.what();
    }
    EXPECT_EQ(r.view.size(), 0u);
  }
}

// ---- how long a wait pauses (sys::LearnedPauses, queue.md "Spinning on a crowded machine") ----

TEST(RingSpin, a_wait_that_had_to_yield_quarters_the_next_pause_phase_down_to_none) {
  std::uint8_t state = 0;
  mproc::sys::LearnedPauses learned(state);
  EXPECT_EQ(learned.pauses(), mproc::sys::Spin::kPauses);
  for (int expected : {64, 16, 4, 1, 0, 0}) {
    learned.ended(false);
    EXPECT_EQ(learned.pauses(), expected);
  }
}

TEST(RingSpin, every_sixteenth_wait_pauses_in_full_and_one_that_ends_pausing_keeps_it) {
  std::uint8_t state = 0;
  mproc::sys::LearnedPauses learned(state);
  for (int i = 0; i < 15; ++i) learned.ended(false);
  EXPECT_EQ(learned.pauses(), mproc::sys::Spin::kPauses) << "the probe";
  learned.ended(false);  // the probe had to yield too
  EXPECT_EQ(learned.pauses(), 0);
  for (int i = 0; i < 14; ++i) learned.ended(false);
  EXPECT_EQ(learned.pauses(), 0);
  learned.ended(false);
  EXPECT_EQ(learned.pauses(), mproc::sys::Spin::kPauses) << "the next probe, sixteen waits on";
  learned.ended(true);  // the peer is back on another CPU
  EXPECT_EQ(learned.pauses(), mproc::sys::Spin::kPauses);
  learned.ended(false);
  EXPECT_EQ(learned.pauses(), 64) << "a full phase resets the count of waits too";
}

TEST(RingSpin, only_paused_holds_until_the_first_yield) {
  mproc::sys::Spin none(true, 0);
  EXPECT_TRUE(none.only_paused());
  EXPECT_TRUE(none.next());  // a yield at once
  EXPECT_FALSE(none.only_paused());

  mproc::sys::Spin two(true, 2);
  EXPECT_TRUE(two.next());
  EXPECT_TRUE(two.next());
  EXPECT_TRUE(two.only_paused());
  EXPECT_TRUE(two.next());
  EXPECT_FALSE(two.only_paused());

  mproc::sys::Spin off(false);
  EXPECT_FALSE(off.next());
  EXPECT_FALSE(off.only_paused()) << "a spin that may not wait never counts as pausing";
}

// A view's waits teach its side: a get that had to sleep for its record pauses a quarter as long
// the next time; the producer's side learned nothing (its put never waited).
TEST(RingSpin, a_get_that_slept_for_its_record_pauses_less_the_next_time) {
  HeapRing r;
  std::thread producer([&r] {
    // Puts once the consumer has announced its sleep (the waiting flag), whatever the speed.
    const auto give_up = Clock::now() + std::chrono::seconds(20);
    while (r.control().get_waiting.load() == 0 && Clock::now() < give_up) std::this_thread::yield();
    r.put("late");
  });
  std::string got;
  EXPECT_EQ(r.get(got, Clock::now() + std::chrono::seconds(30)), -1);
  producer.join();
  EXPECT_EQ(got, "late");
  std::uint8_t consumers = r.view.state().learned_pauses[1];
  std::uint8_t producers = r.view.state().learned_pauses[0];
  EXPECT_EQ(mproc::sys::LearnedPauses(consumers).pauses(), mproc::sys::Spin::kPauses / 4);
  EXPECT_EQ(mproc::sys::LearnedPauses(producers).pauses(), mproc::sys::Spin::kPauses);
}

// A put whose cached tail was stale but which finds room as soon as it looks again did not wait:
// it teaches nothing, blocking or not. (It once reset, or quartered, what the side had learned.)
TEST(RingSpin, a_put_that_finds_room_on_its_first_look_teaches_nothing) {
  HeapRing r;
  const std::string record(56, 'x');  // 64 bytes with its header: 64 of them fill the ring
  while (r.view.put(record.data(), record.size(), 7, kNow) == RingStatus::ok) {}
  std::string got;
  ASSERT_EQ(r.get(got), -1);  // room for one, which the producer's cached tail does not show
  std::uint8_t& producers = const_cast<std::uint8_t&>(r.view.state().learned_pauses[0]);
  producers = 0x02;  // as after one wait that had to yield: 64 pauses
  ASSERT_EQ(r.view.put(record.data(), record.size(), 7, kNow), RingStatus::ok);  // a try_put
  EXPECT_EQ(mproc::sys::LearnedPauses(producers).pauses(), 64);
  ASSERT_EQ(r.get(got), -1);
  ASSERT_EQ(r.view.put(record.data(), record.size(), 7, Clock::time_point::max()), RingStatus::ok);
  EXPECT_EQ(mproc::sys::LearnedPauses(producers).pauses(), 64);
}
