// Barrier across real processes, with Python's semantics.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <vector>

#include "mproc/barrier.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Barrier;
using mproc::Process;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::Shared;
using mproc_test::start_child;

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
