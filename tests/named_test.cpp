// Named shared memory: names, creation races, header checks against foreign or truncated
// segments, permissions (as another user), and no leftovers in /dev/shm.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/event.hpp"
#include "mproc/inspect.hpp"
#include "mproc/lock.hpp"
#include "mproc/queue.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/value.hpp"
#include "support/named_fixture.hpp"
#include "support/test_support.hpp"

using mproc::SharedMemory;
using mproc_test::exit_code_of;
using mproc_test::kPatience;
using mproc_test::Named;
using mproc_test::Shared;
using mproc_test::start_child;

TEST_F(Named, a_block_created_here_is_opened_by_name_in_another_process) {
  SharedMemory shm = SharedMemory::create(name, 4096);
  EXPECT_TRUE(shm.created());
  EXPECT_EQ(shm.size(), 4096u);
  mproc::Process p = start_child([&] {
    SharedMemory same = SharedMemory::open(name);  // by name, not through inheritance
    CHILD_CHECK(same.size() == 4096);
    std::memcpy(same.buf().data(), "hello", 6);
  });
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_STREQ(reinterpret_cast<const char*>(shm.buf().data()), "hello");
  shm.unlink();
  EXPECT_EQ(error_of([&] { (void)SharedMemory::open(name); }), ENOENT);
  EXPECT_NE(last_message.find(name), std::string::npos) << last_message;
}

TEST_F(Named, creating_an_existing_name_fails_and_open_or_create_opens_it) {
  SharedMemory first = SharedMemory::create(name, 100);
  EXPECT_EQ(error_of([&] { (void)SharedMemory::create(name, 100); }), EEXIST);
  SharedMemory second = SharedMemory::open_or_create(name, 100);
  EXPECT_FALSE(second.created());
  EXPECT_EQ(error_of([&] { (void)SharedMemory::open_or_create(name, 200); }), EINVAL);
  EXPECT_NE(last_message.find("100 bytes"), std::string::npos) << last_message;
}

TEST_F(Named, many_processes_open_or_create_at_once_and_exactly_one_creates) {
  struct Tally {
    std::atomic<int> ready{0}, created{0}, opened{0}, attached{0};
  };
  Shared<Tally> tally;
  std::vector<mproc::Process> ps;
  for (int i = 0; i < 8; ++i) {
    ps.push_back(start_child([&] {
      tally->ready.fetch_add(1);
      while (tally->ready.load() < 8) {}
      SharedMemory shm = SharedMemory::open_or_create(name, 4096);
      (shm.created() ? tally->created : tally->opened).fetch_add(1);
      // Keep it open until all have attached: a tracked object nobody holds is removed.
      tally->attached.fetch_add(1);
      while (tally->attached.load() < 8) {}
    }));
  }
  for (auto& p : ps) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(tally->created.load(), 1);
  EXPECT_EQ(tally->opened.load(), 7);
}

TEST_F(Named, invalid_names_are_refused_with_the_rule) {
  for (const char* bad : {"", "a/b", "..", ".hidden", "sp ace", "x\n"}) {
    EXPECT_EQ(error_of([&] { (void)SharedMemory::create(bad, 10); }), EINVAL) << bad;
  }
  EXPECT_NE(last_message.find("letters, digits"), std::string::npos) << last_message;
  EXPECT_EQ(error_of([&] { (void)SharedMemory::create(std::string(201, 'a'), 10); }), EINVAL);
}

TEST_F(Named, a_foreign_or_truncated_segment_is_a_clear_error_not_a_crash) {
  const std::string path = "/mproc." + name;
  int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 10), 0);  // smaller than a header
  EXPECT_EQ(error_of([&] { (void)SharedMemory::open(name); }), EINVAL);
  EXPECT_NE(last_message.find("too small"), std::string::npos) << last_message;
  ASSERT_EQ(::ftruncate(fd, 4096), 0);  // big enough, but zeros: no mproc header
  const char junk[] = "definitely not an mproc header";
  ASSERT_EQ(::pwrite(fd, junk, sizeof junk, 0), static_cast<ssize_t>(sizeof junk));
  EXPECT_EQ(error_of([&] { (void)SharedMemory::open(name); }), EINVAL);
  EXPECT_NE(last_message.find("not an mproc object"), std::string::npos) << last_message;
  ::close(fd);
}

TEST_F(Named, a_header_claiming_more_than_the_segment_holds_is_reported_as_truncated) {
  { SharedMemory shm = SharedMemory::create(name, 8192, mproc::Lifetime::persistent); }
  const int fd = ::shm_open(("/mproc." + name).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1024), 0);
  ::close(fd);
  EXPECT_EQ(error_of([&] { (void)SharedMemory::open(name); }), EINVAL);
  EXPECT_NE(last_message.find("truncated"), std::string::npos) << last_message;
}

