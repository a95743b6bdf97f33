// membarrier refused: the revocation of a biased queue side (docs/design/queue.md). Queues keep
// to their locks where the kernel refuses it, and a refused revocation is an error that loses
// nothing.
#include <gtest/gtest.h>

#include <string>

#include "mproc/error.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/ring_stats.hpp"
#include "support/fault_support.hpp"

using mproc::test::FaultPlan;
using mproc_test::kPatience;
using namespace mproc_test::fault;

namespace {

// A kernel (or a seccomp filter) that refuses membarrier: no side is ever given to a thread, and
// every put and get takes the lock, as before biased sides existed. In a child: registration is
// decided once per process, and this one may have registered already.
TEST(FaultMembarrier, where_membarrier_is_refused_queues_keep_to_the_lock) {
  mproc::Queue<int> q;
  mproc::Process p = mproc_test::start_child([&] {
    FaultPlan plan;
    plan.inject("membarrier", ENOSYS, 0, mproc::test::kAlways);
    for (int i = 0; i < 1000; ++i) {
      q.put(i);
      CHILD_CHECK(q.get() == i);
    }
    CHILD_CHECK(plan.injected("membarrier") >= 1);
    const mproc::RingStats s = q.stats();
    CHILD_CHECK(s.producer_bias_grants == 0 && s.consumer_bias_grants == 0);
  });
  EXPECT_EQ(mproc_test::exit_code_of(p), 0);
}

// A process that cannot take a side back says so, loses nothing, and can try again.
TEST(FaultMembarrier, a_refused_revocation_is_an_error_and_loses_nothing) {
  mproc::Queue<int> q;
  mproc::Process p = mproc_test::start_child([&] {
    for (int i = 0; i < 1000; ++i) q.put(i);  // the producer side becomes this child's
  });
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(q.get_for(kPatience), i);
  EXPECT_EQ(mproc_test::exit_code_of(p), 0);
  ASSERT_EQ(q.stats().producer_bias_grants, 1u);
  {
    FaultPlan plan;
    plan.inject("membarrier", EPERM, 0, mproc::test::kAlways);
    try {
      q.put(-1);
      ADD_FAILURE() << "put took the side back without membarrier";
    } catch (const mproc::Error& e) {
      EXPECT_NE(std::string(e.what()).find("membarrier"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(q.empty());
  }
  q.put(-2);  // membarrier works again: the side is taken back
  EXPECT_EQ(q.get(), -2);
  EXPECT_EQ(q.stats().producer_bias_revocations, 1u);
}

}  // namespace
