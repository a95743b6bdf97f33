// Faults against a real redis-server: the server SIGKILLed and restarted (with appendfsync
// always: nothing whose put returned is lost; without persistence: clear errors, no hang),
// connections dropped under blocked calls, and bad input (a key of the wrong Redis type, a
// stream entry that is not mproc's, a message of another type).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/redis/queue.hpp"
#include "redis_server.hpp"

namespace {

using mproc_test::Persistence;
using mproc_test::RedisServer;
using namespace std::chrono_literals;
namespace mr = mproc::redis;

std::string key(const std::string& stem, const char* part) {
  return "mproc:{" + mproc_test::unique_name(stem) + "}:" + part;
}

int errno_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mproc::Error& e) {
    return e.code().value();
  }
  return 0;
}

TEST(RedisFault, with_appendfsync_always_nothing_whose_put_returned_is_lost_across_a_server_kill) {
  RedisServer server(Persistence::aof_always);
  const std::string url = server.url("aof");
  {
    auto q = mr::Queue<int>::create(url);
    std::vector<int> batch(100);
    for (int i = 0; i < 100; ++i) batch[static_cast<std::size_t>(i)] = 100 + i;
    for (int i = 0; i < 100; ++i) q.put(i);
    q.put_many(batch);
  }
  server.kill();
  server.start();
  auto q = mr::Queue<int>::open(url);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(q.get_for(mproc_test::kPatience), i);
  EXPECT_FALSE(q.try_get().has_value());
}

TEST(RedisFault, a_get_blocked_across_a_server_restart_reconnects_and_resumes) {
  RedisServer server(Persistence::aof_always);
  const std::string url = server.url("resume");
  auto q = mr::Queue<int>::create(url);
  mproc_test::Flag ready;
  mproc::Process consumer([url, &ready] {
    auto mine = mr::Queue<int>::open(url);
    CHILD_CHECK(mine.qsize() == 0);  // connected
    ready.raise();
    CHILD_CHECK(mine.get() == 42);  // blocked while the server dies and comes back
  });
  consumer.start();
  ASSERT_TRUE(ready.wait_for(mproc_test::kPatience));
  // Killed while the get waits (a get whose script is in flight reports ConnectionLost instead).
  ASSERT_TRUE(server.wait_for_blocked_client());
  server.kill();
  server.start();
  q.put(42);  // this object reconnects too
  EXPECT_EQ(mproc_test::exit_code_of(consumer), 0);
}

TEST(RedisFault, without_persistence_a_restart_loses_the_queue_and_calls_fail_clearly_without_hanging) {
  RedisServer server(Persistence::none);
  const std::string url = server.url("volatile");
  auto q = mr::Queue<int>::create(url);
  q.put(1);
  server.kill();
  server.start();
  EXPECT_EQ(errno_of([&] { (void)q.get(); }), ENOENT);
  EXPECT_EQ(errno_of([&] { q.put(2); }), ENOENT);
  EXPECT_EQ(errno_of([&] { (void)q.qsize(); }), ENOENT);
  auto again = mr::Queue<int>::open_or_create(url);  // made anew, empty: the loss is documented
  EXPECT_FALSE(again.try_get().has_value());
}

TEST(RedisFault, a_server_that_stays_down_is_an_error_after_the_reconnect_timeout_not_a_hang) {
  RedisServer server(Persistence::none);
  mr::QueueOptions o;
  o.connection.reconnect_timeout = 200ms;
  auto q = mr::Queue<int>::create(server.url("down"), o);
  server.kill();
  EXPECT_EQ(errno_of([&] { (void)q.qsize(); }), ECONNREFUSED);
}

TEST(RedisFault, connections_killed_by_the_server_are_reopened_and_a_blocked_get_resumes) {
  RedisServer server;
  const std::string url = server.url("killed");
  auto q = mr::Queue<int>::create(url);
  q.put(1);
  mproc_test::Flag ready;
  mproc::Process consumer([url, &ready] {
    auto mine = mr::Queue<int>::open(url);
    CHILD_CHECK(mine.get() == 1);
    ready.raise();
    CHILD_CHECK(mine.get() == 2);  // blocked while its connection is killed
  });
  consumer.start();
  ASSERT_TRUE(ready.wait_for(mproc_test::kPatience));
  ASSERT_TRUE(server.wait_for_blocked_client());
  // Kills every client but the one asking (ours is idle: its next command reconnects first).
  EXPECT_NE(server.cmd({"CLIENT", "KILL", "TYPE", "normal"}), "0");
  q.put(2);
  EXPECT_EQ(mproc_test::exit_code_of(consumer), 0);
}

TEST(RedisFault, a_key_of_the_wrong_redis_type_is_a_clear_error_and_writes_nothing) {
  RedisServer server;
  (void)server.cmd({"SET", key("wrongtype", "q"), "not a stream"});
  EXPECT_EQ(errno_of([&] { (void)mr::Queue<int>::create(server.url("wrongtype")); }), EPROTOTYPE);
  EXPECT_EQ(server.cmd({"GET", key("wrongtype", "q")}), "not a stream");
  auto q = mr::Queue<int>::create(server.url("replaced"));
  (void)server.cmd({"DEL", key("replaced", "q")});
  (void)server.cmd({"SET", key("replaced", "q"), "in the way"});
  EXPECT_EQ(errno_of([&] { q.put(1); }), EPROTOTYPE);
}

TEST(RedisFault, a_malformed_stream_entry_is_dead_lettered_and_reported_and_nothing_else_is_lost) {
  RedisServer server;
  auto q = mr::Queue<int>::create(server.url("malformed"));
  q.put(1);
  (void)server.cmd({"XADD", key("malformed", "q"), "*", "someone", "else"});
  q.put(2);
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(errno_of([&] { (void)q.get(); }), EBADMSG);
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.dead_letters(), 1u);
}

TEST(RedisFault, a_message_of_another_type_is_reported_as_the_shared_memory_queue_does_and_parked) {
  RedisServer server;
  const std::string url = server.url("mixed");
  auto ints = mr::Queue<int>::create(url);
  // A producer of another program that never opened the queue with its own type's check.
  const std::string tag = std::to_string(mproc::detail::type_tag<double>());
  const double d = 2.5;
  (void)server.cmd({"XADD", key("mixed", "q"), "*", "t", tag, "d",
                    std::string(reinterpret_cast<const char*>(&d), sizeof d)});
  ints.put(3);
  try {
    (void)ints.get();
    ADD_FAILURE() << "took a double as an int";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EBADMSG);
    EXPECT_NE(std::string(e.what()).find("dead-letter"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ints.get(), 3);
  EXPECT_EQ(ints.dead_letters(), 1u);
}

}  // namespace
