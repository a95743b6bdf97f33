// Addresses (redis://, unix://, credentials, db, TLS refused), AUTH, and TCP next to unix
// sockets, against a real redis-server.
#include <gtest/gtest.h>

#include <string>

#include "mproc/redis/address.hpp"
#include "mproc/redis/queue.hpp"
#include "redis_server.hpp"

namespace {

using mproc_test::Persistence;
using mproc_test::RedisServer;
namespace mr = mproc::redis;

TEST(RedisAddress, a_tcp_address_carries_user_password_host_port_db_and_name) {
  const auto a = mr::Address::parse("redis://alice:s3cret@10.0.0.5:6380/jobs?db=2");
  EXPECT_EQ(a.user, "alice");
  EXPECT_EQ(a.password, "s3cret");
  EXPECT_EQ(a.host, "10.0.0.5");
  EXPECT_EQ(a.port, 6380);
  EXPECT_EQ(a.db, 2);
  EXPECT_EQ(a.name, "jobs");
  EXPECT_EQ(a.str(), "redis://10.0.0.5:6380/jobs?db=2");  // never the password
  const auto b = mr::Address::parse("redis://:pw@host/q");
  EXPECT_EQ(b.password, "pw");
  EXPECT_TRUE(b.user.empty());
  EXPECT_EQ(b.port, 6379);
}

TEST(RedisAddress, a_unix_address_names_its_socket_and_takes_the_rest_from_the_query) {
  const auto a = mr::Address::parse("unix:///run/redis/redis.sock?name=jobs&password=pw&user=bob&db=1");
  EXPECT_EQ(a.unix_path, "/run/redis/redis.sock");
  EXPECT_EQ(a.name, "jobs");
  EXPECT_EQ(a.password, "pw");
  EXPECT_EQ(a.user, "bob");
  EXPECT_EQ(a.db, 1);
}

TEST(RedisAddress, malformed_addresses_and_tls_are_refused_with_the_reason) {
  auto why = [](const char* url) {
    try {
      (void)mr::Address::parse(url);
    } catch (const mproc::UsageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(why("rediss://host/q").find("TLS"), std::string::npos);
  EXPECT_NE(why("redis://host/").find("no object name"), std::string::npos);
  EXPECT_NE(why("redis://host:port/q").find("port"), std::string::npos);
  EXPECT_NE(why("unix://relative.sock?name=q").find("absolute"), std::string::npos);
  EXPECT_NE(why("http://host/q").find("starts with"), std::string::npos);
  EXPECT_NE(why("redis://host/a{b}").find("brace"), std::string::npos);
  EXPECT_TRUE(mr::is_address("redis://h/q"));
  EXPECT_FALSE(mr::is_address("jobs"));
}

TEST(RedisClient, a_password_protected_server_takes_the_password_from_the_address_and_refuses_a_wrong_one) {
  RedisServer server(Persistence::none, "pw-123");
  auto q = mr::Queue<int>::create(server.url("auth"));
  q.put(1);
  EXPECT_EQ(q.get(), 1);
  const std::string wrong = "unix://" + server.socket() + "?name=x&password=nope";
  try {
    (void)mr::Queue<int>::create(wrong);
    ADD_FAILURE() << "a wrong password was accepted";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EACCES) << e.what();
  }
}

TEST(RedisClient, tcp_and_unix_socket_addresses_reach_the_same_queue) {
  RedisServer server(Persistence::none, {}, /*tcp=*/true);
  auto over_tcp = mr::Queue<std::string>::create(server.tcp_url("both"));
  auto over_unix = mr::Queue<std::string>::open(server.url("both"));
  over_tcp.put("across");
  EXPECT_EQ(over_unix.get(), "across");
}

}  // namespace
