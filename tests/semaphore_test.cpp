// Semaphore and BoundedSemaphore across real processes, with Python's semantics.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

#include "mproc/semaphore.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::BoundedSemaphore;
using mproc::Process;
using mproc::Semaphore;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::Shared;
using mproc_test::start_child;

TEST(Semaphore, never_lets_more_processes_in_than_its_count) {
  Semaphore slots(2);
  struct Census {
    std::atomic<int> inside{0}, most{0}, visits{0};
  };
  Shared<Census> census;
  std::vector<Process> ps;
  for (int i = 0; i < 5; ++i) {
    ps.push_back(start_child([&] {
      for (int round = 0; round < 200; ++round) {
        CHILD_CHECK(slots.acquire());
        const int now = census->inside.fetch_add(1) + 1;
        int seen = census->most.load();
        while (now > seen && !census->most.compare_exchange_weak(seen, now)) {}
        census->visits.fetch_add(1);
        census->inside.fetch_sub(1);
        slots.release();
      }
    }));
  }
  for (auto& p : ps) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_LE(census->most.load(), 2);
  EXPECT_EQ(census->visits.load(), 1000);
  EXPECT_EQ(slots.get_value(), 2u);
}

TEST(Semaphore, acquire_on_zero_times_out_after_roughly_the_timeout) {
  Semaphore s(0);
  EXPECT_FALSE(s.try_acquire());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(s.acquire(120ms));
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 120ms);
  EXPECT_LT(waited, 120ms + kPatience);
}

TEST(Semaphore, a_release_in_another_process_wakes_a_waiter) {
  Semaphore s(0);
  Flag go;
  Process p = start_child([&] {
    CHILD_CHECK(go.wait_for(kPatience));
    s.release();
  });
  go.raise();
  EXPECT_TRUE(s.acquire(kPatience));
  EXPECT_EQ(s.get_value(), 0u);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Semaphore, with_a_count_of_one_it_is_an_ownerless_lock) {
  Semaphore mutex(1);
  ASSERT_TRUE(mutex.acquire());
  Process p = start_child([&] { mutex.release(); });  // another process may release it
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_TRUE(mutex.try_acquire());
}

TEST(Semaphore, a_waiter_killed_while_waiting_does_not_take_a_count) {
  Semaphore s(0);
  Flag waiting;
  Process victim = start_child([&] {
    waiting.raise();
    (void)s.acquire();
    std::_Exit(3);
  });
  ASSERT_TRUE(waiting.wait_for(kPatience));
  victim.kill();
  EXPECT_EQ(exit_code_of(victim), -SIGKILL);
  s.release();
  Process taker = start_child([&] { CHILD_CHECK(s.acquire(kPatience)); });
  EXPECT_EQ(exit_code_of(taker), 0);
}

TEST(BoundedSemaphore, releasing_above_the_initial_value_is_an_error) {
  BoundedSemaphore s(2);
  EXPECT_THROW(s.release(), mproc::UsageError);
  EXPECT_EQ(s.get_value(), 2u) << "a refused release changes nothing";
  ASSERT_TRUE(s.acquire());
  s.release();
  EXPECT_THROW(s.release(2), mproc::UsageError);
  Semaphore unbounded(2);
  unbounded.release();  // Python's Semaphore allows it
  EXPECT_EQ(unbounded.get_value(), 3u);
}
