// redis::Lock (lease, fencing token, owner died, lost lease) and redis::Event, against a real
// redis-server, with real processes.
#include <gtest/gtest.h>
#include <signal.h>

#include <mutex>
#include <string>

#include "mproc/process.hpp"
#include "mproc/redis/event.hpp"
#include "mproc/redis/lock.hpp"
#include "redis_server.hpp"

namespace {

using mproc_test::RedisServer;
using namespace std::chrono_literals;
namespace mr = mproc::redis;

class RedisLock : public testing::Test {
 protected:
  RedisServer server;
};

// A resource that remembers the highest fence it has seen and refuses writes with a lower one:
// what a fenced store does (here a Redis key, checked and set in one script).
bool fenced_write(const RedisServer& s, const std::string& key, std::uint64_t fence) {
  const std::string script =
      "local seen = tonumber(redis.call('GET', KEYS[1]) or '0') "
      "if tonumber(ARGV[1]) < seen then return 0 end "
      "redis.call('SET', KEYS[1], ARGV[1]) return 1";
  return s.cmd({"EVAL", script, "1", key, std::to_string(fence)}) == "1";
}

TEST_F(RedisLock, every_acquisition_gets_a_larger_fence) {
  auto lock = mr::Lock::open(server.url("fence"));
  const auto a = lock.acquire();
  ASSERT_TRUE(a);
  EXPECT_FALSE(a.owner_died());
  lock.release();
  const auto b = lock.acquire();
  ASSERT_TRUE(b);
  EXPECT_GT(b.fence(), a.fence());
  EXPECT_EQ(lock.fence(), b.fence());
  lock.release();
  EXPECT_THROW(lock.release(), mproc::UsageError);
}

TEST_F(RedisLock, a_held_lock_excludes_another_process_until_released) {
  const std::string url = server.url("exclude");
  mproc_test::Flag held;
  mproc_test::Flag tried;
  // Started before the lock is held: a held Lock has a renewal thread, and a child forked from a
  // threaded parent may not start threads of its own (ThreadSanitizer refuses it).
  mproc::Process other([url, &held, &tried] {
    auto mine = mr::Lock::open(url);
    CHILD_CHECK(held.wait_for(mproc_test::kPatience));
    CHILD_CHECK(!mine.try_acquire());
    tried.raise();
    const auto got = mine.acquire_for(mproc_test::kPatience);  // woken by the release
    CHILD_CHECK(got && !got.owner_died());
    mine.release();
  });
  other.start();
  auto lock = mr::Lock::open(url);
  ASSERT_TRUE(lock.acquire());
  held.raise();
  ASSERT_TRUE(tried.wait_for(mproc_test::kPatience));
  lock.release();
  EXPECT_EQ(mproc_test::exit_code_of(other), 0);
}

TEST_F(RedisLock, std_scoped_lock_works_and_the_lease_is_renewed_while_held) {
  mr::LockOptions o;
  o.lease = 150ms;
  auto lock = mr::Lock::open(server.url("renew"), o);
  {
    const std::scoped_lock hold(lock);
    // Longer than the lease: only renewal keeps it. Another object must not get it.
    auto other = mr::Lock::open(server.url("renew"), o);
    const auto got = other.acquire_for(400ms);
    EXPECT_FALSE(got);
    EXPECT_FALSE(lock.lost());
  }
  EXPECT_FALSE(lock.held());
}

TEST_F(RedisLock, a_holder_that_dies_is_reported_as_owner_died_until_marked_consistent) {
  const std::string url = server.url("died");
  mproc::Process holder([url] {
    mr::LockOptions o;
    o.lease = 100ms;
    auto mine = mr::Lock::open(url, o);
    CHILD_CHECK(mine.acquire());
    ::raise(SIGKILL);  // dies holding it
  });
  holder.start();
  EXPECT_EQ(mproc_test::exit_code_of(holder), -SIGKILL);
  auto lock = mr::Lock::open(url);
  const auto got = lock.acquire_for(mproc_test::kPatience);  // after the dead holder's lease
  ASSERT_TRUE(got);
  EXPECT_TRUE(got.owner_died());
  lock.release();
  EXPECT_THROW(lock.lock(), mproc::OwnerDied);  // still inconsistent: nobody repaired it
  const auto again = lock.acquire();
  ASSERT_TRUE(again.owner_died());
  lock.mark_consistent();
  lock.release();
  const auto clean = lock.acquire();
  EXPECT_FALSE(clean.owner_died());
  lock.release();
}

TEST_F(RedisLock, a_holder_paused_past_its_lease_is_rejected_by_the_fence_and_told_at_release) {
  const std::string url = server.url("paused");
  const std::string resource = "resource-" + mproc_test::unique_name("paused");
  mproc_test::Flag acquired;
  mproc_test::Flag go;
  mproc::Process holder([&, url] {
    mr::LockOptions o;
    o.lease = 200ms;
    auto mine = mr::Lock::open(url, o);
    const auto got = mine.acquire();
    CHILD_CHECK(got);
    acquired.send(static_cast<int>(got.fence()));
    CHILD_CHECK(go.wait_for(mproc_test::kPatience));  // resumed after SIGSTOP/SIGCONT
    CHILD_CHECK(!fenced_write(server, resource, got.fence()));
    bool told = false;
    try {
      mine.release();
    } catch (const mr::LeaseLost&) {
      told = true;
    }
    CHILD_CHECK(told && mine.lost());
  });
  holder.start();
  int first_fence = 0;
  ASSERT_TRUE(acquired.receive(first_fence, mproc_test::kPatience));
  ASSERT_EQ(::kill(*holder.pid(), SIGSTOP), 0);  // a GC pause, a VM migration
  auto lock = mr::Lock::open(url);
  const auto got = lock.acquire_for(mproc_test::kPatience);
  ASSERT_TRUE(got);
  EXPECT_TRUE(got.owner_died());  // its lease ran out unreleased
  EXPECT_GT(got.fence(), static_cast<std::uint64_t>(first_fence));
  EXPECT_TRUE(fenced_write(server, resource, got.fence()));
  ASSERT_EQ(::kill(*holder.pid(), SIGCONT), 0);
  go.raise();
  EXPECT_EQ(mproc_test::exit_code_of(holder), 0);
  lock.mark_consistent();
  lock.release();
}

TEST_F(RedisLock, an_event_set_in_one_process_wakes_a_waiter_in_another) {
  const std::string url = server.url("event");
  auto ev = mr::Event::open(url);
  EXPECT_FALSE(ev.is_set());
  EXPECT_FALSE(ev.wait_for(20ms));
  mproc_test::Flag waiting;
  mproc::Process waiter([url, &waiting] {
    auto mine = mr::Event::open(url);
    waiting.raise();
    CHILD_CHECK(mine.wait_for(mproc_test::kPatience));
  });
  waiter.start();
  ASSERT_TRUE(waiting.wait_for(mproc_test::kPatience));
  ev.set();
  EXPECT_EQ(mproc_test::exit_code_of(waiter), 0);
  EXPECT_TRUE(ev.is_set());
  ev.wait();  // set: returns at once
  ev.clear();
  EXPECT_FALSE(ev.is_set());
}

}  // namespace
