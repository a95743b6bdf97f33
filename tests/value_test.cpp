// Value, Array, RawValue and RawArray shared across real processes: updates under their locks,
// owner deaths reported as the value's or the array's, misuse as mproc::UsageError.
#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "mproc/value.hpp"
#include "support/owner_death.hpp"
#include "support/test_support.hpp"

using mproc::Process;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kill_a_child_holding;
using mproc_test::kPatience;
using mproc_test::owner_died_message;
using mproc_test::start_child;

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

// ---- messages name the object, misuse is mproc::UsageError --------------------------------------

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
