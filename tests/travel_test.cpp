// Anonymous objects rebuilt around descriptors that a binding carried by its own means (the
// Python module pickles them with multiprocessing's DupFd): Travel<T>'s encoding, then
// AdoptedDescriptors / adopt_travelled in place of a spawned child's received descriptors
// (docs/design/start-methods.md, "Another carrier"). Spawned children: start_method_objects_test.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/start_method.hpp"

using namespace std::chrono_literals;
using mproc::Event;
using mproc::Lock;

namespace {

// Copies of `fds`, as a process that received them by SCM_RIGHTS or inheritance would hold.
std::vector<int> carried_copies(const std::vector<int>& fds) {
  std::vector<int> copies;
  for (const int fd : fds) {
    const int c = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    EXPECT_GE(c, 0) << std::strerror(errno);
    copies.push_back(c);
  }
  return copies;
}

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

TEST(AdoptedDescriptors, rebuild_an_event_and_a_pipe_end_around_carried_descriptors) {
  Event event;
  std::vector<int> fds;
  const std::string bytes = mproc::detail::Travel<Event>::encode(event, fds);
  ASSERT_EQ(fds.size(), 1U);
  Event again = mproc::detail::adopt_travelled<Event>(bytes, carried_copies(fds));
  again.set();
  EXPECT_TRUE(event.is_set()) << "the adopted Event is not the same memory";

  auto [mine, theirs] = mproc::Pipe();
  fds.clear();
  const std::string end = mproc::detail::Travel<mproc::Connection>::encode(theirs, fds);
  mproc::Connection carried = mproc::detail::adopt_travelled<mproc::Connection>(end, carried_copies(fds));
  mine.send(42);
  EXPECT_EQ(carried.recv<int>(), 42);
  carried.send(7);
  EXPECT_EQ(mine.recv<int>(), 7);
  theirs.close();
  carried.close();  // the last copy of the end: the peer sees end of stream
  EXPECT_FALSE(mine.recv<int>().has_value());
}

TEST(AdoptedDescriptors, a_memory_of_another_kind_is_refused_and_every_descriptor_closed) {
  Event event;
  std::vector<int> fds;
  const std::string bytes = mproc::detail::Travel<Event>::encode(event, fds);
  std::vector<int> copies = carried_copies(fds);
  const int extra = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(extra, 0);
  copies.push_back(extra);  // sent, but named by no part of the object
  const std::vector<int> sent = copies;
  try {
    (void)mproc::detail::adopt_travelled<Lock>(bytes, std::move(copies));
    ADD_FAILURE() << "an Event's memory was taken for a Lock";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EINVAL) << e.what();
  }
  for (const int fd : sent) EXPECT_FALSE(is_open(fd)) << "descriptor " << fd << " left open";

  copies = carried_copies(fds);
  const int copy = copies.front();
  EXPECT_THROW((void)mproc::detail::adopt_travelled<mproc::Connection>(bytes, std::move(copies)),
               mproc::Error);  // an Event's one word is not a Connection's encoding
  EXPECT_FALSE(is_open(copy));
}

TEST(AdoptedDescriptors, a_nested_table_gives_back_the_one_it_stood_in_for) {
  Event outer_event, inner_event;
  std::vector<int> outer_fds, inner_fds;
  const std::string outer = mproc::detail::Travel<Event>::encode(outer_event, outer_fds);
  const std::string inner = mproc::detail::Travel<Event>::encode(inner_event, inner_fds);
  mproc::detail::AdoptedDescriptors adopted(carried_copies(outer_fds));
  {
    Event again = mproc::detail::adopt_travelled<Event>(inner, carried_copies(inner_fds));
    again.set();
  }
  Event outer_again = mproc::detail::Travel<Event>::decode(outer);  // the outer table is back
  outer_again.set();
  EXPECT_TRUE(outer_event.is_set());
  EXPECT_TRUE(inner_event.is_set());
}

TEST(AdoptedDescriptors, a_condition_over_a_lock_of_the_callers_travels_without_its_lock) {
  Lock lock;
  mproc::Condition cond(lock);
  std::vector<int> fds;
  const std::string bytes = mproc::detail::encode_condition_block(cond, fds);
  ASSERT_EQ(fds.size(), 1U);
  std::unique_ptr<mproc::Condition> again;
  {
    mproc::detail::AdoptedDescriptors adopted(carried_copies(fds));
    again = mproc::detail::decode_condition_over(bytes, lock);
  }
  EXPECT_EQ(&again->lock(), static_cast<mproc::detail::RobustLock*>(&lock));
  {
    std::scoped_lock hold{lock};
    EXPECT_TRUE(again->wait_for(1ms).timed_out());  // the block is usable over the lock
  }

  mproc::Condition own;  // its RLock of its own would be left behind
  fds.clear();
  EXPECT_THROW((void)mproc::detail::encode_condition_block(own, fds), mproc::UsageError);

  Event event;  // another kind's memory
  fds.clear();
  const std::string other = mproc::detail::Travel<Event>::encode(event, fds);
  mproc::detail::AdoptedDescriptors adopted(carried_copies(fds));
  EXPECT_THROW((void)mproc::detail::decode_condition_over(other, lock), mproc::Error);
}

}  // namespace
