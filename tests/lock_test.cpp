// The lock contract, run against every lock: Lock, RLock and FileLock (typed tests), with real
// processes. Then what is particular to Lock and RLock (FileLock's: file_lock_test.cpp).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "mproc/file_lock.hpp"
#include "mproc/lock.hpp"
#include "mproc/process.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Acquired;
using mproc::FileLock;
using mproc::Lock;
using mproc::Process;
using mproc::RLock;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::Shared;
using mproc_test::start_child;
using mproc_test::TempDir;

namespace {

template <class L>
struct Maker {
  static std::unique_ptr<L> make(const TempDir&) { return std::make_unique<L>(); }
};
template <>
struct Maker<FileLock> {
  static std::unique_ptr<FileLock> make(const TempDir& dir) {
    return std::make_unique<FileLock>((dir / "test.lock").string());
  }
};

struct Counter {
  long value = 0;
  // Increments without an atomic read-modify-write, so that only the lock keeps it exact.
  void bump() {
    std::atomic_ref<long> v(value);
    v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

}  // namespace

template <class L>
class LockContract : public testing::Test {
 protected:
  TempDir dir;
  std::unique_ptr<L> lock = Maker<L>::make(dir);

  // A child takes the lock, says so, and is SIGKILLed while holding it.
  void kill_a_child_holding_the_lock() {
    Flag holding;
    Process p = start_child([&] {
      Acquired got = lock->acquire();
      CHILD_CHECK(got && !got.owner_died());
      holding.raise();
      holding.block_forever();
    });
    ASSERT_TRUE(holding.wait_for(kPatience));
    p.kill();
    ASSERT_EQ(exit_code_of(p), -SIGKILL);
  }
};

using AllLocks = testing::Types<Lock, RLock, FileLock>;
TYPED_TEST_SUITE(LockContract, AllLocks);

TYPED_TEST(LockContract, processes_incrementing_under_the_lock_never_lose_an_update) {
  constexpr int kProcesses = 4;
  constexpr int kIncrements = std::is_same_v<TypeParam, FileLock> ? 2'000 : 20'000;
  Shared<Counter> counter;
  std::vector<Process> ps;
  for (int i = 0; i < kProcesses; ++i) {
    ps.push_back(start_child([&] {
      for (int n = 0; n < kIncrements; ++n) {
        std::scoped_lock hold{*this->lock};
        counter->bump();
      }
    }));
  }
  for (auto& p : ps) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(counter->value, long{kProcesses} * kIncrements);
}

TYPED_TEST(LockContract, a_child_killed_while_holding_it_is_reported_to_the_next_acquirer) {
  this->kill_a_child_holding_the_lock();
  Acquired got = this->lock->acquire(kPatience);
  ASSERT_TRUE(got) << "the lock of a dead owner must be handed on, not hang";
  EXPECT_TRUE(got.owner_died());
  this->lock->mark_consistent();
  this->lock->release();
  Acquired again = this->lock->acquire(kPatience);
  EXPECT_EQ(again, Acquired::Status::ok) << "marked consistent: no more owner_died";
  this->lock->release();
}

TYPED_TEST(LockContract, owner_death_is_reported_to_every_acquirer_until_marked_consistent) {
  this->kill_a_child_holding_the_lock();
  ASSERT_EQ(this->lock->acquire(kPatience), Acquired::Status::owner_died);
  this->lock->release();  // released without repairing
  Process p = start_child([&] {
    Acquired got = this->lock->acquire(kPatience);
    CHILD_CHECK(got.owner_died());
    this->lock->mark_consistent();
    this->lock->release();
  });
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(this->lock->acquire(kPatience), Acquired::Status::ok);
  this->lock->release();
}

TYPED_TEST(LockContract, std_lock_throws_owner_died_and_leaves_the_lock_free) {
  this->kill_a_child_holding_the_lock();
  EXPECT_THROW(std::scoped_lock hold{*this->lock}, mproc::OwnerDied);
  EXPECT_THROW((void)this->lock->try_lock(), mproc::OwnerDied);
  // Released again after each throw: a plain acquire still gets it (and is told).
  Acquired got = this->lock->acquire(0s);
  EXPECT_TRUE(got.owner_died());
  this->lock->mark_consistent();
  this->lock->release();
  std::scoped_lock hold{*this->lock};  // no throw once consistent
}

TYPED_TEST(LockContract, mproc_exit_inside_a_scoped_lock_releases_it_cleanly) {
  Process p = start_child([&] {
    std::scoped_lock hold{*this->lock};
    mproc::exit(3);
  });
  EXPECT_EQ(exit_code_of(p), 3);
  EXPECT_EQ(this->lock->acquire(kPatience), Acquired::Status::ok) << "not an owner death";
  this->lock->release();
}

TYPED_TEST(LockContract, std_exit_while_holding_it_is_an_owner_death) {
  Process p = start_child([&] {
    CHILD_CHECK(this->lock->acquire());
    std::exit(0);  // no unwinding: the holder is gone without releasing
  });
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_TRUE(this->lock->acquire(kPatience).owner_died());
  this->lock->mark_consistent();
  this->lock->release();
}

TYPED_TEST(LockContract, timed_acquire_of_a_held_lock_gives_up_after_roughly_the_timeout) {
  Flag holding, done;
  Process p = start_child([&] {
    Acquired got = this->lock->acquire();
    CHILD_CHECK(got);
    holding.raise();
    CHILD_CHECK(done.wait_for(kPatience));
    this->lock->release();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  const auto t0 = std::chrono::steady_clock::now();
  Acquired got = this->lock->acquire(150ms);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(got.timed_out());
  EXPECT_FALSE(got);
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 150ms + kPatience);
  EXPECT_FALSE(this->lock->try_lock());
  EXPECT_FALSE(this->lock->try_lock_for(20ms));
  done.raise();
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_TRUE(this->lock->try_lock_for(kPatience)) << "free again once the holder released it";
  this->lock->unlock();
}

TYPED_TEST(LockContract, blocked_acquirer_gets_the_lock_when_the_holder_releases) {
  Flag holding, release_now;
  Shared<std::atomic<int>> stage;
  Process p = start_child([&] {
    CHILD_CHECK(this->lock->acquire());
    holding.raise();
    CHILD_CHECK(release_now.wait_for(kPatience));
    stage->store(1);
    this->lock->release();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  release_now.raise();
  std::unique_lock hold{*this->lock};  // blocks until the child releases
  EXPECT_EQ(stage->load(), 1) << "acquired before the holder released";
  hold.unlock();
  EXPECT_EQ(exit_code_of(p), 0);
}

TYPED_TEST(LockContract, releasing_a_lock_nobody_holds_is_an_error) {
  EXPECT_ANY_THROW(this->lock->release());
  EXPECT_ANY_THROW(this->lock->mark_consistent());
}

TYPED_TEST(LockContract, another_process_cannot_release_the_holders_lock) {
  ASSERT_TRUE(this->lock->acquire());
  Process p = start_child([&] {
    bool refused = false;
    try {
      this->lock->release();
    } catch (const std::exception&) {
      refused = true;
    }
    CHILD_CHECK(refused);
    CHILD_CHECK(!this->lock->try_lock());  // and the parent still holds it
  });
  EXPECT_EQ(exit_code_of(p), 0);
  this->lock->release();
}

TYPED_TEST(LockContract, threads_of_one_process_exclude_each_other) {
  // FileLock: one object per thread (see its header); Lock/RLock: one shared object.
  constexpr int kThreads = 4, kIncrements = 2'000;
  Counter counter;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&] {
      std::unique_ptr<TypeParam> own;
      if constexpr (std::is_same_v<TypeParam, FileLock>) own = Maker<FileLock>::make(this->dir);
      TypeParam& l = own ? *own : *this->lock;
      for (int n = 0; n < kIncrements; ++n) {
        std::scoped_lock hold{l};
        counter.bump();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(counter.value, long{kThreads} * kIncrements);
}

// ---- Lock and RLock -----------------------------------------------------------------------------

TEST(Lock, acquiring_it_again_from_the_holding_thread_is_an_error_not_a_deadlock) {
  Lock lock;
  ASSERT_TRUE(lock.acquire());
  try {
    (void)lock.acquire();
    FAIL() << "expected mproc::UsageError";
  } catch (const mproc::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("RLock"), std::string::npos) << "suggests RLock";
  }
  lock.release();
}

TEST(Lock, releasing_without_holding_says_it_is_not_held) {
  Lock lock;
  try {
    lock.release();
    FAIL() << "expected mproc::UsageError";
  } catch (const mproc::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("not held"), std::string::npos) << e.what();
  }
}

TEST(Lock, knows_whether_the_calling_thread_holds_it) {
  Lock lock;
  EXPECT_FALSE(lock.held_by_this_thread());
  ASSERT_TRUE(lock.acquire());
  EXPECT_TRUE(lock.held_by_this_thread());
  std::thread([&] { EXPECT_FALSE(lock.held_by_this_thread()); }).join();
  lock.release();
  EXPECT_FALSE(lock.held_by_this_thread());
}

TEST(Lock, another_thread_cannot_release_it) {
  Lock lock;
  ASSERT_TRUE(lock.acquire());
  std::thread([&] { EXPECT_THROW(lock.release(), mproc::UsageError); }).join();
  lock.release();
}

TEST(RLock, can_be_acquired_recursively_and_needs_as_many_releases) {
  RLock lock;
  ASSERT_EQ(lock.acquire(), Acquired::Status::ok);
  ASSERT_EQ(lock.acquire(), Acquired::Status::ok);
  lock.release();
  Process p = start_child([&] { CHILD_CHECK(!lock.try_lock()); });  // still held once
  EXPECT_EQ(exit_code_of(p), 0);
  lock.release();
  EXPECT_THROW(lock.release(), mproc::UsageError);
  Process q = start_child([&] {
    CHILD_CHECK(lock.try_lock());
    lock.unlock();
  });
  EXPECT_EQ(exit_code_of(q), 0);
}

TEST(RLock, a_dead_owners_recursion_is_discarded) {
  RLock lock;
  Flag holding;
  Process p = start_child([&] {
    CHILD_CHECK(lock.acquire());
    CHILD_CHECK(lock.acquire());
    CHILD_CHECK(lock.acquire());
    holding.raise();
    holding.block_forever();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  p.kill();
  ASSERT_EQ(exit_code_of(p), -SIGKILL);
  ASSERT_TRUE(lock.acquire(kPatience).owner_died());
  lock.mark_consistent();
  lock.release();  // once is enough
  EXPECT_FALSE(lock.held_by_this_thread());
  Process q = start_child([&] {
    CHILD_CHECK(lock.try_lock());
    lock.unlock();
  });
  EXPECT_EQ(exit_code_of(q), 0);
}

TEST(Lock, destroying_a_lock_held_by_the_calling_thread_releases_it_for_other_processes) {
  auto lock = std::make_unique<Lock>();
  Flag destroyed;
  Process p = start_child([&] {
    CHILD_CHECK(destroyed.wait_for(kPatience));
    // The child's mapping is its own and still valid.
    Acquired got = lock->acquire(kPatience);
    CHILD_CHECK(got == Acquired::Status::ok);
    lock->release();
  });
  ASSERT_TRUE(lock->acquire());
  lock.reset();
  destroyed.raise();
  EXPECT_EQ(exit_code_of(p), 0);
}

// ---- misuse is mproc::UsageError, as error.hpp says, for every lock --------------------------------

TEST(Lock, releasing_or_repairing_without_holding_is_a_usage_error) {
  Lock lock;
  try {
    lock.release();
    FAIL() << "expected mproc::UsageError";
  } catch (const mproc::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("not held by the calling thread"), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    FAIL() << "expected mproc::UsageError, got: " << e.what();
  }
  EXPECT_THROW(lock.unlock(), mproc::UsageError);
  EXPECT_THROW(lock.mark_consistent(), mproc::UsageError);
}

TEST(Lock, acquiring_it_again_from_the_holding_thread_is_a_usage_error) {
  Lock lock;
  ASSERT_TRUE(lock.acquire());
  EXPECT_THROW((void)lock.acquire(), mproc::UsageError);
  EXPECT_THROW((void)lock.try_lock(), mproc::UsageError);
  EXPECT_TRUE(lock.held_by_this_thread()) << "the failed attempt must not drop the hold";
  lock.release();
}

TEST(RLock, releasing_from_a_thread_or_process_that_does_not_hold_it_is_a_usage_error) {
  RLock lock;
  ASSERT_TRUE(lock.acquire());
  std::thread([&] {
    EXPECT_THROW(lock.release(), mproc::UsageError);
    EXPECT_THROW(lock.mark_consistent(), mproc::UsageError);
  }).join();
  Process p = start_child([&] {
    try {
      lock.release();
    } catch (const mproc::UsageError&) {
      std::_Exit(0);
    } catch (...) {}
    std::_Exit(1);
  });
  EXPECT_EQ(exit_code_of(p), 0) << "another process's release must be a UsageError";
  EXPECT_TRUE(lock.held_by_this_thread());
  lock.release();
  EXPECT_THROW(lock.release(), mproc::UsageError);
}
