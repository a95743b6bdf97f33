// Named objects' lifetimes (docs/design/named.md): leases, tracked and persistent objects,
// sweeps of what crashed programs left, and the races between sweeps, forks, openers and closers.
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

// ---- Lifetime: leases, tracked and persistent objects, sweeps (docs/design/named.md) ----

namespace {

bool exists(const std::string& name) {
  struct stat st {};
  return ::stat(("/dev/shm/mproc." + name).c_str(), &st) == 0;
}

// A program that creates a tracked queue `name`, puts into it (and, unless `leave_messages`,
// takes what it put), and is SIGKILLed holding it.
void crash_holding_a_queue(const std::string& name, int leave_messages = 0) {
  mproc_test::Flag ready;
  mproc::Process p = start_child([&] {
    auto q = mproc::Queue<int>::create(name, 4096);
    q.put(1);
    CHILD_CHECK(q.get() == 1);
    for (int i = 0; i < leave_messages; ++i) q.put(100 + i);
    ready.raise();
    ready.block_forever();
  });
  ASSERT_TRUE(ready.wait_for(kPatience));
  p.kill();
  ASSERT_TRUE(p.join(kPatience));
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

TEST_F(Named, a_tracked_object_is_removed_when_its_last_user_closes_it) {
  mproc_test::Flag created, opened, release;
  // The child is started before the queue exists, so it holds only what it opens by name.
  mproc::Process p = start_child([&] {
    CHILD_CHECK(created.wait_for(kPatience));
    auto same = mproc::Queue<int>::open(name);
    opened.raise();
    CHILD_CHECK(release.wait_for(kPatience));
    CHILD_CHECK(same.get() == 7);
  });  // `same` is closed when the child's function returns: it is the last user
  std::optional<mproc::Queue<int>> q;
  q.emplace(mproc::Queue<int>::create(name, 4096));
  created.raise();
  ASSERT_TRUE(opened.wait_for(kPatience));
  q->put(7);
  q.reset();
  EXPECT_TRUE(exists(name)) << "removed while another process had it open";
  EXPECT_NO_THROW((void)mproc::Queue<int>::open(name));  // open and close again: still in use
  EXPECT_TRUE(exists(name));
  release.raise();
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_FALSE(exists(name)) << "the last user closed it, but the name stayed";
}

TEST_F(Named, a_forked_child_that_inherited_an_object_keeps_it_in_use) {
  std::optional<mproc::Queue<int>> q;
  q.emplace(mproc::Queue<int>::create(name, 4096));
  mproc_test::Flag release;
  mproc::Process p = start_child([&] { CHILD_CHECK(release.wait_for(kPatience)); });
  q.reset();  // the child still holds the inherited lease
  EXPECT_TRUE(exists(name));
  EXPECT_FALSE(contains(mproc::remove_stale_named_objects(name), name));
  release.raise();
  EXPECT_EQ(exit_code_of(p), 0);
  // The child ended without closing what it inherited (children end with _exit): unused now,
  // so the next sweep removes it.
  (void)mproc::remove_stale_named_objects(name);
  EXPECT_FALSE(exists(name));
}

TEST_F(Named, a_crashed_programs_tracked_objects_are_swept_by_the_next_creation) {
  crash_holding_a_queue(name);
  // The first creation in a process sweeps; a fresh child makes sure that this one does.
  mproc::Process creator = start_child([&] { auto other = mproc::Lock::create(name + ".other"); });
  EXPECT_EQ(exit_code_of(creator), 0);
  EXPECT_FALSE(exists(name)) << "the crashed program's queue was not swept";
  EXPECT_FALSE(exists(name + ".other")) << "closed by its only user, it should be gone too";
}

TEST_F(Named, creating_a_name_left_by_a_crashed_program_succeeds_and_starts_fresh) {
  crash_holding_a_queue(name);
  auto q = mproc::Queue<int>::create(name, 4096);  // not EEXIST: the old one was garbage
  EXPECT_EQ(q.qsize(), 0u);
}

// ---- No automatic removal discards a message whose put returned (docs/design/named.md) ----

TEST_F(Named, a_tracked_queue_whose_last_user_exits_keeps_its_unread_messages) {
  mproc::Process producer = start_child([&] {
    auto q = mproc::Queue<int>::create(name, 4096);  // tracked: the default
    for (int i = 0; i < 5; ++i) q.put(i);
  });  // every put returned; the program ends, closing the queue: it was the last user
  EXPECT_EQ(exit_code_of(producer), 0);
  ASSERT_TRUE(exists(name)) << "the last closer removed a queue that held 5 unread messages";
  bool listed = false;
  for (const auto& o : mproc::list_named_objects()) {
    if (o.name == name) listed = o.depth == std::optional<std::size_t>(5);
  }
  EXPECT_TRUE(listed) << "mproc ls should show its depth, 5";
  // Neither the automatic sweep (a creation, in a fresh process) nor rm --stale removes it.
  mproc::Process creator = start_child([&] { auto other = mproc::Lock::create(name + ".lock"); });
  EXPECT_EQ(exit_code_of(creator), 0);
  EXPECT_FALSE(contains(mproc::remove_stale_named_objects(name), name));
  ASSERT_TRUE(exists(name));
  {
    auto q = mproc::Queue<int>::open(name);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(q.try_get(), std::optional<int>(i));
  }  // drained, and closed by its last user: now it goes
  EXPECT_FALSE(exists(name)) << "a drained tracked queue stays after its last user closed it";
}

TEST_F(Named, a_crashed_programs_queue_with_unread_messages_stays_until_drained_or_removed) {
  crash_holding_a_queue(name, 2);
  EXPECT_FALSE(contains(mproc::remove_stale_named_objects(name), name));
  EXPECT_EQ(error_of([&] { (void)mproc::Queue<int>::create(name, 4096); }), EEXIST)
      << "a creation must not sweep a queue that holds messages";
  auto q = mproc::Queue<int>::open(name);
  EXPECT_EQ(q.try_get(), std::optional<int>(100));
  EXPECT_EQ(q.qsize(), 1u);
}

TEST_F(Named, rm_stale_discards_unread_messages_only_when_asked_and_says_how_many) {
  mproc::Process producer = start_child([&] {
    auto q = mproc::Queue<int>::create(name, 4096, 0, mproc::Lifetime::persistent);
    for (int i = 0; i < 3; ++i) q.put(i);
  });
  EXPECT_EQ(exit_code_of(producer), 0);  // its creator is dead: stale, but it holds 3 messages
  EXPECT_TRUE(mproc::remove_stale_named_objects(name, mproc::DiscardUnread::no).empty());
  ASSERT_TRUE(exists(name));
  const auto removed = mproc::remove_stale_named_objects(name, mproc::DiscardUnread::yes);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].name, name);
  EXPECT_EQ(removed[0].kind, "Queue");
  EXPECT_EQ(removed[0].unread_messages, 3u);
  EXPECT_FALSE(exists(name));
}

