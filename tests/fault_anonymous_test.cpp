// Out of memory, space or descriptors while creating anonymous objects: every primitive fails
// with an mproc::Error that carries the errno and names it, and leaks nothing.
#include <gtest/gtest.h>

#include <string>

#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/value.hpp"
#include "support/fault_support.hpp"

using mproc::test::FaultPlan;
using mproc::test::kAlways;
using namespace mproc_test::fault;

namespace {

struct AnonymousKind {
  const char* name;
  const char* mention;  // what its error messages must name ('|' between alternatives)
  void (*make)();
};

const AnonymousKind kAnonymous[] = {
    {"Lock", "Lock", [] { mproc::Lock x; }},
    {"RLock", "RLock", [] { mproc::RLock x; }},
    {"Semaphore", "Semaphore", [] { mproc::Semaphore x(1); }},
    {"BoundedSemaphore", "Semaphore", [] { mproc::BoundedSemaphore x(1); }},
    {"Event", "Event", [] { mproc::Event x; }},
    {"Condition", "Condition|RLock", [] { mproc::Condition x; }},  // or its own RLock
    {"Barrier", "Barrier", [] { mproc::Barrier x(2); }},
    {"Queue", "Queue", [] { mproc::Queue<int> x; }},
    {"JoinableQueue", "Queue", [] { mproc::JoinableQueue<int> x; }},
    {"SimpleQueue", "Queue", [] { mproc::SimpleQueue<int> x; }},
    {"Value", "Value|RLock", [] { mproc::Value<int> x; }},  // or its RLock
    {"Array", "Array|RLock", [] { mproc::Array<int> x(16); }},
    {"Pipe", "Pipe", [] { auto ends = mproc::Pipe(); }},
    {"OneWayPipe", "Pipe", [] { auto ends = mproc::Pipe(false); }},
};

void PrintTo(const AnonymousKind& k, std::ostream* os) {
  *os << k.name;
}

class AnonymousCreation : public testing::TestWithParam<AnonymousKind> {};

TEST_P(AnonymousCreation, fails_with_a_clear_error_and_leaks_nothing_when_memory_runs_out) {
  const AnonymousKind& k = GetParam();
  const Resources before = resources();
  FaultPlan plan;
  plan.inject("mmap", ENOMEM, 0, kAlways);
  const Outcome o = outcome_of(k.make);
  EXPECT_GT(plan.injected("mmap"), 0u);
  plan.disarm();
  ASSERT_TRUE(o.threw);
  EXPECT_EQ(o.code, ENOMEM) << o.what;
  EXPECT_TRUE(names_any(o.what, k.mention)) << o.what;
  EXPECT_NOTHING_LEAKED(before);
}

TEST_P(AnonymousCreation, each_failing_resource_call_is_a_clear_error_that_leaks_nothing) {
  const AnonymousKind& k = GetParam();
  sweep_failures(k.name, k.mention, k.make, [] {});
}

INSTANTIATE_TEST_SUITE_P(Each, AnonymousCreation, testing::ValuesIn(kAnonymous),
                         [](const auto& param) { return std::string(param.param.name); });

TEST(QueueCreation, fails_with_a_clear_error_when_descriptors_run_out) {
  for (const int err : {EMFILE, ENFILE}) {
    const Resources before = resources();
    FaultPlan plan;
    plan.inject("eventfd", err, 0, kAlways);
    const Outcome o = outcome_of([] { mproc::Queue<int> q; });
    EXPECT_EQ(plan.injected("eventfd"), 1u);
    plan.disarm();
    EXPECT_TRUE(o.threw);
    EXPECT_EQ(o.code, err) << o.what;
    EXPECT_NE(o.what.find("Queue"), std::string::npos) << o.what;
    EXPECT_NOTHING_LEAKED(before);
  }
}

TEST(PipeCreation, fails_with_a_clear_error_when_descriptors_run_out) {
  for (const int err : {EMFILE, ENFILE}) {
    for (unsigned after : {0u, 1u}) {  // the first socketpair, or the second of a duplex pipe
      const Resources before = resources();
      FaultPlan plan;
      plan.inject("socketpair", err, after, 1);
      const Outcome o = outcome_of([] { auto ends = mproc::Pipe(); });
      EXPECT_EQ(plan.injected("socketpair"), 1u);
      plan.disarm();
      EXPECT_TRUE(o.threw);
      EXPECT_EQ(o.code, err) << o.what;
      EXPECT_NE(o.what.find("Pipe"), std::string::npos) << o.what;
      EXPECT_NOTHING_LEAKED(before);
    }
  }
}

}  // namespace
