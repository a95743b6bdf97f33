// Every spelling of every blocking call, old and new, compiles and means what it says
// (include/mproc/detail/deadline.hpp states the convention: op(), try_op(), op_for(duration),
// op_until(time point of any clock), and the Python-style op(duration) kept as an alias).
// Mostly a compile-time promise: the calls run with timeouts that are already over, so the test
// takes milliseconds. A spelling removed or made ambiguous fails the build, not a run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "mproc/clock.hpp"
#include "mproc/mproc.hpp"

namespace {

using namespace std::chrono_literals;
using SysClock = std::chrono::system_clock;

// The time points callers pass: mproc's clock, a coarser one of the same clock, another clock.
auto steady_past() {
  return mproc::Clock::now() - 1s;
}
auto steady_seconds() {
  return std::chrono::time_point_cast<std::chrono::seconds>(mproc::Clock::now());
}
auto system_past() {
  return SysClock::now() - 1s;
}

// _for takes durations only; _until anything; no spelling takes a bare number.
template <class L>
concept AcquireForTakesTimePoint = requires(L& l) {
  l.acquire_for(mproc::Clock::now());
};
template <class L>
concept AcquireTakesInt = requires(L& l) {
  l.acquire(0);
};
static_assert(!AcquireForTakesTimePoint<mproc::Lock>);
static_assert(!AcquireForTakesTimePoint<mproc::Semaphore>);
static_assert(!AcquireTakesInt<mproc::Lock>);
static_assert(!AcquireTakesInt<mproc::Semaphore>);
static_assert(std::is_same_v<mproc::Clock, std::chrono::steady_clock>);
static_assert(std::is_same_v<mproc::detail::Clock, mproc::Clock>);

TEST(TimeoutSpellings, Lock) {
  mproc::Lock lock;
  ASSERT_TRUE(lock.acquire());
  lock.release();
  ASSERT_TRUE(lock.acquire(0s));
  lock.release();
  ASSERT_TRUE(lock.acquire(std::chrono::milliseconds(5)));
  lock.release();
  ASSERT_TRUE(lock.acquire_for(5ms));
  lock.release();
  ASSERT_TRUE(lock.acquire_for(std::chrono::duration<double>(0.001)));
  lock.release();
  ASSERT_TRUE(lock.acquire_until(steady_past()));
  lock.release();
  ASSERT_TRUE(lock.acquire_until(steady_seconds()));
  lock.release();
  ASSERT_TRUE(lock.acquire_until(system_past()));
  lock.release();
  ASSERT_TRUE(lock.acquire_until(mproc::Clock::time_point::max()));
  lock.release();
  ASSERT_TRUE(lock.try_lock());
  lock.unlock();
  ASSERT_TRUE(lock.try_lock_for(1ms));
  lock.unlock();
  ASSERT_TRUE(lock.try_lock_until(system_past()));
  lock.unlock();
  ASSERT_TRUE(lock.try_lock_until(steady_past()));
  lock.unlock();
  { std::scoped_lock hold{lock}; }
  {
    std::unique_lock hold{lock, std::defer_lock};
    ASSERT_TRUE(hold.try_lock_for(1ms));
  }
  {
    std::unique_lock hold{lock, std::defer_lock};
    ASSERT_TRUE(hold.try_lock_until(SysClock::now() + 1ms));
  }
  mproc::RLock rlock;
  ASSERT_TRUE(rlock.acquire(1ms));
  ASSERT_TRUE(rlock.acquire_for(1ms));
  ASSERT_TRUE(rlock.acquire_until(steady_past()));
  rlock.release();
  rlock.release();
  rlock.release();
}

TEST(TimeoutSpellings, Semaphore) {
  mproc::Semaphore sem(0);
  EXPECT_FALSE(sem.acquire(0s));
  EXPECT_FALSE(sem.acquire(std::chrono::milliseconds(1)));
  EXPECT_FALSE(sem.acquire_for(1ms));
  EXPECT_FALSE(sem.acquire_until(steady_past()));
  EXPECT_FALSE(sem.acquire_until(steady_seconds() - 1s));
  EXPECT_FALSE(sem.acquire_until(system_past()));
  EXPECT_FALSE(sem.try_acquire());
  EXPECT_FALSE(sem.try_acquire_for(1ms));
  EXPECT_FALSE(sem.try_acquire_until(steady_past()));
  EXPECT_FALSE(sem.try_acquire_until(system_past()));
  sem.release();
  EXPECT_TRUE(sem.acquire());
  mproc::BoundedSemaphore bounded(1);
  EXPECT_TRUE(bounded.acquire_for(0s));
  bounded.release();
}

TEST(TimeoutSpellings, Event) {
  mproc::Event event;
  EXPECT_FALSE(event.wait(0s));
  EXPECT_FALSE(event.wait(std::chrono::milliseconds(5)));
  EXPECT_FALSE(event.wait_for(1ms));
  EXPECT_FALSE(event.wait_until(steady_past()));
  EXPECT_FALSE(event.wait_until(system_past()));
  event.set();
  EXPECT_TRUE(event.wait());
}

TEST(TimeoutSpellings, Condition) {
  mproc::Lock lock;
  mproc::Condition cond(lock);
  std::unique_lock hold{lock};
  EXPECT_TRUE(cond.wait(0s).timed_out());
  EXPECT_TRUE(cond.wait(std::chrono::milliseconds(1)).timed_out());
  EXPECT_TRUE(cond.wait_for(1ms).timed_out());
  EXPECT_TRUE(cond.wait_until(steady_past()).timed_out());
  EXPECT_TRUE(cond.wait_until(system_past()).timed_out());
  EXPECT_FALSE(cond.wait_for([] { return false; }, 1ms));
  EXPECT_FALSE(cond.wait_for([] { return false; }, std::chrono::milliseconds(1)));
  EXPECT_FALSE(cond.wait_until([] { return false; }, steady_past()));
  EXPECT_FALSE(cond.wait_until([] { return false; }, system_past()));
  cond.wait_for([] { return true; });
  mproc::Condition own;
  std::unique_lock hold_own{own.lock()};
  EXPECT_TRUE(own.wait(0s).timed_out());
}

TEST(TimeoutSpellings, Barrier) {
  mproc::Barrier one(1);
  EXPECT_EQ(one.wait(), 0u);
  EXPECT_EQ(one.wait(1s), 0u);
  EXPECT_EQ(one.wait_for(1s), 0u);
  EXPECT_EQ(one.wait_until(mproc::Clock::now() + 1s), 0u);
  EXPECT_EQ(one.wait_until(SysClock::now() + 1s), 0u);
  mproc::Barrier with_default(1, {}, 1s);
  EXPECT_EQ(with_default.wait(), 0u);
}

TEST(TimeoutSpellings, FileLock) {
  const std::string path = "/tmp/mproc-timeout-spellings-" + std::to_string(::getpid()) + ".lock";
  {
    mproc::FileLock file(path);
    ASSERT_TRUE(file.acquire());
    file.release();
    ASSERT_TRUE(file.acquire(0s));
    file.release();
    ASSERT_TRUE(file.acquire_for(1ms));
    file.release();
    ASSERT_TRUE(file.acquire_until(steady_past()));
    file.release();
    ASSERT_TRUE(file.acquire_until(system_past()));
    file.release();
    ASSERT_TRUE(file.acquire_shared());
    file.release();
    ASSERT_TRUE(file.acquire_shared(1ms));
    file.release();
    ASSERT_TRUE(file.acquire_shared_for(1ms));
    file.release();
    ASSERT_TRUE(file.acquire_shared_until(steady_past()));
    file.release();
    ASSERT_TRUE(file.acquire_shared_until(system_past()));
    file.release();
    ASSERT_TRUE(file.try_lock_shared());
    file.unlock_shared();
    ASSERT_TRUE(file.try_lock_shared_for(1ms));
    file.unlock_shared();
    ASSERT_TRUE(file.try_lock_shared_until(system_past()));
    file.unlock_shared();
    ASSERT_TRUE(file.try_lock_for(1ms));
    file.unlock();
    ASSERT_TRUE(file.try_lock_until(steady_past()));
    file.unlock();
    { std::shared_lock read{file}; }
    {
      std::shared_lock read{file, std::defer_lock};
      ASSERT_TRUE(read.try_lock_for(1ms));
    }
    { std::scoped_lock write{file}; }
  }
  std::remove(path.c_str());
}

TEST(TimeoutSpellings, Process) {
  mproc::Process p([] {});
  p.start();
  p.join();
  EXPECT_TRUE(p.join(0s));
  EXPECT_TRUE(p.join(std::chrono::milliseconds(1)));
  EXPECT_TRUE(p.join_for(1ms));
  EXPECT_TRUE(p.join_until(steady_past()));
  EXPECT_TRUE(p.join_until(system_past()));
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(TimeoutSpellings, Queue) {
  mproc::Queue<int> q(4096, 1);
  q.put(1);
  EXPECT_FALSE(q.put_for(2, 0s));
  EXPECT_FALSE(q.put_for(2, std::chrono::milliseconds(1)));
  EXPECT_FALSE(q.put_until(2, steady_past()));
  EXPECT_FALSE(q.put_until(2, steady_seconds() - 1s));
  EXPECT_FALSE(q.put_until(2, system_past()));
  EXPECT_FALSE(q.try_put(2));
  const std::array<int, 2> two{2, 3};
  EXPECT_EQ(q.put_many_for(two, 0s), 0u);
  EXPECT_EQ(q.put_many_until(two, steady_past()), 0u);
  EXPECT_EQ(q.put_many_until(std::span<const int>(two), system_past()), 0u);
  EXPECT_EQ(q.try_put_many(two), 0u);
  EXPECT_EQ(q.get(), 1);
  EXPECT_FALSE(q.get_for(0s));
  EXPECT_FALSE(q.get_for(std::chrono::milliseconds(1)));
  EXPECT_FALSE(q.get_until(steady_past()));
  EXPECT_FALSE(q.get_until(system_past()));
  EXPECT_FALSE(q.try_get());
  std::vector<int> out(2);
  EXPECT_EQ(q.get_many_for(out, 1ms), 0u);
  EXPECT_EQ(q.get_many_until(out, steady_past()), 0u);
  EXPECT_EQ(q.get_many_until(std::span<int>(out), system_past()), 0u);
  EXPECT_EQ(q.try_get_many(out), 0u);
  q.put_many(std::span<const int>(two).first(1));
  EXPECT_EQ(q.get_many(out), 1u);
  q.put(4);
  int into = 0;
  EXPECT_TRUE(q.get_into(into));

  // A queue of durations: the value is never taken for the timeout.
  mproc::Queue<std::chrono::seconds> durations;
  EXPECT_TRUE(durations.put_for(5s, 1s));
  EXPECT_TRUE(durations.put_until(6s, mproc::Clock::now() + 1s));
  EXPECT_EQ(durations.get_for(1s), 5s);

  mproc::Queue<std::string> strings;
  EXPECT_TRUE(strings.put_for("a", 1s));
  EXPECT_EQ(strings.get_until(SysClock::now() + 1s), "a");

  mproc::JoinableQueue<int> jq;
  jq.join();
  EXPECT_TRUE(jq.join(0s));
  EXPECT_TRUE(jq.join(std::chrono::milliseconds(1)));
  EXPECT_TRUE(jq.join_for(1ms));
  EXPECT_TRUE(jq.join_until(steady_past()));
  EXPECT_TRUE(jq.join_until(system_past()));
  jq.put(1);
  EXPECT_FALSE(jq.join(0s));
  EXPECT_EQ(jq.get_for(1s), 1);
  jq.task_done();

  mproc::SimpleQueue<int> sq;
  sq.put(1);
  EXPECT_EQ(sq.get(), 1);
}

TEST(TimeoutSpellings, Pipe) {
  auto [a, b] = mproc::Pipe();
  EXPECT_FALSE(a.poll());
  EXPECT_FALSE(a.poll(0s));
  EXPECT_FALSE(a.poll(std::chrono::milliseconds(1)));
  EXPECT_FALSE(a.poll_for(1ms));
  EXPECT_FALSE(a.poll_until(steady_past()));
  EXPECT_FALSE(a.poll_until(system_past()));
  std::vector<mproc::Connection*> conns{&a};
  EXPECT_TRUE(mproc::wait(conns, 0s).empty());
  EXPECT_TRUE(mproc::wait(conns, std::chrono::milliseconds(1)).empty());
  EXPECT_TRUE(mproc::wait(conns, steady_past()).empty());
  EXPECT_TRUE(mproc::wait(conns, system_past()).empty());
  EXPECT_TRUE(mproc::wait_for(conns, 1ms).empty());
  EXPECT_TRUE(mproc::wait_until(conns, steady_past()).empty());
  b.send(7);
  EXPECT_EQ(mproc::wait(conns).size(), 1u);
  EXPECT_EQ(a.recv<int>(), 7);
}

int square(int x) {
  return x * x;
}
void nothing() {}

TEST(TimeoutSpellings, Pool) {
  mproc::Pool pool(1);
  auto r = pool.apply_async(square, 3);
  EXPECT_EQ(r.get(), 9);
  EXPECT_EQ(r.get(1s), 9);
  EXPECT_EQ(r.get(std::chrono::milliseconds(1)), 9);
  EXPECT_EQ(r.get_for(1ms), 9);
  EXPECT_EQ(r.get_until(steady_past()), 9);
  EXPECT_EQ(r.get_until(system_past()), 9);
  r.wait();
  EXPECT_TRUE(r.wait(0s));
  EXPECT_TRUE(r.wait_for(1ms));
  EXPECT_TRUE(r.wait_until(steady_past()));
  EXPECT_TRUE(r.wait_until(system_past()));
  auto v = pool.apply_async(nothing);
  EXPECT_TRUE(v.get(1s));
  EXPECT_TRUE(v.get_for(1s));
  auto m = pool.map_async(square, std::vector{1, 2});
  EXPECT_EQ(m.get(5s), (std::vector<int>{1, 4}));
}

}  // namespace