TEST_F(Named, no_sweep_removes_an_object_a_live_process_has_open) {
  mproc_test::Flag created, opened, release;
  mproc::Process creator = start_child([&] {
    auto q = mproc::Queue<int>::create(name, 4096);
    q.put(5);
    created.raise();
    created.block_forever();
  });
  ASSERT_TRUE(created.wait_for(kPatience));
  mproc::Process user = start_child([&] {
    auto q = mproc::Queue<int>::open(name);
    opened.raise();
    CHILD_CHECK(release.wait_for(kPatience));
    CHILD_CHECK(q.get() == 5);
  });
  ASSERT_TRUE(opened.wait_for(kPatience));
  creator.kill();  // the creator crashes; the user goes on
  ASSERT_TRUE(creator.join(kPatience));
  EXPECT_FALSE(contains(mproc::remove_stale_named_objects(name), name));
  EXPECT_TRUE(exists(name));
  EXPECT_NO_THROW((void)mproc::Queue<int>::open(name)) << "others can still find it by name";
  release.raise();
  EXPECT_EQ(exit_code_of(user), 0);
  EXPECT_FALSE(exists(name)) << "its last user closed it";
}

TEST_F(Named, a_persistent_object_outlives_its_creator_until_it_is_stale) {
  mproc_test::Flag written, read;
  mproc::Process writer = start_child([&] {
    auto shm = SharedMemory::create(name, 64, mproc::Lifetime::persistent);
    std::memcpy(shm.buf().data(), "results", 8);
    written.raise();
    CHILD_CHECK(read.wait_for(kPatience));
  });  // closes it and exits
  ASSERT_TRUE(written.wait_for(kPatience));
  {
    auto shm = SharedMemory::open(name);
    read.raise();
    ASSERT_EQ(exit_code_of(writer), 0);
    EXPECT_FALSE(contains(mproc::remove_stale_named_objects(name), name)) << "removed while open";
    auto again = SharedMemory::open(name);  // the creator is gone; the results are not
    EXPECT_STREQ(reinterpret_cast<const char*>(again.buf().data()), "results");
  }
  // Nobody has it open and its creator is dead: stale (any `rm --stale` may take it now).
  (void)mproc::remove_stale_named_objects(name);
  EXPECT_FALSE(exists(name));
}

