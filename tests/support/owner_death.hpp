#pragma once
// Helpers for tests of what an owner death is reported as: kill a child while it holds a lock,
// and read the message of the mproc::OwnerDied that follows.
#include <gtest/gtest.h>

#include <csignal>
#include <string>

#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/process.hpp"
#include "support/test_support.hpp"

namespace mproc_test {

/// Kills a child that holds `lock`, so that the next acquirer is told owner_died.
inline void kill_a_child_holding(mproc::detail::RobustLock& lock) {
  Flag holding;
  mproc::Process p = start_child([&] {
    CHILD_CHECK(lock.acquire());
    holding.raise();
    holding.block_forever();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  p.kill();
  ASSERT_EQ(exit_code_of(p), -SIGKILL);
}

/// The message of the mproc::OwnerDied that `f` throws.
std::string owner_died_message(auto f) {
  try {
    f();
  } catch (const mproc::OwnerDied& e) {
    return e.what();
  }
  return "(no mproc::OwnerDied)";
}

}  // namespace mproc_test
