// redis::Queue and redis::JoinableQueue against a real redis-server: bounds with many
// producers, batches, close, joins, reclaiming a SIGKILLed consumer's messages, dead letters.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/redis/queue.hpp"
#include "redis_server.hpp"

namespace {

using mproc_test::RedisServer;
using namespace std::chrono_literals;
namespace mr = mproc::redis;

class RedisQueue : public testing::Test {
 protected:
  RedisServer server;
};

TEST_F(RedisQueue, put_then_get_round_trips_raw_contiguous_and_structured_values) {
  auto ints = mr::Queue<int>::create(server.url("ints"));
  auto strings = mr::Queue<std::string>::create(server.url("strings"));
  auto maps = mr::Queue<std::map<std::string, int>>::create(server.url("maps"));
  ints.put(42);
  strings.put(std::string("hello\0world", 11));
  maps.put({{"a", 1}, {"b", 2}});
  EXPECT_EQ(ints.get(), 42);
  EXPECT_EQ(strings.get(), std::string("hello\0world", 11));
  EXPECT_EQ(maps.get(), (std::map<std::string, int>{{"a", 1}, {"b", 2}}));
}

TEST_F(RedisQueue, try_put_on_a_full_bounded_queue_fails_until_a_get_makes_room) {
  auto q = mr::Queue<int>::create(server.url("bounded"), {.max_messages = 2});
  EXPECT_TRUE(q.try_put(1));
  EXPECT_TRUE(q.try_put(2));
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.try_put(3));
  EXPECT_FALSE(q.put_for(3, 20ms));
  EXPECT_EQ(q.get(), 1);
  EXPECT_TRUE(q.try_put(3));
  EXPECT_EQ(q.qsize(), 2u);
}

TEST_F(RedisQueue, the_bound_holds_with_many_producer_processes_and_every_message_arrives_once) {
  constexpr int kProducers = 4;
  constexpr int kEach = 150;
  constexpr std::size_t kMax = 5;
  const std::string url = server.url("many");
  auto q = mr::Queue<int>::create(url, {.max_messages = kMax});
  std::vector<mproc::Process> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([url, p] {
      auto mine = mr::Queue<int>::open(url);
      for (int i = 0; i < kEach; ++i) mine.put(p * 1000 + i);
    });
    producers.back().start();
  }
  std::set<int> seen;
  std::vector<int> last(kProducers, -1);
  for (int n = 0; n < kProducers * kEach; ++n) {
    const auto v = q.get_for(mproc_test::kPatience);
    ASSERT_TRUE(v.has_value()) << "after " << n << " messages";
    EXPECT_TRUE(seen.insert(*v).second) << *v << " twice";
    const auto who = static_cast<std::size_t>(*v / 1000);
    EXPECT_GT(*v % 1000, last[who]) << "a producer's order";
    last[who] = *v % 1000;
    EXPECT_LE(q.qsize(), kMax);
  }
  for (auto& p : producers) EXPECT_EQ(mproc_test::exit_code_of(p), 0);
  EXPECT_EQ(q.qsize(), 0u);
}

TEST_F(RedisQueue, put_many_and_get_many_move_whole_batches_in_order) {
  auto q = mr::Queue<std::string>::create(server.url("batch"));
  std::vector<std::string> in;
  for (int i = 0; i < 600; ++i) in.push_back("m" + std::to_string(i));
  q.put_many(in);
  EXPECT_EQ(q.qsize(), 600u);
  std::vector<std::string> out(64);
  std::vector<std::string> all;
  while (all.size() < in.size()) {
    const std::size_t n = q.get_many_for(out, mproc_test::kPatience);
    ASSERT_GT(n, 0u);
    all.insert(all.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
  }
  EXPECT_EQ(all, in);
  EXPECT_EQ(q.try_get_many(out), 0u);
}

TEST_F(RedisQueue, put_many_into_a_bounded_queue_puts_what_fits_and_reports_how_many) {
  auto q = mr::Queue<int>::create(server.url("bounded-batch"), {.max_messages = 3});
  const std::vector<int> in = {1, 2, 3, 4, 5};
  EXPECT_EQ(q.try_put_many(in), 3u);
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.try_put_many(std::span<const int>(in).subspan(3)), 1u);
}

TEST_F(RedisQueue, a_blocked_put_resumes_when_a_consumer_in_another_process_makes_room) {
  const std::string url = server.url("room");
  auto q = mr::Queue<int>::create(url, {.max_messages = 1});
  q.put(0);
  mproc::Process producer([url] {
    auto mine = mr::Queue<int>::open(url);
    for (int i = 1; i <= 20; ++i) mine.put(i);  // blocks on each: the queue holds one
  });
  producer.start();
  for (int i = 0; i <= 20; ++i) EXPECT_EQ(q.get_for(mproc_test::kPatience), i);
  EXPECT_EQ(mproc_test::exit_code_of(producer), 0);
}