TEST_F(Named, a_persistent_object_whose_creator_lives_is_not_stale) {
  { auto lock = mproc::Lock::create(name, {0600, mproc::Lifetime::persistent}); }
  EXPECT_TRUE(exists(name));
  EXPECT_FALSE(contains(mproc::remove_stale_named_objects(name), name));
  EXPECT_TRUE(exists(name));
  mproc::Lock::unlink(name);
}

TEST_F(Named, the_listing_shows_creator_liveness_lifetime_and_use) {
  auto lock = mproc::Lock::create(name);
  const auto all = mproc::list_named_objects();
  const auto it = std::find_if(all.begin(), all.end(), [&](const auto& o) { return o.name == name; });
  ASSERT_NE(it, all.end());
  EXPECT_EQ(it->kind, "Lock");
  EXPECT_EQ(it->creator_pid, ::getpid());
  EXPECT_EQ(it->creator_alive, std::optional<bool>(true));
  EXPECT_EQ(it->in_use, std::optional<bool>(true));
  EXPECT_FALSE(it->persistent);
}

TEST_F(Named, opening_and_closing_races_never_lose_an_object_that_is_held) {
  // One process holds the object; others open and close it as fast as they can. Every close
  // tries to remove it (it is tracked) and must find it in use; every open must find the
  // holder's object, never a fresh one.
  auto held = mproc::RawValue<int>::create(name, 42);
  std::vector<mproc::Process> churners;
  for (int i = 0; i < 3; ++i) {
    churners.push_back(start_child([&] {
      for (int round = 0; round < 300; ++round) {
        auto v = mproc::RawValue<int>::open_or_create(name, 0);
        CHILD_CHECK(*v == 42);
      }
    }));
  }
  for (auto& p : churners) EXPECT_EQ(exit_code_of(p), 0);
}

TEST_F(Named, opening_and_closing_races_with_no_holder_always_succeed) {
  // Nobody holds it: objects come and go as the last closer removes them. open_or_create must
  // always succeed (never a spurious ENOENT or a half-removed object) and leave nothing behind.
  std::vector<mproc::Process> churners;
  for (int i = 0; i < 3; ++i) {
    churners.push_back(start_child([&] {
      for (int round = 0; round < 300; ++round) {
        auto v = mproc::RawValue<int>::open_or_create(name, 7);
        CHILD_CHECK(*v == 7);
      }
    }));
  }
  for (auto& p : churners) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_FALSE(exists(name));
}

// Sweeps and forks, sweeps and other users, sweeps and creators.

