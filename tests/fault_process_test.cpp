// Processes and pools when fork or pidfd_open fails: a clear error, no child left behind, a
// start that can be retried, and pool tasks that fail instead of hanging.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <string>

#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "support/fault_support.hpp"

using mproc::test::FaultPlan;
using mproc::test::kAlways;
using mproc_test::exit_code_of;
using mproc_test::kPatience;
using namespace mproc_test::fault;

namespace {

TEST(ProcessStart, fails_with_a_clear_error_when_fork_fails_and_can_be_retried) {
  mproc::Process p([] {});
  p.set_daemon(true);
  const Resources before = resources();
  Outcome o;
  {
    FaultPlan plan;
    plan.inject("fork", EAGAIN);
    o = outcome_of([&] { p.start(); });
    EXPECT_EQ(plan.injected("fork"), 1u);
  }
  ASSERT_TRUE(o.threw);
  EXPECT_EQ(o.code, EAGAIN) << o.what;
  EXPECT_NE(o.what.find(p.name()), std::string::npos) << o.what;
  EXPECT_NOTHING_LEAKED(before);
  EXPECT_FALSE(p.pid().has_value());
  p.start();  // the failure left it unstarted
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(ProcessStart, fails_with_a_clear_error_when_the_child_cannot_be_tracked_and_leaves_no_child) {
  mproc::Process p([] {
    for (;;) ::pause();  // only the parent's clean-up can end it
  });
  p.set_daemon(true);
  const Resources before = resources();
  Outcome o;
  {
    FaultPlan plan;
    plan.inject("pidfd_open", EMFILE);
    o = outcome_of([&] { p.start(); });
    EXPECT_EQ(plan.injected("pidfd_open"), 1u);
  }
  ASSERT_TRUE(o.threw);
  EXPECT_EQ(o.code, EMFILE) << o.what;
  EXPECT_NE(o.what.find(p.name()), std::string::npos) << o.what;
  EXPECT_NOTHING_LEAKED(before);  // no child: it was killed and reaped
}

TEST(ProcessStart, can_be_retried_after_the_child_could_not_be_tracked) {
  mproc::Process p([] {});
  p.set_daemon(true);
  {
    FaultPlan plan;
    plan.inject("pidfd_open", EMFILE);
    EXPECT_THROW(p.start(), mproc::Error);
  }
  EXPECT_FALSE(p.is_alive());
  p.start();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(ProcessStart, reaps_the_child_it_could_not_track_even_when_waitpid_is_interrupted) {
  // waitpid in start()'s clean-up path and waitid in join() both meet EINTR.
  mproc::Process p([] {
    for (;;) ::pause();
  });
  p.set_daemon(true);
  {
    FaultPlan plan;
    plan.inject("pidfd_open", EMFILE).inject("waitpid", EINTR, 0, 3);
    EXPECT_THROW(p.start(), mproc::Error);
    EXPECT_EQ(plan.injected("waitpid"), 3u);
  }
  EXPECT_TRUE(resources().children.empty());
}

// ---- Pool --------------------------------------------------------------------------------------

int die_after_bell(int) {
  (void)Doorbell::wait_readable(g_pool_bell_fd, kPatience);
  ::raise(SIGKILL);
  return 0;
}
int square(int x) {
  return x * x;
}

TEST(PoolFaults, tasks_fail_instead_of_hanging_when_a_replacement_worker_cannot_be_forked) {
  const Resources before = resources();
  {
    Doorbell bell;
    g_pool_bell_fd = bell.read_fd();
    FaultPlan plan;
    plan.inject("fork", EAGAIN, /*after: the first worker starts*/ 1, kAlways);
    mproc::Pool pool(1);
    // The first kills its worker once all four are in; the second waits with it in the worker;
    // the others wait in the pool for a worker that can never be started.
    auto dies = pool.apply_async(die_after_bell, 0);
    auto with_it = pool.apply_async(square, 2);
    auto later = pool.apply_async(square, 3);
    auto last = pool.apply_async(square, 4);
    bell.ring();
    EXPECT_THROW((void)dies.get(kPatience), mproc::WorkerDied);
    int stopped = 0;
    for (auto* r : {&with_it, &later, &last}) {
      try {
        const auto v = r->get(kPatience);
        EXPECT_TRUE(v.has_value()) << "a task hung after its pool could not replace a worker";
      } catch (const mproc::WorkerDied&) {
      } catch (const mproc::PoolTerminated& e) {
        // Say why: nobody called terminate().
        EXPECT_NE(std::string(e.what()).find("cannot start PoolWorker-1"), std::string::npos) << e.what();
        ++stopped;
      }
    }
    EXPECT_GE(stopped, 2);
    EXPECT_GE(plan.injected("fork"), 1u);
    try {
      (void)pool.apply_async(square, 5);
      ADD_FAILURE() << "a stopped pool accepted work";
    } catch (const mproc::PoolTerminated& e) {
      EXPECT_NE(std::string(e.what()).find("cannot start PoolWorker-1"), std::string::npos) << e.what();
    }
  }
  EXPECT_NOTHING_LEAKED(before);
}

TEST(PoolFaults, a_pool_that_cannot_create_its_queues_fails_with_a_clear_error) {
  const Resources before = resources();
  for (const char* fn : {"mmap", "eventfd"}) {
    FaultPlan plan;
    plan.inject(fn, natural_error(fn), 0, kAlways);
    const Outcome o = outcome_of([] { mproc::Pool pool(1); });
    EXPECT_GT(plan.injected(fn), 0u);
    ASSERT_TRUE(o.threw) << fn;
    EXPECT_EQ(o.code, natural_error(fn)) << o.what;
  }
  EXPECT_NOTHING_LEAKED(before);
}

}  // namespace
