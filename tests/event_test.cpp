// Event across real processes, with Python's semantics.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <vector>

#include "mproc/event.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Event;
using mproc::Process;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::Shared;
using mproc_test::start_child;

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