TEST_F(Named, blocks_are_owner_only_by_default_and_another_user_cannot_open_them) {
  const mode_t old = ::umask(0);
  SharedMemory shm = SharedMemory::create(name, 64);
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/mproc." + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  mproc::Process p = start_child([&] {
    CHILD_CHECK(::setgid(65534) == 0 && ::setuid(65534) == 0);  // nobody
    try {
      (void)SharedMemory::open(name);
    } catch (const mproc::Error& e) {
      CHILD_CHECK(e.code().value() == EACCES);
      std::exit(0);
    }
    std::exit(1);
  });
  EXPECT_EQ(exit_code_of(p), 0) << "another user opened an owner-only block";
}

TEST_F(Named, a_lock_opened_by_name_excludes_and_reports_a_dead_owner) {
  mproc::Lock lock = mproc::Lock::create(name);
  mproc_test::Flag holding;
  mproc::Process p = start_child([&] {
    mproc::Lock same = mproc::Lock::open(name);  // a handle of its own, found by name
    CHILD_CHECK(same.acquire());
    holding.raise();
    holding.block_forever();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  EXPECT_FALSE(lock.try_lock_for(std::chrono::milliseconds(50)));
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  mproc::Acquired got = lock.acquire(kPatience);
  EXPECT_TRUE(got.owner_died());
  lock.mark_consistent();
  lock.release();
  mproc::Lock::unlink(name);
}

TEST_F(Named, opening_a_name_that_holds_another_kind_says_what_it_found) {
  SharedMemory shm = SharedMemory::create(name, 128);
  EXPECT_EQ(error_of([&] { (void)mproc::Lock::open(name); }), EINVAL);
  EXPECT_NE(last_message.find("it is a SharedMemory, not a Lock"), std::string::npos) << last_message;
  EXPECT_EQ(error_of([&] { (void)mproc::RLock::open_or_create(name); }), EINVAL);
}

TEST_F(Named, a_queue_opened_by_name_carries_messages_between_separate_handles) {
  auto q = mproc::Queue<std::string>::create(name, 64 * 1024);
  mproc::Process producer = start_child([&] {
    auto same = mproc::Queue<std::string>::open(name);
    CHILD_CHECK(same.capacity_bytes() == 64 * 1024);
    same.put("by name");
  });
  EXPECT_EQ(exit_code_of(producer), 0);
  EXPECT_EQ(q.get_for(kPatience), "by name");
  q.put("reply");
  mproc::Process consumer = start_child([&] {
    auto same = mproc::Queue<std::string>::open(name);
    CHILD_CHECK(same.get_for(kPatience) == std::optional<std::string>("reply"));
  });
  EXPECT_EQ(exit_code_of(consumer), 0);
  EXPECT_THROW((void)q.fileno(), mproc::UsageError) << "the eventfd is not shared by name";
  mproc::Queue<std::string>::unlink(name);
}

TEST_F(Named, a_queue_of_another_element_type_is_refused) {
  auto q = mproc::Queue<int>::create(name);
  EXPECT_EQ(error_of([&] { (void)mproc::Queue<std::string>::open(name); }), EINVAL);
  // Both element types are named: what the queue holds, and what this program expects.
  EXPECT_NE(last_message.find("its elements are int; this program expects std::"), std::string::npos)
      << last_message;
  EXPECT_NE(last_message.find("string"), std::string::npos) << last_message;
  // ... also to a program that never used the queue's type itself (it is recorded by name).
  mproc::Process other = start_child([&] {
    try {
      (void)mproc::Queue<double>::open(name);
    } catch (const mproc::Error& e) {
      CHILD_CHECK(std::string(e.what()).find("its elements are int; this program expects double") !=
                  std::string::npos);
      return;
    }
    CHILD_CHECK(false);
  });
  EXPECT_EQ(exit_code_of(other), 0);
  EXPECT_EQ(error_of([&] { (void)mproc::JoinableQueue<int>::open(name); }), EINVAL);
  EXPECT_NE(last_message.find("it is a Queue, not a JoinableQueue"), std::string::npos) << last_message;
}

TEST_F(Named, a_semaphore_and_an_event_work_by_name) {
  auto sem = mproc::Semaphore::create(name, 0);
  const std::string event_name = name + ".event";
  auto ready = mproc::Event::create(event_name);
  mproc::Process p = start_child([&] {
    auto s = mproc::Semaphore::open(name);
    auto e = mproc::Event::open(event_name);
    s.release();
    e.set();
  });
  EXPECT_TRUE(sem.acquire(kPatience));
  EXPECT_TRUE(ready.wait(kPatience));
  EXPECT_EQ(exit_code_of(p), 0);
  auto again = mproc::Semaphore::open_or_create(name, 5);  // exists: the 5 is not used
  EXPECT_EQ(again.get_value(), 0u);
  mproc::Event::unlink(event_name);
  mproc::Semaphore::unlink(name);
}

TEST_F(Named, a_value_and_an_array_are_shared_by_name_with_their_locks) {
  auto counter = mproc::Value<long>::create(name, 10);
  const std::string array_name = name + ".event";  // a second name TearDown also removes
  auto samples = mproc::Array<double>::create(array_name, 8, 0.5);
  mproc::Process p = start_child([&] {
    auto c = mproc::Value<long>::open(name);
    auto a = mproc::Array<double>::open(array_name);
    CHILD_CHECK(a.size() == 8 && a.get(7) == 0.5);
    for (int i = 0; i < 1000; ++i) c.update([](long& v) { ++v; });
    a.set(3, 2.5);
  });
  for (int i = 0; i < 1000; ++i) counter.update([](long& v) { ++v; });
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(counter.get(), 2010) << "the named lock serialised both processes' updates";
  EXPECT_EQ(samples.get(3), 2.5);
  EXPECT_EQ(error_of([&] { (void)mproc::Value<int>::open(name); }), EINVAL);
  EXPECT_NE(last_message.find("its elements are long; this program expects int"), std::string::npos)
      << last_message;
  mproc::Value<long>::unlink(name);
  mproc::Array<double>::unlink(array_name);
}

TEST_F(Named, a_condition_and_a_barrier_work_by_name) {
  auto cv = mproc::Condition::create(name);
  const std::string barrier_name = name + ".event";
  auto barrier = mproc::Barrier::create(barrier_name, 2, {}, kPatience);
  mproc_test::Shared<int> flag;
  mproc::Process p = start_child([&] {
    auto c = mproc::Condition::open(name);
    auto b = mproc::Barrier::open(barrier_name, {}, kPatience);
    (void)b.wait();  // both sides arrived
    std::scoped_lock hold{c.lock()};
    *flag = 1;
    c.notify_all();
  });
  (void)barrier.wait();
  {
    std::unique_lock hold{cv.lock()};
    EXPECT_TRUE(cv.wait_for([&] { return *flag == 1; }, kPatience));
  }
  EXPECT_EQ(exit_code_of(p), 0);
  mproc::Condition::unlink(name);
  mproc::Barrier::unlink(barrier_name);
}

// ---- messages name the object; sizes -----------------------------------------------------------

TEST_F(Named, a_named_value_s_owner_death_names_the_value) {
  auto v = mproc::Value<int>::create(name, 1);
  mproc_test::Flag holding;
  mproc::Process p = start_child([&] {
    auto same = mproc::Value<int>::open(name);
    CHILD_CHECK(same.get_lock().acquire());
    holding.raise();
    holding.block_forever();
  });
  ASSERT_TRUE(holding.wait_for(kPatience));
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  try {
    (void)v.get();
    FAIL() << "expected mproc::OwnerDied";
  } catch (const mproc::OwnerDied& e) {
    EXPECT_NE(std::string(e.what()).find("Value \"" + name + "\""), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("RLock"), std::string::npos) << e.what();
  }
  mproc::Value<int>::unlink(name);
}

TEST_F(Named, a_named_lock_s_misuse_message_names_it) {
  mproc::Lock lock = mproc::Lock::create(name);
  try {
    lock.release();
    FAIL() << "expected mproc::UsageError";
  } catch (const mproc::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("Lock \"" + name + "\""), std::string::npos) << e.what();
  }
  mproc::Lock::unlink(name);
}

TEST_F(Named, shared_memory_of_zero_bytes_is_refused_and_leaves_nothing) {
  EXPECT_THROW((void)SharedMemory::create(name, 0), mproc::UsageError);
  EXPECT_THROW((void)SharedMemory::open_or_create(name, 0), mproc::UsageError);
  EXPECT_EQ(error_of([&] { (void)SharedMemory::open(name); }), ENOENT) << "nothing was created";
  try {
    (void)SharedMemory::create(name, 0);
  } catch (const mproc::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("size"), std::string::npos) << e.what();
  }
}

TEST_F(Named, shared_memory_too_large_to_map_is_refused_not_wrapped_round) {
  const std::size_t huge = std::numeric_limits<std::size_t>::max() - 8;
  EXPECT_NE(error_of([&] { (void)SharedMemory::create(name, huge); }), 0);
  EXPECT_EQ(error_of([&] { (void)SharedMemory::open(name); }), ENOENT) << "nothing was created";
}