// A get is a bare XREADGROUP, no script: the putter must be woken by the flag it raised, not by
// the end of its wait slice (made longer here than the test's patience, so only a wake-up can
// let it go on). Several putters, each seen blocked before the get that makes room for one.
TEST_F(RedisQueue, putters_blocked_on_a_full_queue_are_woken_by_gets_not_by_their_wait_slice) {
  const std::string url = server.url("wake");
  mr::QueueOptions slow_slice{.max_messages = 1};
  slow_slice.connection.wait_slice =
      std::chrono::duration_cast<std::chrono::milliseconds>(mproc_test::kPatience * 3);
  auto q = mr::Queue<int>::create(url, slow_slice);
  q.put(0);
  constexpr int kPutters = 3;
  std::vector<mproc::Process> putters;
  for (int p = 1; p <= kPutters; ++p) {
    putters.emplace_back([url, slow_slice, p] {
      auto mine = mr::Queue<int>::open(url, slow_slice);
      CHILD_CHECK(mine.put_for(p, mproc_test::kPatience));  // false: no get woke it
    });
    putters.back().start();
  }
  std::set<int> got;
  for (int i = 0; i <= kPutters; ++i) {
    if (i < kPutters) {
      ASSERT_TRUE(server.wait_for_blocked_client()) << "a putter waiting for room";
    }
    const auto v = q.get_for(mproc_test::kPatience);
    ASSERT_TRUE(v.has_value()) << "after " << i << " messages";
    got.insert(*v);
  }
  EXPECT_EQ(got, (std::set<int>{0, 1, 2, 3}));
  for (auto& p : putters) EXPECT_EQ(mproc_test::exit_code_of(p), 0);
}

TEST_F(RedisQueue, delivered_messages_are_trimmed_from_the_stream_as_consumers_go_on) {
  auto q = mr::Queue<int>::create(server.url("trim"));
  const std::string key = "mproc:{" + mproc_test::unique_name("trim") + "}:q";
  constexpr int kRounds = 2000;
  for (int i = 0; i < kRounds; ++i) {
    q.put(i);
    ASSERT_EQ(q.get(), i);
  }
  // Trimmed every 64 gets, by whole stream nodes (at most 100 entries each): far below 2000.
  EXPECT_LE(std::stoi(server.cmd({"XLEN", key})), 64 + 2 * 100);
  EXPECT_EQ(q.qsize(), 0u);
  q.put(7);
  EXPECT_EQ(q.qsize(), 1u);
}

// Redis 7.0 miscounts a group's entries-read after an XDEL of an undelivered entry: while that
// lasts, the bound and qsize may be off by the deleted entries; a get that finds the queue
// empty repairs the count. Never a get that spins or a lost message.
TEST_F(RedisQueue, a_foreign_xdel_of_an_unread_message_loses_nothing_and_the_count_is_repaired_when_drained) {
  auto q = mr::Queue<int>::create(server.url("xdel"), {.max_messages = 3});
  const std::string key = "mproc:{" + mproc_test::unique_name("xdel") + "}:q";
  for (int i = 0; i < 3; ++i) q.put(i);
  EXPECT_EQ(q.get(), 0);
  const std::string middle =
      server.cmd({"EVAL", "return redis.call('XRANGE', KEYS[1], '-', '+')[2][1]", "1", key});
  ASSERT_EQ(server.cmd({"XDEL", key, middle}), "1");
  EXPECT_EQ(q.qsize(), 1u);  // Redis gives up on the lag: the entries are counted
  EXPECT_TRUE(q.try_put(3));
  EXPECT_TRUE(q.try_put(30));
  EXPECT_FALSE(q.try_put(31)) << "the bound holds while the entries are counted (at most max of them)";
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.get(), 3);
  EXPECT_EQ(q.get(), 30);
  EXPECT_FALSE(q.get_for(10ms).has_value());  // empty: returns, and repairs the count
  EXPECT_EQ(q.qsize(), 0u);
  for (int i = 4; i < 7; ++i) EXPECT_TRUE(q.try_put(i)) << "the whole bound is usable again";
  EXPECT_FALSE(q.try_put(7));
  for (int i = 4; i < 7; ++i) EXPECT_EQ(q.get(), i);
}

TEST_F(RedisQueue, a_queue_made_by_an_older_layout_is_refused_with_a_clear_error) {
  const std::string name = mproc_test::unique_name("old");
  const std::string m = "mproc:{" + name + "}:m";
  (void)server.cmd({"XGROUP", "CREATE", "mproc:{" + name + "}:q", "mproc", "0", "MKSTREAM"});
  (void)server.cmd({"HSET", m, "kind", "queue", "tag", std::to_string(mproc::detail::type_tag<int>()), "type",
                    "int", "max", "0", "unread", "0", "closed", "0"});
  try {
    (void)mr::Queue<int>::open(server.url("old"));
    ADD_FAILURE() << "opened a queue of layout 1";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EINVAL);
    EXPECT_NE(std::string(e.what()).find("layout 1"), std::string::npos) << e.what();
  }
}

