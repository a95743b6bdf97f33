// The non-blocking forms (try_put, try_get, put_for/get_for with a zero timeout) keep their
// promise while other processes stream on the same side: false from a put means full (or
// another producer asleep waiting for room), an empty optional from a get means empty. They may
// wait for another process's operation in flight, never for room or data (queue.hpp, "What
// non-blocking costs").
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>

#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Queue;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::start_child;

namespace {

// A ring large enough that nothing these tests put can ever fill it: 8-byte messages take 16
// bytes each, so 64 MiB holds four million of them.
constexpr std::size_t kBigRing = std::size_t{64} << 20;
constexpr std::int64_t kMostPerStreamer = 1'500'000;
constexpr int kTries = 20'000;

// A word in anonymous shared memory, inherited by the children: the parent's "stop" and the
// streamer's count of operations.
struct Words {
  std::atomic<std::uint32_t> stop{0};
  std::atomic<std::int64_t> done{0};
};

// Waits (bounded) until the streamer has made `n` operations, so that the tries overlap it.
bool streaming(const Words& s, std::int64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (s.done.load(std::memory_order_relaxed) < n) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
  return true;
}

}  // namespace

TEST(QueueNonBlocking, try_put_fails_only_when_full_while_another_process_streams_puts) {
  Queue<std::int64_t> q(kBigRing);
  mproc_test::Shared<Words> words;
  Words* s = &*words;
  mproc::Process streamer = start_child([&] {
    std::int64_t n = 0;
    while (s->stop.load(std::memory_order_relaxed) == 0 && n < kMostPerStreamer) {
      q.put(n);
      s->done.store(++n, std::memory_order_relaxed);
    }
  });
  ASSERT_TRUE(streaming(*s, 1000)) << "the streaming producer never started";
  int refused = 0, refused_zero = 0;
  for (int i = 0; i < kTries; ++i) {
    if (!q.try_put(-1 - i)) ++refused;
    if (!q.put_for(-1 - i, 0ms)) ++refused_zero;
  }
  const std::int64_t streamed_during = s->done.load(std::memory_order_relaxed);
  s->stop.store(1, std::memory_order_relaxed);
  ASSERT_EQ(exit_code_of(streamer), 0);
  std::printf("%d try_puts and %d zero-timeout put_fors beside %lld streamed puts\n", kTries, kTries,
              static_cast<long long>(streamed_during));
  EXPECT_EQ(refused, 0) << "try_put returned false on a queue that could not be full";
  EXPECT_EQ(refused_zero, 0) << "put_for(0) returned false on a queue that could not be full";
  // Everything that was accepted is there, once.
  std::int64_t mine = 0, theirs = 0;
  while (auto v = q.try_get()) (*v < 0 ? mine : theirs) += 1;
  EXPECT_EQ(mine, 2 * kTries - refused - refused_zero);
  EXPECT_EQ(theirs, s->done.load());
}

TEST(QueueNonBlocking, try_get_finds_nothing_only_when_empty_while_another_process_streams_gets) {
  Queue<std::int64_t> q(kBigRing);
  // More than the streamer may take plus all the tries: the queue never runs dry.
  const std::int64_t filled = kMostPerStreamer + 2 * kTries + 1000;
  for (std::int64_t i = 0; i < filled; ++i) ASSERT_TRUE(q.try_put(i));
  mproc_test::Shared<Words> words;
  Words* s = &*words;
  mproc::Process streamer = start_child([&] {
    std::int64_t n = 0;
    while (s->stop.load(std::memory_order_relaxed) == 0 && n < kMostPerStreamer) {
      CHILD_CHECK(q.get().has_value());
      s->done.store(++n, std::memory_order_relaxed);
    }
  });
  ASSERT_TRUE(streaming(*s, 1000)) << "the streaming consumer never started";
  int empty = 0, empty_zero = 0;
  for (int i = 0; i < kTries; ++i) {
    if (!q.try_get()) ++empty;
    if (!q.get_for(0ms)) ++empty_zero;
  }
  const std::int64_t streamed_during = s->done.load(std::memory_order_relaxed);
  s->stop.store(1, std::memory_order_relaxed);
  ASSERT_EQ(exit_code_of(streamer), 0);
  std::printf("%d try_gets and %d zero-timeout get_fors beside %lld streamed gets\n", kTries, kTries,
              static_cast<long long>(streamed_during));
  EXPECT_EQ(empty, 0) << "try_get found nothing in a queue that could not be empty";
  EXPECT_EQ(empty_zero, 0) << "get_for(0) found nothing in a queue that could not be empty";
  EXPECT_EQ(q.qsize(), static_cast<std::size_t>(filled - s->done.load() - (2 * kTries - empty - empty_zero)));
}

TEST(QueueNonBlocking, try_put_is_false_when_another_producer_sleeps_for_room) {
  const mproc_test::ScratchName<Queue<std::int64_t>> name("try-full");
  auto q = Queue<std::int64_t>::create(name.str(), 4096);
  while (q.try_put(0)) {}
  Flag asleep;
  mproc::Process blocked = start_child([&] {
    asleep.raise();
    q.put(7);  // sleeps: the queue is full
  });
  ASSERT_TRUE(asleep.wait_for(kPatience));
  ASSERT_TRUE(mproc_test::wait_for_sleeping_producer(name.str())) << "the producer never went to sleep";
  EXPECT_FALSE(q.try_put(1));
  EXPECT_FALSE(q.put_for(1, 0ms));
  ASSERT_TRUE(q.try_get().has_value());  // room: the sleeper's put goes in
  EXPECT_EQ(exit_code_of(blocked), 0);
}
