// redis::Value<T> against a real redis-server: the type check on open and on every read,
// compare_exchange's contract, and updates from several processes of which none is lost.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/redis/value.hpp"
#include "redis_server.hpp"

namespace {

using mproc_test::RedisServer;
namespace mr = mproc::redis;

struct Point {
  int x;
  double y;
};

class RedisValue : public testing::Test {
 protected:
  RedisServer server;
};

template <class F>
void expect_errno(F&& f, int code, const std::string& says = {}) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), code) << e.what();
    if (!says.empty()) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
}

TEST_F(RedisValue, set_then_get_round_trips_numbers_and_structs_between_objects) {
  auto a = mr::Value<long>::create(server.url("n"), 41);
  auto b = mr::Value<long>::open(server.url("n"));
  EXPECT_EQ(b.get(), 41);
  a.set(-7);
  EXPECT_EQ(b.get(), -7);
  auto p = mr::Value<Point>::create(server.url("p"), {3, 2.5});
  const Point got = mr::Value<Point>::open(server.url("p")).get();
  EXPECT_EQ(got.x, 3);
  EXPECT_EQ(got.y, 2.5);
}

TEST_F(RedisValue, create_open_and_open_or_create_check_existence_and_type) {
  const std::string url = server.url("typed");
  auto v = mr::Value<int>::create(url, 5);
  expect_errno([&] { (void)mr::Value<int>::create(url); }, EEXIST);
  expect_errno([&] { (void)mr::Value<int>::open(server.url("nothing")); }, ENOENT);
  expect_errno([&] { (void)mr::Value<double>::open(url); }, EINVAL,
               "its value is int; this program expects double");
  expect_errno([&] { (void)mr::Value<double>::open_or_create(url, 1.0); }, EINVAL, "expects double");
  EXPECT_EQ(mr::Value<int>::open_or_create(url, 99).get(), 5) << "initial is stored only on creation";
  EXPECT_EQ(mr::Value<int>::open_or_create(server.url("fresh"), 99).get(), 99);
}

TEST_F(RedisValue, a_value_recreated_as_another_type_under_an_open_object_is_refused_on_every_call) {
  const std::string url = server.url("swapped");
  auto v = mr::Value<int>::create(url, 1);
  mr::Value<int>::unlink(url);
  expect_errno([&] { (void)v.get(); }, ENOENT, "gone");
  expect_errno([&] { v.set(2); }, ENOENT);
  auto d = mr::Value<double>::create(url, 0.5);
  expect_errno([&] { (void)v.get(); }, EINVAL, "its value is double; this program expects int");
  expect_errno([&] { v.set(2); }, EINVAL, "expects int");
  int expected = 0;
  expect_errno([&] { (void)v.compare_exchange(expected, 3); }, EINVAL);
  EXPECT_EQ(d.get(), 0.5) << "nothing was written through the wrong type";
}

TEST_F(RedisValue, a_key_of_another_redis_type_is_a_clear_error) {
  const std::string name = mproc_test::unique_name("taken");
  (void)server.cmd({"SET", "mproc:{" + name + "}:val", "not a hash"});
  expect_errno([&] { (void)mr::Value<int>::open_or_create(server.url("taken")); }, EPROTOTYPE,
               "holds a Redis string");
}

TEST_F(RedisValue, compare_exchange_stores_only_over_the_expected_value_and_reports_the_current_one) {
  auto v = mr::Value<int>::create(server.url("cas"), 10);
  int expected = 11;
  EXPECT_FALSE(v.compare_exchange(expected, 20));
  EXPECT_EQ(expected, 10);
  EXPECT_EQ(v.get(), 10);
  EXPECT_TRUE(v.compare_exchange(expected, 20));
  EXPECT_EQ(v.get(), 20);
}

TEST_F(RedisValue, updates_from_many_processes_are_each_applied_once) {
  constexpr int kProcs = 4;
  constexpr int kEach = 150;
  const std::string url = server.url("counter");
  auto counter = mr::Value<long>::create(url, 0);
  auto sum = mr::Value<long>::create(server.url("sum"), 0);
  const std::string sum_url = server.url("sum");
  std::vector<mproc::Process> procs;
  for (int p = 0; p < kProcs; ++p) {
    procs.emplace_back([url, sum_url] {
      auto mine = mr::Value<long>::open(url);
      auto total = mr::Value<long>::open(sum_url);
      for (int i = 0; i < kEach; ++i) {
        mine.update([](long& n) { ++n; });
        (void)total.fetch_add(2);
      }
    });
    procs.back().start();
  }
  for (auto& p : procs) EXPECT_EQ(mproc_test::exit_code_of(p), 0);
  EXPECT_EQ(counter.get(), kProcs * kEach);
  EXPECT_EQ(sum.get(), 2L * kProcs * kEach);
}

TEST_F(RedisValue, fetch_add_and_update_return_what_they_saw) {
  auto v = mr::Value<unsigned>::create(server.url("ret"), 1);
  EXPECT_EQ(v.fetch_add(4), 1u);
  EXPECT_EQ(v.update([](unsigned& n) {
    n *= 2;
    return n;
  }),
            10u);
  EXPECT_EQ(v.get(), 10u);
}

}  // namespace
