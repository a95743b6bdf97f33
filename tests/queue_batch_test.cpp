// Queue::put_many / get_many: one lock and one commit per batch (src/ring/ring.cpp, put_impl and
// get_impl), across real processes; and what a batch does when a message in it fails.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cerrno>
#include <numeric>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::JoinableQueue;
using mproc::Process;
using mproc::Queue;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::Shared;
using mproc_test::start_child;

long allocations_so_far();  // tests/support/alloc_counter.cpp

namespace {

struct Item {  // trivially copyable
  int producer;
  int seq;
  std::array<char, 56> pad;
};

// Takes exactly `n` messages into out[0..n) by get_many calls, each waiting at most kPatience.
::testing::AssertionResult take_exactly(Queue<int>& q, std::span<int> out, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    const std::size_t k = q.get_many_for(out.subspan(got, n - got), kPatience);
    if (k == 0) return ::testing::AssertionFailure() << "timed out after " << got << " of " << n;
    got += k;
  }
  return ::testing::AssertionSuccess();
}

std::vector<int> iota_vector(int n, int from = 0) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

}  // namespace

TEST(QueueBatch, put_many_and_get_many_keep_order_and_mix_with_single_calls) {
  Queue<int> q;
  q.put_many(iota_vector(100));
  q.put(100);
  EXPECT_EQ(q.qsize(), 101u);
  std::vector<int> out(40, -1);
  EXPECT_EQ(q.get_many(out), 40u);
  EXPECT_EQ(out, iota_vector(40));
  EXPECT_EQ(q.get(), 40);
  EXPECT_EQ(q.get_many(out), 40u);
  EXPECT_EQ(out, iota_vector(40, 41));
  // Fewer waiting than asked for: takes what is there and does not wait for more.
  EXPECT_EQ(q.get_many(out), 20u);
  EXPECT_EQ(std::vector<int>(out.begin(), out.begin() + 20), iota_vector(20, 81));
  EXPECT_EQ(q.try_get_many(out), 0u);
  EXPECT_TRUE(q.empty());
  q.put_many(std::vector<int>{});  // an empty batch is nothing
  EXPECT_TRUE(q.empty());
}

