// Condition across real processes, with Python's semantics; an owner death of its own lock
// is reported as the condition's.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mproc/condition.hpp"
#include "mproc/lock.hpp"
#include "support/owner_death.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Condition;
using mproc::Process;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kill_a_child_holding;
using mproc_test::kPatience;
using mproc_test::owner_died_message;
using mproc_test::Shared;
using mproc_test::start_child;

TEST(Condition, wait_for_returns_when_another_process_makes_the_predicate_true) {
  mproc::Lock lock;
  Condition cv(lock);
  Shared<int> count;
  Flag waiting;
  Process consumer = start_child([&] {
    std::unique_lock hold{lock};
    waiting.raise();
    CHILD_CHECK(cv.wait_for([&] { return *count > 0; }, kPatience));
    CHILD_CHECK(lock.held_by_this_thread());
  });
  ASSERT_TRUE(waiting.wait_for(kPatience));
  {
    std::scoped_lock hold{lock};
    ++*count;
    cv.notify();
  }
  EXPECT_EQ(exit_code_of(consumer), 0);
}

TEST(Condition, wait_times_out_and_returns_holding_the_lock) {
  mproc::Lock lock;
  Condition cv(lock);
  std::unique_lock hold{lock};
  const auto t0 = std::chrono::steady_clock::now();
  const mproc::Waited w = cv.wait(100ms);
  EXPECT_TRUE(w.timed_out());
  EXPECT_FALSE(w.owner_died());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
  EXPECT_TRUE(lock.held_by_this_thread());
  EXPECT_FALSE(cv.wait_for([] { return false; }, 50ms));
}

TEST(Condition, waiting_or_notifying_without_the_lock_is_an_error) {
  mproc::Lock lock;
  Condition cv(lock);
  EXPECT_THROW((void)cv.wait(10ms), mproc::UsageError);
  EXPECT_THROW(cv.notify(), mproc::UsageError);
}

TEST(Condition, notify_all_wakes_every_waiting_process) {
  Condition cv;  // over an RLock of its own, as Python's Condition()
  Shared<std::atomic<int>> waiting;
  Shared<int> go;
  std::vector<Process> ps;
  for (int i = 0; i < 3; ++i) {
    ps.push_back(start_child([&] {
      std::unique_lock hold{cv.lock()};
      waiting->fetch_add(1);
      CHILD_CHECK(cv.wait_for([&] { return *go == 1; }, kPatience));
    }));
  }
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (waiting->load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  {
    std::scoped_lock hold{cv.lock()};
    *go = 1;
    cv.notify_all();
  }
  for (auto& p : ps) EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Condition, wait_releases_every_level_of_an_rlock_and_restores_them) {
  mproc::RLock lock;
  Condition cv(lock);
  ASSERT_TRUE(lock.acquire());
  ASSERT_TRUE(lock.acquire());
  Flag took;
  Process p = start_child([&] {
    CHILD_CHECK(lock.acquire(kPatience));  // possible only while the parent waits
    took.raise();
    cv.notify();
    lock.release();
  });
  const mproc::Waited w = cv.wait(kPatience);
  EXPECT_FALSE(w.timed_out());
  EXPECT_TRUE(took.wait_for(0ms));
  lock.release();
  lock.release();  // both levels came back
  EXPECT_THROW(lock.release(), mproc::UsageError);
  EXPECT_EQ(exit_code_of(p), 0);
}

// ---- messages name the object ------------------------------------------------------------------

TEST(Condition, owner_death_of_its_own_lock_is_reported_as_the_condition_s) {
  Condition cv;
  kill_a_child_holding(cv.lock());
  const std::string message = owner_died_message([&] { std::scoped_lock hold{cv.lock()}; });
  EXPECT_NE(message.find("Condition"), std::string::npos) << message;
  EXPECT_EQ(message.find("RLock"), std::string::npos) << message;
  ASSERT_TRUE(cv.lock().acquire(kPatience).owner_died());
  cv.lock().mark_consistent();
  cv.lock().release();
}