namespace sweeping {

// Whether some open file description holds an exclusive lock on the object's file: what a
// sweep's or a closer's probe takes while it decides, and what makes openers wait.
bool write_locked(const std::string& name) {
  const int fd = ::open(("/dev/shm/mproc." + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock fl {};
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  const bool locked = ::fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_WRLCK;
  ::close(fd);
  return locked;
}

}  // namespace sweeping

TEST_F(Named, a_child_forked_during_a_sweep_does_not_inherit_the_sweeps_exclusive_lock) {
  // A sweep holds an exclusive OFD lock on each candidate while it decides, through a plain
  // descriptor. A child forked by another thread meanwhile (a Pool's dispatcher replacing a
  // worker; any Process started from another thread) inherits that open file description and
  // with it the lock, for as long as it lives: every later open of the object then blocks in
  // F_OFD_SETLKW. Persistent objects whose creator lives are probed by every sweep and kept.
  constexpr int kObjects = 64;
  const std::string prefix = name + "-";
  std::vector<std::string> names;
  struct Unlink {  // persistent objects: remove them however the test ends
    std::vector<std::string>& names;
    ~Unlink() {
      for (const auto& n : names) ::shm_unlink(("/mproc." + n).c_str());
    }
  } unlink_at_end{names};
  for (int i = 0; i < kObjects; ++i) {
    names.push_back(prefix + std::to_string(i));
    (void)SharedMemory::create(names.back(), 64, mproc::Lifetime::persistent);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> sweeps{0};
  std::thread sweeper([&] {
    while (!stop.load()) {
      (void)mproc::remove_stale_named_objects(prefix);  // keeps them all: their creator lives
      sweeps.fetch_add(1);
    }
  });
  struct JoinAtEnd {  // an ASSERT that returns early must not leave the thread running
    std::atomic<bool>& stop;
    std::thread& thread;
    ~JoinAtEnd() {
      stop.store(true);
      if (thread.joinable()) thread.join();
    }
  } join_at_end{stop, sweeper};
  // The child is forked while the sweeper allocates; it must not allocate itself (GCC 12's
  // AddressSanitizer allocator is not fork-safe: a child forked while another thread holds its
  // lock deadlocks on its first malloc). So the paths are made here.
  std::vector<std::string> paths;
  for (const auto& n : names) paths.push_back("/dev/shm/mproc." + n);
  while (sweeps.load() == 0) std::this_thread::yield();
  std::optional<mproc::Process> holder;
  mproc_test::Flag release;
  Shared<int> inherited_index;
  for (int attempt = 0; attempt < 200 && !holder; ++attempt) {
    *inherited_index = -1;
    mproc_test::Flag checked;
    // The child looks at what it inherited: no descriptor of these objects should be among them
    // (the parent closed every handle it had on them).
    mproc::Process child = start_child([&] {
      for (int fd = 0; fd < 1024; ++fd) {
        char link[64], target[512];
        std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        const ssize_t n = ::readlink(link, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        for (int i = 0; i < kObjects; ++i) {
          if (std::strcmp(target, paths[static_cast<std::size_t>(i)].c_str()) == 0) *inherited_index = i;
        }
      }
      checked.raise();
      if (*inherited_index >= 0) CHILD_CHECK(release.wait_for(kPatience));  // keep it, to show the cost
    });
    ASSERT_TRUE(checked.wait_for(kPatience));
    if (*inherited_index >= 0) {
      holder.emplace(std::move(child));
    } else {
      EXPECT_EQ(exit_code_of(child), 0);
    }
  }
  stop.store(true);
  sweeper.join();
  if (holder) {
    const std::string stuck = names[static_cast<std::size_t>(*inherited_index)];
    ADD_FAILURE() << "a child forked during a sweep inherited the sweep's probe of " << stuck;
    // What it costs: while that child lives, an open by name waits (F_OFD_SETLKW) behind the
    // exclusive lock it inherited.
    mproc_test::Flag opened;
    mproc::Process opener = start_child([&] {
      auto shm = SharedMemory::open(stuck);
      opened.raise();
    });
    EXPECT_TRUE(opened.wait_for(std::chrono::seconds(2))) << "opening " << stuck << " blocked";
    release.raise();
    EXPECT_EQ(exit_code_of(*holder), 0);
    EXPECT_EQ(exit_code_of(opener), 0);
  }
}

TEST_F(Named, rm_stale_removes_only_this_users_objects_even_as_root) {
  // inspect.hpp: "Removes this user's stale objects"; `mproc rm --stale`: "every object of
  // yours"; named.md: "A sweep only sees this user's objects". As root (a cron job, a CI
  // runner) the sweep can open everyone's files, and removes other users' persistent results.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  mproc::Process other = start_child([&] {
    CHILD_CHECK(::setgid(65534) == 0 && ::setuid(65534) == 0);  // nobody
    auto shm = SharedMemory::create(name, 64, {0644, mproc::Lifetime::persistent});
    std::memcpy(shm.buf().data(), "nobody's results", 17);
  });  // closes it and exits: its creator is dead, as for any results written for later
  ASSERT_EQ(exit_code_of(other), 0);
  ASSERT_TRUE(exists(name));
  const auto removed = mproc::remove_stale_named_objects(name);
  EXPECT_FALSE(contains(removed, name)) << "root's rm --stale removed user nobody's persistent object";
  EXPECT_TRUE(exists(name));
}

TEST_F(Named, create_over_garbage_is_not_refused_because_a_sweep_is_looking_at_it) {
  // named.md: "If create meets a name whose object is tracked and unused (garbage left by a
  // crash), it removes that and links once more." If another process's sweep (or `mproc rm
  // --stale`) holds its probe's exclusive lock on that garbage at that moment, create gives up
  // with EEXIST, although the garbage is about to go. Freeze that moment: a child takes the
  // lock exactly as remove_if_unused does, and lets go (it would unlink; here the test does).
  mproc_test::Flag ready;
  mproc::Process crashed = start_child([&] {
    auto q = mproc::Queue<int>::create(name, 4096);
    ready.raise();
    ready.block_forever();
  });
  ASSERT_TRUE(ready.wait_for(kPatience));
  crashed.kill();
  ASSERT_TRUE(crashed.join(kPatience));
  ASSERT_TRUE(exists(name));
  mproc_test::Flag locked, release;
  mproc::Process sweeper = start_child([&] {
    const int probe =
        ::open(("/dev/shm/mproc." + name).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    CHILD_CHECK(probe >= 0);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    CHILD_CHECK(::fcntl(probe, F_OFD_SETLK, &fl) == 0);
    locked.raise();
    CHILD_CHECK(release.wait_for(kPatience));
    CHILD_CHECK(::unlink(("/dev/shm/mproc." + name).c_str()) == 0);  // what the sweep decides
  });
  ASSERT_TRUE(locked.wait_for(kPatience));
  std::thread let_go([&] {
    // The sweep's decision takes microseconds; give create a moment to meet it, then finish it.
    (void)ready.wait_for(std::chrono::milliseconds(200));
    release.raise();
  });
  EXPECT_EQ(error_of([&] { (void)mproc::Queue<int>::create(name, 4096); }), 0)
      << "create refused a name whose garbage a sweep was removing: " << last_message;
  let_go.join();
  EXPECT_EQ(exit_code_of(sweeper), 0);
}

TEST_F(Named, a_name_moved_aside_by_a_remover_that_died_is_cleared_by_the_next_sweep) {
  // A remover renames a name to /dev/shm/.mproc-rm.<pid>.<n> before it unlinks it; killed in
  // between, it leaves that hidden file. Stand in for it with a child that has ended.
  mproc::Process gone = start_child([] {});
  const pid_t dead = gone.pid().value_or(0);
  ASSERT_EQ(exit_code_of(gone), 0);
  // (".<name>" at the end, as removers write it: the name of the object moved aside.)
  const std::string aside = "/dev/shm/.mproc-rm." + std::to_string(dead) + ".0." + name;
  const int fd = ::open(aside.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  (void)mproc::remove_stale_named_objects(name);  // a sweep of any prefix looks at them
  struct stat st {};
  const bool left = ::stat(aside.c_str(), &st) == 0;
  if (left) ::unlink(aside.c_str());
  EXPECT_FALSE(left) << aside << " was not cleared";
}
