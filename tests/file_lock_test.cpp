// What is particular to FileLock (the lock contract it shares with Lock and RLock is in
// lock_test.cpp): shared holders, no inheritance across fork, owner death, and the lock file
// itself (other data, permissions, symbolic links, errors that name the path).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "mproc/file_lock.hpp"
#include "mproc/process.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Acquired;
using mproc::FileLock;
using mproc::Process;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::Shared;
using mproc_test::start_child;
using mproc_test::TempDir;

TEST(FileLock, shared_holders_coexist_and_exclude_an_exclusive_one) {
  TempDir dir;
  const std::string path = (dir / "data.lock").string();
  FileLock reader(path);
  ASSERT_TRUE(reader.acquire_shared());
  Process p = start_child([&] {
    FileLock other_reader(path), writer(path);
    CHILD_CHECK(other_reader.try_lock_shared());
    CHILD_CHECK(!writer.try_lock());
    other_reader.unlock_shared();
  });
  EXPECT_EQ(exit_code_of(p), 0);
  reader.release();
  Process q = start_child([&] {
    FileLock writer(path);
    CHILD_CHECK(writer.try_lock());
    CHILD_CHECK(!FileLock(path).try_lock_shared());
    writer.unlock();
  });
  EXPECT_EQ(exit_code_of(q), 0);
}

TEST(FileLock, std_shared_lock_works) {
  TempDir dir;
  FileLock a((dir / "x.lock").string()), b((dir / "x.lock").string());
  std::shared_lock ra{a};
  std::shared_lock rb{b, std::try_to_lock};
  EXPECT_TRUE(rb.owns_lock());
}

TEST(FileLock, one_object_cannot_be_acquired_twice) {
  TempDir dir;
  FileLock lock((dir / "x.lock").string());
  ASSERT_TRUE(lock.acquire());
  EXPECT_THROW((void)lock.acquire(), mproc::UsageError);
  EXPECT_THROW((void)lock.acquire_shared(), mproc::UsageError);
  lock.release();
  EXPECT_THROW(lock.release(), mproc::UsageError);
}

TEST(FileLock, a_child_does_not_inherit_the_parents_hold) {
  TempDir dir;
  FileLock lock((dir / "x.lock").string());
  ASSERT_TRUE(lock.acquire());
  Flag checked, released;
  Process p = start_child([&] {
    CHILD_CHECK(!lock.held());      // the parent's hold is not the child's
    CHILD_CHECK(!lock.try_lock());  // and it excludes the child
    checked.raise();
    CHILD_CHECK(released.wait_for(kPatience));
    CHILD_CHECK(lock.try_lock_for(kPatience));
    lock.unlock();
  });
  ASSERT_TRUE(checked.wait_for(kPatience));
  lock.release();
  released.raise();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(FileLock, a_holder_killed_after_forking_does_not_keep_the_lock_through_its_child) {
  // The middle process holds the lock and has a child that inherited the lock's descriptor.
  // When the middle process dies the lock must be free, even though the grandchild lives on.
  TempDir dir;
  const std::string path = (dir / "x.lock").string();
  Flag holding, release_grandchild;
  Process middle = start_child([&] {
    FileLock lock(path);
    CHILD_CHECK(lock.acquire());
    Process grandchild([&] { CHILD_CHECK(release_grandchild.wait_for(kPatience)); });
    grandchild.set_daemon(false);
    grandchild.start();
    holding.send(static_cast<int>(*grandchild.pid()));
    holding.block_forever();
  });
  int grandchild = 0;
  ASSERT_TRUE(holding.receive(grandchild, kPatience));
  middle.kill();
  ASSERT_EQ(exit_code_of(middle), -SIGKILL);
  FileLock lock(path);
  Acquired got = lock.acquire(kPatience);
  EXPECT_TRUE(got) << "the grandchild's inherited descriptor kept the lock held";
  EXPECT_TRUE(got.owner_died());
  lock.mark_consistent();
  lock.release();
  release_grandchild.raise();
  // The grandchild was orphaned; it is not our child, so wait for it through a pidfd.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, grandchild, 0));
  if (pidfd >= 0) {
    pollfd pfd{pidfd, POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 20'000), 1);
    ::close(pidfd);
  }
}

TEST(FileLock, a_dead_shared_holder_is_not_an_owner_death) {
  TempDir dir;
  const std::string path = (dir / "x.lock").string();
  Flag holding;
  Process p = start_child([&] {
    FileLock lock(path);
    CHILD_CHECK(lock.acquire_shared());
    holding.raise();
    holding.block_forever();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  p.kill();
  ASSERT_EQ(exit_code_of(p), -SIGKILL);
  FileLock lock(path);
  EXPECT_EQ(lock.acquire(kPatience), Acquired::Status::ok);
  lock.release();
}

TEST(FileLock, refuses_a_file_holding_other_data_and_leaves_it_untouched) {
  TempDir dir;
  const auto path = dir / "tickets.json";
  std::ofstream(path) << R"({"remaining": 3})";
  try {
    FileLock lock(path.string());
    FAIL() << "expected mproc::Error";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EINVAL);
    EXPECT_NE(std::string(e.what()).find("tickets.json.lock"), std::string::npos) << e.what();
  }
  std::ifstream in(path);
  std::string contents((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(contents, R"({"remaining": 3})");
}

TEST(FileLock, creates_the_lock_file_owner_only_by_default) {
  TempDir dir;
  const auto old_umask = ::umask(022);
  FileLock a((dir / "private.lock").string());
  FileLock b((dir / "shared.lock").string(), 0644);
  ::umask(old_umask);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "private.lock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir / "shared.lock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST(FileLock, errors_name_the_path) {
  try {
    FileLock lock("/nonexistent-mproc-dir/x.lock");
    FAIL() << "expected mproc::Error";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("/nonexistent-mproc-dir/x.lock"), std::string::npos);
  }
}

TEST(FileLock, does_not_follow_a_symbolic_link) {
  TempDir dir;
  std::ofstream(dir / "victim") << "precious";
  std::filesystem::create_symlink(dir / "victim", dir / "planted.lock");
  EXPECT_THROW(FileLock((dir / "planted.lock").string()), mproc::Error);
}