TEST(QueueBatch, structured_messages_of_any_size_travel_in_batches) {
  Queue<std::string> q(64 * 1024);
  std::vector<std::string> in;
  for (int i = 0; i < 300; ++i)
    in.push_back(std::to_string(i) + std::string(static_cast<std::size_t>(i * 7 % 700), 'x'));
  Process p = start_child([&] { q.put_many(in); });
  std::vector<std::string> got, out(32);
  while (got.size() < in.size()) {
    const std::size_t n = q.get_many_for(out, kPatience);
    ASSERT_GT(n, 0u) << "timed out after " << got.size() << " messages";
    got.insert(got.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
  }
  EXPECT_EQ(got, in);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(QueueBatch, a_batch_larger_than_the_queue_streams_through_it) {
  Queue<Item> q(4096);  // holds 56 records of 72 bytes: the batch wraps it hundreds of times
  constexpr int kCount = 20'000;
  Process consumer = start_child([&] {
    std::vector<Item> out(50);
    int next = 0;
    while (next < kCount) {
      const std::size_t n = q.get_many_for(out, kPatience);
      CHILD_CHECK(n > 0);
      for (std::size_t i = 0; i < n; ++i) CHILD_CHECK(out[i].seq == next++);
    }
  });
  std::vector<Item> batch(kCount);
  for (int i = 0; i < kCount; ++i) batch[static_cast<std::size_t>(i)] = Item{0, i, {}};
  q.put_many(batch);
  EXPECT_EQ(exit_code_of(consumer), 0);
  EXPECT_TRUE(q.empty());
}

// Several producers put batches while several consumers take batches: every message arrives
// exactly once, each producer's in order, and each batch lies in the queue as one run.
TEST(QueueBatch, many_producers_and_consumers_deliver_every_message_exactly_once) {
  constexpr int kProducers = 3, kConsumers = 3, kBatches = 400, kBatch = 37;
  struct Tally {
    std::atomic<int> seen[kProducers][kBatches * kBatch];
    std::atomic<int> broken_runs;
  };
  Shared<Tally> tally;
  Queue<Item> q(16 * 1024);
  std::vector<Process> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.push_back(start_child([&] {
      std::vector<Item> out(kBatch * 2 + 3);
      int last[kProducers] = {-1, -1, -1};
      for (;;) {
        const std::size_t n = q.get_many(out);
        if (n == 0) break;  // closed and drained
        for (std::size_t i = 0; i < n; ++i) {
          const Item& m = out[i];
          CHILD_CHECK(m.producer >= 0 && m.producer < kProducers);
          CHILD_CHECK(m.seq > last[m.producer]);  // in order per producer, per consumer
          last[m.producer] = m.seq;
          tally->seen[m.producer][m.seq].fetch_add(1);
          // Within one get_many, a message that is not the first of its batch follows the one
          // before it in that batch (a batch is one run: no other producer's message between).
          if (i > 0 && m.seq % kBatch != 0 &&
              (out[i - 1].producer != m.producer || out[i - 1].seq != m.seq - 1)) {
            tally->broken_runs.fetch_add(1);
          }
        }
      }
    }));
  }
  std::vector<Process> producers;
  for (int pr = 0; pr < kProducers; ++pr) {
    producers.push_back(start_child([&, pr] {
      std::vector<Item> batch(kBatch);
      for (int b = 0; b < kBatches; ++b) {
        for (int i = 0; i < kBatch; ++i) batch[static_cast<std::size_t>(i)] = Item{pr, b * kBatch + i, {}};
        q.put_many(batch);
      }
    }));
  }
  for (auto& p : producers) EXPECT_EQ(exit_code_of(p), 0);
  q.close();
  for (auto& p : consumers) EXPECT_EQ(exit_code_of(p), 0);
  int missing = 0, duplicated = 0;
  for (auto& row : tally->seen) {
    for (auto& s : row) {
      missing += s.load() == 0;
      duplicated += s.load() > 1;
    }
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(duplicated, 0);
  EXPECT_EQ(tally->broken_runs.load(), 0);
}

TEST(QueueBatch, get_many_blocks_until_a_message_arrives_then_takes_what_waits) {
  Queue<int> q;
  Flag go;
  Process p = start_child([&] {
    CHILD_CHECK(go.wait_for(kPatience));
    q.put_many(iota_vector(5));
  });
  std::vector<int> out(10);
  EXPECT_EQ(q.get_many_for(out, 50ms), 0u);  // nothing yet: times out
  go.raise();
  ASSERT_TRUE(take_exactly(q, out, 5));
  EXPECT_EQ(std::vector<int>(out.begin(), out.begin() + 5), iota_vector(5));
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(QueueBatch, try_put_many_puts_what_fits_and_put_many_for_times_out_with_a_count) {
  Queue<int> q(4096, 10);  // at most ten messages
  EXPECT_EQ(q.try_put_many(iota_vector(4)), 4u);
  EXPECT_EQ(q.try_put_many(iota_vector(10, 4)), 6u);  // only 6 fit
  EXPECT_TRUE(q.full());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(q.put_many_for(iota_vector(3, 100), 100ms), 0u);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
  std::vector<int> out(3);
  EXPECT_EQ(q.get_many(out), 3u);
  EXPECT_EQ(q.put_many_for(iota_vector(5, 10), 50ms), 3u);  // three fit, then it times out
  std::vector<int> all(20);
  EXPECT_EQ(q.try_get_many(all), 10u);
  EXPECT_EQ(std::vector<int>(all.begin(), all.begin() + 10),
            (std::vector<int>{3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
}

TEST(QueueBatch, close_during_a_blocked_put_many_says_how_many_were_put_and_keeps_them) {
  Queue<int> q(4096, 4);
  Flag started;
  Process p = start_child([&] {
    started.raise();
    try {
      q.put_many(iota_vector(10));  // 4 fit, then it blocks until the close
    } catch (const mproc::Closed& e) {
      const std::string what = e.what();
      CHILD_CHECK(what.find("message 5 of 10") != std::string::npos);
      CHILD_CHECK(what.find("the 4 before it were put") != std::string::npos);
      std::exit(0);
    }
    std::exit(1);
  });
  ASSERT_TRUE(started.wait_for(kPatience));
  // Wait until the four that fit are visible (put_many commits before it waits for room).
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (q.qsize() < 4 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(q.qsize(), 4u);
  q.close();
  EXPECT_EQ(exit_code_of(p), 0);
  std::vector<int> out(10);
  EXPECT_EQ(q.get_many(out), 4u);
  EXPECT_EQ(std::vector<int>(out.begin(), out.begin() + 4), iota_vector(4));
  EXPECT_EQ(q.get_many(out), 0u);  // closed and drained
}

TEST(QueueBatch, a_message_too_large_in_a_batch_fails_after_putting_the_ones_before) {
  Queue<std::string> q(4096);
  const std::vector<std::string> batch = {"a", "b", std::string(5000, 'x'), "d"};
  try {
    q.put_many(batch);
    FAIL() << "put_many of a message larger than the queue succeeded";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EMSGSIZE);
    EXPECT_NE(std::string(e.what()).find("message 3 of 4"), std::string::npos) << e.what();
  }
  std::vector<std::string> out(4);
  EXPECT_EQ(q.try_get_many(out), 2u);
  EXPECT_EQ(out[0], "a");
  EXPECT_EQ(out[1], "b");
}

TEST(QueueBatch, get_many_into_an_empty_span_is_a_usage_error) {
  Queue<int> q;
  q.put(1);
  std::vector<int> none;
  EXPECT_THROW((void)q.get_many(none), mproc::UsageError);
  EXPECT_EQ(q.qsize(), 1u);
}

TEST(QueueBatch, put_many_counts_tasks_in_a_joinable_queue) {
  JoinableQueue<int> q;
  q.put_many(iota_vector(50));
  EXPECT_EQ(q.unfinished_tasks(), 50u);
  Process worker = start_child([&] {
    std::vector<int> out(8);
    int total = 0;
    while (total < 50) {
      const std::size_t n = q.get_many_for(out, kPatience);
      CHILD_CHECK(n > 0);
      for (std::size_t i = 0; i < n; ++i) q.task_done();
      total += static_cast<int>(n);
    }
  });
  EXPECT_TRUE(q.join(kPatience));
  EXPECT_EQ(q.unfinished_tasks(), 0u);
  EXPECT_EQ(exit_code_of(worker), 0);
}

TEST(QueueBatch, batches_of_trivial_types_do_not_allocate) {
  Queue<Item> q;
  std::vector<Item> in(64), out(64);
  q.put_many(in);  // warm-up
  (void)q.get_many(out);
  const long before = allocations_so_far();
  for (int round = 0; round < 200; ++round) {
    for (int i = 0; i < 64; ++i) in[static_cast<std::size_t>(i)].seq = round * 64 + i;
    q.put_many(in);
    ASSERT_EQ(q.get_many(out), 64u);
    ASSERT_EQ(out[63].seq, round * 64 + 63);
  }
  EXPECT_EQ(allocations_so_far() - before, 0) << "allocations on the put_many/get_many path";
}

// A consumer SIGKILLed while asleep in get_many, holding the consumer lock, does not wedge the
// queue: the next consumer repairs the side and takes every message.
TEST(QueueBatch, a_consumer_killed_while_blocked_in_get_many_does_not_wedge_the_queue) {
  const mproc_test::ScratchName<Queue<int>> name("batch");
  Queue<int> q = Queue<int>::create(name.str());
  Process victim = start_child([&] {
    std::vector<int> out(16);
    (void)q.get_many(out);  // the queue is empty: sleeps holding the consumer lock
    std::_Exit(3);
  });
  ASSERT_TRUE(mproc_test::wait_for_sleeping_consumer(name.str())) << "the consumer never slept in get_many";
  victim.kill();
  EXPECT_EQ(exit_code_of(victim), -SIGKILL);
  q.put_many(iota_vector(20));
  std::vector<int> out(32);
  ASSERT_TRUE(take_exactly(q, out, 20));
  EXPECT_EQ(std::vector<int>(out.begin(), out.begin() + 20), iota_vector(20));
  EXPECT_EQ(q.stats().abandoned_gets, 1u);
}
