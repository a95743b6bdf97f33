// Semaphore, BoundedSemaphore and Event across real processes, with Python's semantics.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <vector>

#include "mproc/detail/codec.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/event.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/value.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Barrier;
using mproc::BoundedSemaphore;
using mproc::Condition;
using mproc::Event;
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

TEST(Event, wait_returns_once_another_process_sets_it_and_sees_its_writes) {
  Event ready;
  Shared<int> data;
  Process p = start_child([&] {
    *data = 42;
    ready.set();
  });
  EXPECT_TRUE(ready.wait(kPatience));
  EXPECT_EQ(*data, 42);
  EXPECT_TRUE(ready.is_set());
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Event, wait_times_out_while_clear_and_clear_resets_it) {
  Event e;
  EXPECT_FALSE(e.is_set());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(e.wait(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
  e.set();
  EXPECT_TRUE(e.wait(0s));
  e.clear();
  EXPECT_FALSE(e.is_set());
  EXPECT_FALSE(e.wait(0s));
}

TEST(Event, set_wakes_every_waiting_process) {
  Event go;
  Shared<std::atomic<int>> waiting;
  std::vector<Process> ps;
  for (int i = 0; i < 3; ++i) {
    ps.push_back(start_child([&] {
      waiting->fetch_add(1);
      CHILD_CHECK(go.wait(kPatience));
    }));
  }
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (waiting->load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  go.set();
  for (auto& p : ps) EXPECT_EQ(exit_code_of(p), 0);
}

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

TEST(Barrier, releases_all_parties_with_distinct_indices_and_runs_the_action_once) {
  Shared<std::atomic<int>> actions;
  struct Indices {
    std::atomic<int> seen[3];
  };
  Shared<Indices> indices;
  Barrier barrier(
      3, [&] { actions->fetch_add(1); }, kPatience);
  std::vector<Process> ps;
  for (int i = 0; i < 3; ++i) {
    ps.push_back(start_child([&] {
      for (int round = 0; round < 5; ++round) {
        const std::uint32_t index = barrier.wait();
        CHILD_CHECK(index < 3);
        if (round == 0) indices->seen[index].fetch_add(1);
      }
    }));
  }
  for (auto& p : ps) EXPECT_EQ(exit_code_of(p), 0);
  for (auto& s : indices->seen) EXPECT_EQ(s.load(), 1);
  EXPECT_EQ(actions->load(), 5) << "once per round, in one process";
  EXPECT_EQ(barrier.parties(), 3u);
  EXPECT_FALSE(barrier.broken());
}

TEST(Barrier, a_timeout_breaks_it_for_every_waiter_until_reset) {
  Barrier barrier(3);
  Process p = start_child([&] {
    try {
      (void)barrier.wait(kPatience);  // broken by the parent's timeout, long before this one
    } catch (const mproc::BrokenBarrier&) {
      std::exit(0);
    }
    std::exit(1);
  });
  EXPECT_THROW((void)barrier.wait(200ms), mproc::BrokenBarrier);
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW((void)barrier.wait(10ms), mproc::BrokenBarrier);
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  EXPECT_EQ(barrier.n_waiting(), 0u);
}

TEST(Barrier, abort_breaks_it_for_waiting_processes) {
  Barrier barrier(2);
  Shared<std::atomic<int>> arrived;
  Process p = start_child([&] {
    arrived->store(1);
    try {
      (void)barrier.wait(kPatience);
    } catch (const mproc::BrokenBarrier&) {
      std::exit(0);
    }
    std::exit(1);
  });
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (barrier.n_waiting() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  barrier.abort();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Barrier, a_party_that_dies_before_arriving_breaks_it_after_the_default_timeout) {
  Barrier barrier(2, {}, std::chrono::milliseconds(300));
  Flag started;
  Process doomed = start_child([&] {
    started.raise();
    started.block_forever();  // killed before it ever reaches the barrier
  });
  ASSERT_TRUE(started.wait_for(kPatience));
  doomed.kill();
  EXPECT_EQ(exit_code_of(doomed), -SIGKILL);
  EXPECT_THROW((void)barrier.wait(), mproc::BrokenBarrier);
}

TEST(Value, update_is_atomic_across_processes) {
  mproc::Value<long> counter(0);
  std::vector<Process> ps;
  for (int i = 0; i < 4; ++i) {
    ps.push_back(start_child([&] {
      for (int n = 0; n < 5000; ++n) counter.update([](long& c) { ++c; });
    }));
  }
  for (auto& p : ps) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(counter.get(), 20'000);
  counter.set(7);
  EXPECT_EQ(counter.get(), 7);
}

TEST(Value, a_writer_killed_holding_its_lock_is_reported) {
  mproc::Value<int> v(1);
  Flag holding;
  Process p = start_child([&] {
    CHILD_CHECK(v.get_lock().acquire());
    v.raw() = 2;
    holding.raise();
    holding.block_forever();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  EXPECT_THROW((void)v.get(), mproc::OwnerDied);
  mproc::Acquired got = v.get_lock().acquire(kPatience);
  ASSERT_TRUE(got.owner_died());
  v.raw() = 3;  // repaired
  v.get_lock().mark_consistent();
  v.get_lock().release();
  EXPECT_EQ(v.get(), 3);
}

TEST(Array, elements_written_by_a_child_are_seen_by_the_parent) {
  struct Sample {
    double x;
    int id;
  };
  mproc::Array<Sample> a(100, Sample{0.0, -1});
  EXPECT_EQ(a.size(), 100u);
  EXPECT_EQ(a.get(99).id, -1);
  Process p = start_child([&] {
    for (std::size_t i = 0; i < a.size(); ++i)
      a.set(i, Sample{static_cast<double>(i) / 2, static_cast<int>(i)});
  });
  EXPECT_EQ(exit_code_of(p), 0);
  const auto all = a.to_vector();
  for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].id, static_cast<int>(i));
  EXPECT_THROW((void)a.get(100), std::out_of_range);
}

TEST(RawArray, is_shared_without_a_lock) {
  mproc::RawArray<int> a(10);
  mproc::RawValue<int> v(5);
  Process p = start_child([&] {
    a[3] = 33;
    *v = 6;
  });
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(a[3], 33);
  EXPECT_EQ(*v, 6);
}

// ---- messages name the object, misuse is mproc::UsageError -----------------------------------------

namespace {

// Kills a child that holds `lock`, so that the next acquirer is told owner_died.
void kill_a_child_holding(mproc::detail::RobustLock& lock) {
  Flag holding;
  Process p = start_child([&] {
    CHILD_CHECK(lock.acquire());
    holding.raise();
    holding.block_forever();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  p.kill();
  ASSERT_EQ(exit_code_of(p), -SIGKILL);
}

std::string owner_died_message(auto f) {
  try {
    f();
  } catch (const mproc::OwnerDied& e) {
    return e.what();
  }
  return "(no mproc::OwnerDied)";
}

}  // namespace

TEST(Value, owner_death_is_reported_as_the_value_s_not_an_rlock_s) {
  mproc::Value<int> v(1);
  kill_a_child_holding(v.get_lock());
  const std::string message = owner_died_message([&] { (void)v.get(); });
  EXPECT_NE(message.find("Value"), std::string::npos) << message;
  EXPECT_EQ(message.find("RLock"), std::string::npos) << message;
  ASSERT_TRUE(v.get_lock().acquire(kPatience).owner_died());
  v.get_lock().mark_consistent();
  v.get_lock().release();
}

TEST(Array, owner_death_is_reported_as_the_array_s_not_an_rlock_s) {
  mproc::Array<int> a(4);
  kill_a_child_holding(a.get_lock());
  const std::string message = owner_died_message([&] { (void)a.to_vector(); });
  EXPECT_NE(message.find("an Array"), std::string::npos) << message;
  EXPECT_EQ(message.find("RLock"), std::string::npos) << message;
  ASSERT_TRUE(a.get_lock().acquire(kPatience).owner_died());
  a.get_lock().mark_consistent();
  a.get_lock().release();
}

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

TEST(Value, releasing_its_lock_without_holding_it_is_a_usage_error_naming_the_value) {
  mproc::Value<int> v(1);
  try {
    v.get_lock().release();
    FAIL() << "expected mproc::UsageError";
  } catch (const mproc::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("Value"), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    FAIL() << "expected mproc::UsageError, got: " << e.what();
  }
}

TEST(Messages, a_type_name_takes_the_right_article) {
  const auto what = [](auto f) -> std::string {
    try {
      f();
    } catch (const std::exception& e) {
      return e.what();
    }
    return {};
  };
  EXPECT_NE(what([] { mproc::detail::throw_wrong_type("Connection", "int"); }).find("receive an int from"),
            std::string::npos);
  EXPECT_NE(
      what([] { mproc::detail::throw_wrong_type("Connection", "unsigned int"); }).find("an unsigned int"),
      std::string::npos);
  EXPECT_NE(what([] { mproc::detail::throw_wrong_type("Connection", "long"); }).find("receive a long from"),
            std::string::npos);
  EXPECT_NE(what([] { mproc::detail::throw_undecodable("int", 3, "short"); }).find("decode an int from"),
            std::string::npos);
  EXPECT_NE(
      what([] { mproc::detail::throw_undecodable("std::string", 3, "short"); }).find("decode a std::string"),
      std::string::npos);
}

TEST(Array, a_length_whose_bytes_overflow_is_refused_not_wrapped_round) {
  // (2^62 + 1) * 4 bytes wraps round to 4: a 4-byte mapping that the fill would then overrun.
  const std::size_t length = (std::size_t{1} << 62) + 1;
  Process p = start_child([&] {
    try {
      mproc::Array<int> a(length);
    } catch (const mproc::Error& e) {
      std::_Exit(e.code().value() == ENOMEM ? 0 : 2);
    }
    std::_Exit(1);
  });
  EXPECT_EQ(exit_code_of(p), 0) << "0: refused with ENOMEM";
}
