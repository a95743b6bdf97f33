#pragma once
// The fixture of the named-object tests (named_test.cpp, named_lifetime_test.cpp).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <string>

#include "mproc/error.hpp"
#include "support/test_support.hpp"

namespace mproc_test {

// A unique name per test, unlinked at the end whatever happened.
class Named : public testing::Test {
 protected:
  std::string name = mproc_test::unique_name(testing::UnitTest::GetInstance()->current_test_info()->name());
  void TearDown() override {
    for (const char* suffix : {"", ".lock", ".event", ".event.lock"}) {
      ::shm_unlink(("/mproc." + name + suffix).c_str());
    }
  }

  int error_of(auto f) {
    try {
      f();
    } catch (const mproc::Error& e) {
      last_message = e.what();
      return e.code().value();
    }
    return 0;
  }
  std::string last_message;
};

}  // namespace mproc_test
