// FileLock when open, fcntl, pread or pwrite fails: a clear error naming the path, and a lock
// that stays usable by this process and by others.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>

#include "mproc/file_lock.hpp"
#include "mproc/process.hpp"
#include "support/fault_support.hpp"

using mproc::test::FaultPlan;
using mproc::test::kAlways;
using mproc_test::exit_code_of;
using mproc_test::kPatience;
using mproc_test::start_child;
using namespace mproc_test::fault;

namespace {

TEST(FileLockFaults, opening_without_a_descriptor_is_a_clear_error) {
  mproc_test::TempDir dir;
  const std::string path = (dir / "lock").string();
  const Resources before = resources();
  for (const int err : {EMFILE, ENFILE}) {
    FaultPlan plan;
    plan.inject("open", err, 0, kAlways).inject("openat", err, 0, kAlways);
    const Outcome o = outcome_of([&] { mproc::FileLock lock(path); });
    EXPECT_GT(plan.injected(), 0u);
    ASSERT_TRUE(o.threw);
    EXPECT_EQ(o.code, err) << o.what;
    EXPECT_NE(o.what.find(path), std::string::npos) << o.what;
  }
  EXPECT_NOTHING_LEAKED(before);
}

TEST(FileLockFaults, a_failed_acquire_is_a_clear_error_and_leaves_the_lock_usable) {
  mproc_test::TempDir dir;
  const std::string path = (dir / "lock").string();
  mproc::FileLock lock(path);
  for (const auto& [fn, err] :
       {std::pair{"fcntl", ENOLCK}, std::pair{"pwrite", EIO}, std::pair{"pread", EIO}}) {
    {
      FaultPlan plan;
      plan.inject(fn, err, 0, kAlways);
      const Outcome o = outcome_of([&] { (void)lock.acquire(); });
      EXPECT_GT(plan.injected(fn), 0u);
      ASSERT_TRUE(o.threw) << fn;
      if (std::string_view(fn) == "pread") {
        EXPECT_EQ(o.code, EINVAL) << o.what;  // an unreadable record reads as "not a lock file"
      } else {
        EXPECT_EQ(o.code, err) << o.what;
      }
      EXPECT_NE(o.what.find(path), std::string::npos) << o.what;
    }
    // Not held, and not stuck: another process can take it, and so can we.
    mproc::Process other = start_child([&] {
      mproc::FileLock theirs(path);
      CHILD_CHECK(theirs.acquire(kPatience));
      theirs.release();
    });
    EXPECT_EQ(exit_code_of(other), 0) << fn;
    const mproc::Acquired got = lock.acquire(kPatience);
    EXPECT_TRUE(got) << fn;
    if (got) lock.release();
  }
}

}  // namespace