TEST_F(RedisQueue, close_wakes_a_blocked_get_in_another_process_and_put_afterwards_throws_closed) {
  const std::string url = server.url("close");
  auto q = mr::Queue<int>::create(url);
  mproc_test::Flag waiting;
  mproc::Process consumer([url, &waiting] {
    auto mine = mr::Queue<int>::open(url);
    CHILD_CHECK(mine.get() == 7);
    waiting.raise();
    CHILD_CHECK(!mine.get().has_value());  // blocks until close()
  });
  consumer.start();
  q.put(7);
  ASSERT_TRUE(waiting.wait_for(mproc_test::kPatience));
  q.close();
  EXPECT_EQ(mproc_test::exit_code_of(consumer), 0);
  EXPECT_TRUE(q.closed());
  EXPECT_THROW(q.put(8), mproc::Closed);
}

TEST_F(RedisQueue, get_for_on_an_empty_queue_times_out_with_nothing) {
  auto q = mr::Queue<int>::create(server.url("empty"));
  EXPECT_FALSE(q.get_for(30ms).has_value());
  EXPECT_FALSE(q.try_get().has_value());
}

TEST_F(RedisQueue, create_open_and_open_or_create_check_existence_kind_and_type) {
  const std::string url = server.url("typed");
  auto q = mr::Queue<int>::create(url);
  auto expect_errno = [](auto&& f, int e) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const mproc::Error& ex) {
      EXPECT_EQ(ex.code().value(), e) << ex.what();
    }
  };
  expect_errno([&] { (void)mr::Queue<int>::create(url); }, EEXIST);
  expect_errno([&] { (void)mr::Queue<int>::open(server.url("nothing")); }, ENOENT);
  expect_errno([&] { (void)mr::Queue<std::string>::open(url); }, EINVAL);
  expect_errno([&] { (void)mr::JoinableQueue<int>::open(url); }, EINVAL);
  auto again = mr::Queue<int>::open_or_create(url);
  q.put(5);
  EXPECT_EQ(again.get(), 5);
}

TEST_F(RedisQueue, a_child_that_inherits_an_open_queue_reconnects_on_its_own) {
  auto q = mr::Queue<int>::create(server.url("fork"));
  q.put(1);
  mproc::Process child([&q] {
    CHILD_CHECK(q.get() == 1);
    q.put(2);
  });
  child.start();
  EXPECT_EQ(mproc_test::exit_code_of(child), 0);
  EXPECT_EQ(q.get(), 2);
}

// ---- JoinableQueue ----------------------------------------------------------------------------

TEST_F(RedisQueue, join_waits_for_task_done_of_every_message_taken) {
  auto q = mr::JoinableQueue<int>::create(server.url("join"));
  q.put(1);
  q.put(2);
  EXPECT_FALSE(q.join_for(10ms));
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.unfinished_tasks(), 2u);
  q.task_done();
  EXPECT_FALSE(q.join_for(10ms));
  q.task_done();
  EXPECT_TRUE(q.join_for(mproc_test::kPatience));
  EXPECT_THROW(q.task_done(), mproc::UsageError);
}

TEST_F(RedisQueue, a_sigkilled_consumers_message_is_reclaimed_by_another_consumer) {
  const std::string url = server.url("reclaim");
  const mr::QueueOptions fast{.visibility_timeout = 200ms};
  auto q = mr::JoinableQueue<int>::create(url, fast);
  q.put(11);
  q.put(12);
  mproc_test::Flag took;
  mproc::Process consumer([url, fast, &took] {
    auto mine = mr::JoinableQueue<int>::open(url, fast);
    CHILD_CHECK(mine.get() == 11);
    took.raise();
    took.block_forever();  // never task_done: killed holding the message
  });
  consumer.start();
  ASSERT_TRUE(took.wait_for(mproc_test::kPatience));
  consumer.kill();
  EXPECT_EQ(mproc_test::exit_code_of(consumer), -SIGKILL);
  std::multiset<int> got;
  for (int i = 0; i < 2; ++i) {
    const auto v = q.get_for(mproc_test::kPatience);
    ASSERT_TRUE(v.has_value());
    got.insert(*v);
    q.task_done();
  }
  EXPECT_EQ(got, (std::multiset<int>{11, 12}));  // nothing lost; 11 delivered twice in all
  EXPECT_TRUE(q.join_for(mproc_test::kPatience));
}

TEST_F(RedisQueue, a_message_delivered_more_than_max_deliveries_goes_to_the_dead_letter_stream) {
  const mr::QueueOptions poison{.visibility_timeout = 20ms, .max_deliveries = 2};
  auto q = mr::JoinableQueue<int>::create(server.url("poison"), poison);
  q.put(13);
  int deliveries = 0;
  while (q.dead_letters() == 0) {  // the consumer never finishes it: it comes back, then dies
    if (q.get_for(200ms).has_value()) ++deliveries;  // a slice: it wakes to reclaim anyway
    ASSERT_LE(deliveries, 2);
  }
  EXPECT_EQ(deliveries, 2);
  EXPECT_EQ(server.cmd({"XLEN", "mproc:{" + mproc_test::unique_name("poison") + "}:dead"}), "1");
  EXPECT_TRUE(q.join_for(mproc_test::kPatience));  // a dead letter is no longer unfinished
}

}  // namespace
