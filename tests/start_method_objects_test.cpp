// The Lock, Queue and Pipe contracts across processes under every start method (fork, spawn,
// forkserver): one test body each, parameterised as start_method_test.cpp is. The children are
// registered entry points; they reach the objects by name (ByName<T>), which works under all
// three methods (docs/design/start-methods.md). Within one process, and the fork-only spellings
// (lambdas over anonymous objects), the contracts are tested in lock_test, queue_test and
// pipe_test.
//
// A child cannot use gtest's assertions: it reports a broken expectation by its exit code (each
// child documents its codes), which the test checks.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sched.h>

#include <fcntl.h>
#include <poll.h>

#include <csignal>
#include <memory>
#include <cstring>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/start_method.hpp"
#include "mproc/value.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::ByName;
using mproc::Event;
using mproc::Lock;
using mproc::Process;
using mproc::StartMethod;
using mproc_test::exit_code_of;
using mproc_test::kPatience;
using mproc_test::ScratchName;
using Ints = mproc::Queue<int>;
using Counter = mproc::RawValue<long>;

// ---- the children ---------------------------------------------------------------------------

namespace {

// Increments the counter `rounds` times under the lock, as a read, a yield and a write: without
// mutual exclusion increments are lost and the total comes out short.
void count_under_lock(ByName<Lock> lock, ByName<Counter> counter, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    std::scoped_lock hold{*lock};
    const long seen = **counter;
    sched_yield();
    **counter = seen + 1;
  }
}

// Takes the lock, says so, and dies by SIGKILL holding it. Exit 2: the lock was reported torn.
void hold_lock_and_die(ByName<Lock> lock, ByName<Event> held) {
  const mproc::Acquired a = lock->acquire();
  if (a.status() != mproc::Acquired::Status::ok) mproc::exit(2);
  held->set();
  ::raise(SIGKILL);
}

// Holds the lock until `release` is set. Exit 2: the lock was not acquired cleanly.
void hold_lock_until(ByName<Lock> lock, ByName<Event> held, ByName<Event> release) {
  const mproc::Acquired a = lock->acquire();
  if (a.status() != mproc::Acquired::Status::ok) mproc::exit(2);
  held->set();
  release->wait();
  lock->release();
}

// Puts first, first + 1, ..., first + count - 1.
void produce(ByName<Ints> q, int first, int count) {
  for (int i = 0; i < count; ++i) q->put(first + i);
}

// Forwards every message of `in` to `out` until `in` is closed and drained.
void consume(ByName<Ints> in, ByName<Ints> out) {
  while (const auto v = in->get()) out->put(*v);
}

// Blocks in get() on an empty queue until the parent closes it. Exit 0: get() returned empty
// and a put() afterwards threw Closed; 3: get() returned a message; 4: put() did not throw.
void get_until_closed(ByName<Ints> q) {
  if (q->get()) mproc::exit(3);
  try {
    q->put(1);
  } catch (const mproc::Closed&) {
    return;
  }
  mproc::exit(4);
}

// Exit 0: get_for on the empty queue and put_for on the full one both timed out, and neither
// took or left a message; 3: get_for returned a message; 4: put_for succeeded; 5: the queue was
// found closed.
void time_out_on_both_ends(ByName<Ints> empty, ByName<Ints> full) {
  if (empty->get_for(20ms)) mproc::exit(3);
  if (empty->closed()) mproc::exit(5);
  if (full->put_for(7, 20ms)) mproc::exit(4);
}

// ---- children given anonymous objects (sent as descriptors under spawn and forkserver) ----------

void count_under_anonymous_lock(Lock& lock, ByName<Counter> counter, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    std::scoped_lock hold{lock};
    const long seen = **counter;
    sched_yield();
    **counter = seen + 1;
  }
}

// Exit 2: the lock was reported torn.
void hold_anonymous_lock_and_die(Lock& lock, Event& held) {
  const mproc::Acquired a = lock.acquire();
  if (a.status() != mproc::Acquired::Status::ok) mproc::exit(2);
  held.set();
  ::raise(SIGKILL);
}

void release_once(mproc::Semaphore& semaphore) {
  semaphore.release();
}

// Exit 0: the bound held here too (a second release beyond it refused). 2: no count to take;
// 3: the over-release was accepted.
void release_beyond_the_bound(mproc::BoundedSemaphore& semaphore) {
  if (!semaphore.acquire_for(mproc_test::kPatience)) mproc::exit(2);
  semaphore.release();
  try {
    semaphore.release();
  } catch (const mproc::UsageError&) {
    mproc::exit(0);
  }
  mproc::exit(3);
}

// Exits with its arrival index at the barrier (100: the barrier broke or timed out).
void arrive_at_barrier(mproc::Barrier& barrier) {
  try {
    mproc::exit(static_cast<int>(barrier.wait_for(mproc_test::kPatience)));
  } catch (const mproc::Error&) {
    mproc::exit(100);
  }
}

// Under the condition's lock: sets the flag to 1 and notifies, then waits for the parent's 2.
// Exit 2: a wait timed out (every wake must be a notify's: the parent holds the lock until it
// waits, so neither notify can come before the other side waits).
void answer_on_condition(mproc::Condition& cond, Counter& flag) {
  std::unique_lock hold{cond.lock()};
  *flag = 1;
  cond.notify_all();
  while (*flag != 2) {
    if (cond.wait_for(mproc_test::kPatience).timed_out()) mproc::exit(2);
  }
}

// Sends `n` numbers on a SimpleQueue, then its own pid.
void put_on_simple_queue(mproc::SimpleQueue<int>& q, int n) {
  for (int i = 0; i < n; ++i) q.put(i);
  q.put(static_cast<int>(::getpid()));
}

// The same RLock twice: one object, so acquiring through either nests. Exit 2: it did not.
void nest_one_rlock_twice(mproc::RLock& a, mproc::RLock& b, Event& done) {
  std::scoped_lock outer{a};
  std::scoped_lock inner{b};
  done.set();
}

// Answers each int with its double until it receives -1. Exit 3: end of stream came first.
void double_until_minus_one(mproc::Connection& c) {
  for (;;) {
    const auto v = c.recv<int>();
    if (!v) mproc::exit(3);
    if (*v == -1) return;
    c.send(*v * 2);
  }
}

// Sends one message and dies by SIGKILL.
void send_then_die(mproc::Connection& c) {
  c.send(std::string("last words"));
  ::raise(SIGKILL);
}

// Sends whether its descriptors are close-on-exec (a spawned child's children must not inherit
// them), then waits for the parent to close its end.
void report_close_on_exec(mproc::Connection& c) {
  const int flags = ::fcntl(c.fileno(), F_GETFD);
  c.send(flags >= 0 && (flags & FD_CLOEXEC) != 0);
  (void)c.recv<int>();
}

void produce_anonymous(Ints& q, int first, int count) {
  for (int i = 0; i < count; ++i) q.put(first + i);
}

void consume_anonymous(Ints& in, Ints& out) {
  while (const auto v = in.get()) out.put(*v);
}

// Takes every task, adds it to the sum and marks it done, until the queue is closed and drained.
void finish_tasks(mproc::JoinableQueue<int>& tasks, ByName<Counter> sum) {
  while (const auto v = tasks.get()) {
    **sum += *v;
    tasks.task_done();
  }
}

// Exit 0: the queue's descriptor became readable once a message waited; 3: it did not.
void poll_queue_fileno(Ints& q, Event& ready) {
  pollfd fd{q.fileno(), POLLIN, 0};
  ready.set();
  if (::poll(&fd, 1, 20000) != 1) mproc::exit(3);
  if (q.try_get() != 42) mproc::exit(4);
}

// Adds 1 to the value `rounds` times, each a locked read-modify-write.
void add_to_value(mproc::Value<long>& v, int rounds) {
  for (int i = 0; i < rounds; ++i) v.update([](long& x) { ++x; });
}

// Writes `first`, first + 1, ... into every element of each array.
void fill_arrays(mproc::Array<int>& locked, mproc::RawArray<int>& raw, mproc::RawValue<int>& count,
                 int first) {
  locked.update([&](std::span<int> s) {
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = first + static_cast<int>(i);
  });
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = first + static_cast<int>(i);
  *count = static_cast<int>(locked.size() + raw.size());
}

}  // namespace

MPROC_ENTRY(add_to_value);
MPROC_ENTRY(fill_arrays);
MPROC_ENTRY(produce_anonymous);
MPROC_ENTRY(consume_anonymous);
MPROC_ENTRY(poll_queue_fileno);
MPROC_ENTRY(finish_tasks);
MPROC_ENTRY(count_under_anonymous_lock);
MPROC_ENTRY(hold_anonymous_lock_and_die);
MPROC_ENTRY(nest_one_rlock_twice);
MPROC_ENTRY(release_once);
MPROC_ENTRY(release_beyond_the_bound);
MPROC_ENTRY(arrive_at_barrier);
MPROC_ENTRY(answer_on_condition);
MPROC_ENTRY(put_on_simple_queue);
MPROC_ENTRY(double_until_minus_one);
MPROC_ENTRY(send_then_die);
MPROC_ENTRY(report_close_on_exec);
MPROC_ENTRY(count_under_lock);
MPROC_ENTRY(hold_lock_and_die);
MPROC_ENTRY(hold_lock_until);
MPROC_ENTRY(produce);
MPROC_ENTRY(consume);
MPROC_ENTRY(get_until_closed);
MPROC_ENTRY(time_out_on_both_ends);

// ---- the contracts, under each method --------------------------------------------------------

namespace {

class ObjectsTest : public testing::TestWithParam<StartMethod> {
 protected:
  void TearDown() override { mproc::stop_forkserver(); }  // the runner audits its children

  template <class F, class... Args>
  Process start(F f, Args&&... args) {
    Process p(f, std::forward<Args>(args)...);
    p.set_start_method(GetParam()).set_daemon(true);  // dies with the runner if the watchdog fires
    p.start();
    return p;
  }
};

// The descriptors open in process `pid` ("self" for this one).
std::size_t open_fds(const std::string& pid = "self") {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + pid + "/fd")) ++n;
  return n;
}

// The memfds (anonymous objects' memory) open in process `pid`.
std::size_t open_memfds(const std::string& pid) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + pid + "/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec).string().starts_with("/memfd:")) ++n;
  }
  return n;
}

// Takes `total` messages from `out` (the consumers forward what they get from `in`), then checks
// that the producers exited 0, that closing `in` ended the consumers (their get() returns empty
// once the queue is drained), and that every message 0..total-1 arrived exactly once.
void expect_every_message_once(Ints& in, Ints& out, int total, std::vector<Process>& producers,
                               std::vector<Process>& consumers) {
  std::vector<int> seen(static_cast<std::size_t>(total), 0);
  for (int i = 0; i < total; ++i) {
    const auto v = out.get_for(kPatience);
    ASSERT_TRUE(v.has_value()) << "only " << i << " of " << total << " messages arrived";
    ASSERT_GE(*v, 0);
    ASSERT_LT(*v, total);
    ++seen[static_cast<std::size_t>(*v)];
  }
  for (Process& p : producers) EXPECT_EQ(exit_code_of(p), 0);
  in.close();
  for (Process& p : consumers) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_FALSE(out.try_get().has_value()) << "a message was delivered twice";
  for (int v = 0; v < total; ++v) EXPECT_EQ(seen[static_cast<std::size_t>(v)], 1) << "message " << v;
}

std::string method_name(const testing::TestParamInfo<StartMethod>& info) {
  return mproc::start_method_name(info.param);
}

INSTANTIATE_TEST_SUITE_P(AllMethods, ObjectsTest,
                         testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         method_name);

// ---- Lock --------------------------------------------------------------------------------------

TEST_P(ObjectsTest, lock_lets_one_child_at_a_time_into_the_critical_section) {
  ScratchName<Lock> lock_name("smo-mutex");
  ScratchName<Counter> counter_name("smo-counter");
  auto lock = Lock::create(lock_name.str());
  auto counter = Counter::create(counter_name.str(), 0);
  constexpr int kChildren = 4;
  constexpr int kRounds = 500;  // with a yield inside each hold: thousands of hand-offs, seconds under load
  std::vector<Process> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(
        start(count_under_lock, ByName<Lock>(lock_name.str()), ByName<Counter>(counter_name.str()), kRounds));
  }
  for (Process& p : children) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(*counter, long{kChildren} * kRounds)
      << "increments were lost: two children held the lock at once";
}

TEST_P(ObjectsTest, lock_held_by_a_sigkilled_child_is_reported_to_the_next_acquirer) {
  ScratchName<Lock> lock_name("smo-dead-owner");
  ScratchName<Event> held_name("smo-dead-held");
  auto lock = Lock::create(lock_name.str());
  Event held = Event::create(held_name.str());
  Process p = start(hold_lock_and_die, ByName<Lock>(lock_name.str()), ByName<Event>(held_name.str()));
  ASSERT_TRUE(held.wait(kPatience));
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  const mproc::Acquired a = lock.acquire();
  EXPECT_TRUE(a.owner_died());
  lock.mark_consistent();
  lock.release();
  // Marked consistent: the next acquire is an ordinary one.
  EXPECT_EQ(lock.acquire().status(), mproc::Acquired::Status::ok);
  lock.release();
}

TEST_P(ObjectsTest, lock_held_by_a_child_times_out_here_then_is_acquired_once_released) {
  ScratchName<Lock> lock_name("smo-held");
  ScratchName<Event> held_name("smo-held-held");
  ScratchName<Event> release_name("smo-held-release");
  auto lock = Lock::create(lock_name.str());
  Event held = Event::create(held_name.str());
  Event release = Event::create(release_name.str());
  Process p = start(hold_lock_until, ByName<Lock>(lock_name.str()), ByName<Event>(held_name.str()),
                    ByName<Event>(release_name.str()));
  ASSERT_TRUE(held.wait(kPatience));
  EXPECT_TRUE(lock.acquire_for(20ms).timed_out());
  release.set();
  const mproc::Acquired a = lock.acquire_for(kPatience);
  EXPECT_EQ(a.status(), mproc::Acquired::Status::ok);
  if (a) lock.release();
  EXPECT_EQ(exit_code_of(p), 0);
}

// ---- Queue -------------------------------------------------------------------------------------

// Every message put by N producers is taken by exactly one of M consumers: the consumers forward
// what they take to `out`, and `out` holds each message once, and nothing more once the
// consumers have ended.
TEST_P(ObjectsTest, queue_delivers_every_message_exactly_once_across_producers_and_consumers) {
  ScratchName<Ints> in_name("smo-mpmc-in");
  ScratchName<Ints> out_name("smo-mpmc-out");
  // Small enough that producers block on a full queue now and then.
  auto in = Ints::create(in_name.str(), 4096);
  auto out = Ints::create(out_name.str());
  constexpr int kProducers = 3;
  constexpr int kConsumers = 2;
  constexpr int kEach = 5000;
  std::vector<Process> producers;
  std::vector<Process> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.push_back(start(consume, ByName<Ints>(in_name.str()), ByName<Ints>(out_name.str())));
  }
  for (int p = 0; p < kProducers; ++p) {
    producers.push_back(start(produce, ByName<Ints>(in_name.str()), p * kEach, kEach));
  }
  expect_every_message_once(in, out, kProducers * kEach, producers, consumers);
}

TEST_P(ObjectsTest, queue_close_ends_a_childs_get_and_refuses_its_put) {
  ScratchName<Ints> name("smo-close");
  auto q = Ints::create(name.str());
  Process p = start(get_until_closed, ByName<Ints>(name.str()));
  // Closing before or after the child's get() starts: either way it returns empty.
  q.close();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(ObjectsTest, queue_get_and_put_time_out_in_a_child) {
  ScratchName<Ints> empty_name("smo-timeout-empty");
  ScratchName<Ints> full_name("smo-timeout-full");
  auto empty = Ints::create(empty_name.str());
  auto full = Ints::create(full_name.str(), Ints::kDefaultCapacity, 1);  // one message at most
  full.put(1);
  Process p = start(time_out_on_both_ends, ByName<Ints>(empty_name.str()), ByName<Ints>(full_name.str()));
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(full.try_get(), 1);
  EXPECT_FALSE(full.try_get().has_value()) << "the timed-out put_for left a message";
  EXPECT_FALSE(empty.try_get().has_value());
}

}  // namespace

// ---- anonymous objects: sent as descriptors under spawn and forkserver, inherited under fork --

namespace {

TEST_P(ObjectsTest, anonymous_lock_lets_one_child_at_a_time_into_the_critical_section) {
  ScratchName<Counter> counter_name("smo-anon-counter");
  Lock lock;
  auto counter = Counter::create(counter_name.str(), 0);
  constexpr int kChildren = 4;
  constexpr int kRounds = 500;  // with a yield inside each hold: thousands of hand-offs, seconds under load
  std::vector<Process> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(
        start(count_under_anonymous_lock, std::ref(lock), ByName<Counter>(counter_name.str()), kRounds));
  }
  for (Process& p : children) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(*counter, long{kChildren} * kRounds)
      << "increments were lost: two children held the lock at once";
}

TEST_P(ObjectsTest, anonymous_lock_held_by_a_sigkilled_child_is_reported_to_the_next_acquirer) {
  Lock lock;
  Event held;
  Process p = start(hold_anonymous_lock_and_die, std::ref(lock), std::ref(held));
  ASSERT_TRUE(held.wait(kPatience));
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  const mproc::Acquired a = lock.acquire();
  EXPECT_TRUE(a.owner_died());
  lock.release();
}

TEST_P(ObjectsTest, one_anonymous_rlock_passed_twice_is_one_lock_in_the_child) {
  mproc::RLock lock;
  Event done;
  Process p = start(nest_one_rlock_twice, std::ref(lock), std::ref(lock), std::ref(done));
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_TRUE(done.is_set());
}

TEST_P(ObjectsTest, pipe_end_carries_round_trips_with_a_child) {
  auto [mine, theirs] = mproc::Pipe();
  Process p = start(double_until_minus_one, std::ref(theirs));
  theirs.close();  // as in Python: the parent closes the end it gave away
  for (int i = 0; i < 2000; ++i) {
    mine.send(i);
    const auto back = mine.recv<int>();
    ASSERT_TRUE(back.has_value()) << "end of stream after " << i << " round trips";
    ASSERT_EQ(*back, 2 * i);
  }
  mine.send(-1);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(ObjectsTest, pipe_reaches_end_of_stream_when_the_child_dies) {
  auto [mine, theirs] = mproc::Pipe();
  Process p = start(send_then_die, std::ref(theirs));
  theirs.close();
  EXPECT_EQ(mine.recv<std::string>(), "last words");
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  EXPECT_FALSE(mine.recv<std::string>().has_value()) << "no end of stream after the child died";
}

TEST_P(ObjectsTest, one_way_pipe_end_reaches_the_child) {
  auto [reader, writer] = mproc::Pipe(false);
  Process p = start(send_then_die, std::ref(writer));
  writer.close();
  EXPECT_EQ(reader.recv<std::string>(), "last words");
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  EXPECT_FALSE(reader.recv<std::string>().has_value());
}

TEST_P(ObjectsTest, descriptors_a_child_receives_are_close_on_exec) {
  auto [mine, theirs] = mproc::Pipe();
  Process p = start(report_close_on_exec, std::ref(theirs));
  theirs.close();
  EXPECT_EQ(mine.recv<bool>(), true);
  mine.send(0);
  EXPECT_EQ(exit_code_of(p), 0);
}

// Every descriptor sent with a child is closed again in this process, and the forkserver keeps
// none: it closes its copies before it reports the child started (its own descriptors for a
// child, the pidfd and the status socket, go when it has reaped the child, which may be a moment
// after the child's join() here: they are not counted).
TEST_P(ObjectsTest, sending_anonymous_objects_leaves_no_descriptor_open_here_or_in_the_forkserver) {
  Lock lock;
  Event never;
  {  // the first start of a forkserver opens its control socket: not a leak
    Process warm = start(hold_anonymous_lock_and_die, std::ref(lock), std::ref(never));
    warm.kill();
    EXPECT_NE(exit_code_of(warm), 0);
    if (lock.acquire().owner_died()) lock.mark_consistent();
    lock.release();
  }
  const std::size_t here = open_fds();
  const int server = mproc::detail::forkserver_pid();
  const auto server_memfds = [&] { return server > 0 ? open_memfds(std::to_string(server)) : 0; };
  EXPECT_EQ(server_memfds(), 0u);
  for (int i = 0; i < 3; ++i) {
    auto [mine, theirs] = mproc::Pipe();
    Process p = start(send_then_die, std::ref(theirs));
    EXPECT_EQ(server_memfds(), 0u);
    theirs.close();
    EXPECT_EQ(mine.recv<std::string>(), "last words");
    EXPECT_EQ(exit_code_of(p), -SIGKILL);
    // Killed before it could take anything.
    Process q = start(hold_anonymous_lock_and_die, std::ref(lock), std::ref(never));
    EXPECT_EQ(server_memfds(), 0u);
    q.kill();
    EXPECT_NE(exit_code_of(q), 0);
    if (lock.acquire().owner_died()) lock.mark_consistent();
    lock.release();
  }
  EXPECT_EQ(open_fds(), here);
  EXPECT_EQ(mproc::detail::forkserver_pid(), server);
}

TEST_P(ObjectsTest, anonymous_queue_delivers_every_message_exactly_once_across_producers_and_consumers) {
  Ints in(4096);  // small enough that producers block on a full queue now and then
  Ints out;
  constexpr int kProducers = 3;
  constexpr int kConsumers = 2;
  constexpr int kEach = 5000;
  std::vector<Process> producers;
  std::vector<Process> consumers;
  for (int c = 0; c < kConsumers; ++c)
    consumers.push_back(start(consume_anonymous, std::ref(in), std::ref(out)));
  for (int p = 0; p < kProducers; ++p)
    producers.push_back(start(produce_anonymous, std::ref(in), p * kEach, kEach));
  expect_every_message_once(in, out, kProducers * kEach, producers, consumers);
}

TEST_P(ObjectsTest, anonymous_joinable_queue_joins_once_a_child_marked_every_task_done) {
  ScratchName<Counter> sum_name("smo-joinable-sum");
  auto sum = Counter::create(sum_name.str(), 0);
  mproc::JoinableQueue<int> tasks;
  Process p = start(finish_tasks, std::ref(tasks), ByName<Counter>(sum_name.str()));
  for (int i = 1; i <= 100; ++i) tasks.put(i);
  EXPECT_TRUE(tasks.join(kPatience));
  EXPECT_EQ(*sum, 5050) << "join() returned before every task was done";
  tasks.close();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(ObjectsTest, anonymous_queue_fileno_works_in_the_child) {
  Ints q;
  Event ready;
  Process p = start(poll_queue_fileno, std::ref(q), std::ref(ready));
  ASSERT_TRUE(ready.wait(kPatience));
  q.put(42);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(ObjectsTest, anonymous_value_counts_every_locked_update_of_every_child) {
  mproc::Value<long> v(0);
  constexpr int kChildren = 3;
  constexpr int kRounds = 2000;
  std::vector<Process> children;
  for (int c = 0; c < kChildren; ++c) children.push_back(start(add_to_value, std::ref(v), kRounds));
  for (Process& p : children) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(v.get(), long{kChildren} * kRounds) << "updates were lost";
}

TEST_P(ObjectsTest, anonymous_arrays_keep_their_size_and_share_their_elements_with_a_child) {
  mproc::Array<int> locked(1000, -1);
  mproc::RawArray<int> raw(3, -1);
  mproc::RawValue<int> count(0);
  Process p = start(fill_arrays, std::ref(locked), std::ref(raw), std::ref(count), 7);
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(*count, 1003) << "the child saw other sizes";
  for (std::size_t i = 0; i < locked.size(); ++i) ASSERT_EQ(locked.get(i), 7 + static_cast<int>(i)) << i;
  for (std::size_t i = 0; i < raw.size(); ++i) EXPECT_EQ(raw[i], 7 + static_cast<int>(i)) << i;
}

// ---- Semaphore, BoundedSemaphore, Barrier ------------------------------------------------------

TEST_P(ObjectsTest, anonymous_semaphore_counts_the_releases_of_every_child) {
  mproc::Semaphore semaphore(0);
  constexpr int kChildren = 4;
  std::vector<Process> children;
  for (int i = 0; i < kChildren; ++i) children.push_back(start(release_once, std::ref(semaphore)));
  for (Process& p : children) EXPECT_EQ(exit_code_of(p), 0);
  for (int i = 0; i < kChildren; ++i)
    EXPECT_TRUE(semaphore.acquire_for(kPatience)) << "release " << i << " lost";
  EXPECT_FALSE(semaphore.try_acquire()) << "more releases than children";
}

TEST_P(ObjectsTest, anonymous_bounded_semaphore_keeps_its_bound_in_the_child) {
  mproc::BoundedSemaphore semaphore(1);
  Process p = start(release_beyond_the_bound, std::ref(semaphore));
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(semaphore.get_value(), 1u);
}

TEST_P(ObjectsTest, anonymous_barrier_lets_children_and_parent_through_together) {
  constexpr int kChildren = 3;
  mproc::Barrier barrier(kChildren + 1);
  std::vector<Process> children;
  for (int i = 0; i < kChildren; ++i) children.push_back(start(arrive_at_barrier, std::ref(barrier)));
  std::set<int> indices{static_cast<int>(barrier.wait_for(kPatience))};
  for (Process& p : children) indices.insert(exit_code_of(p));
  EXPECT_EQ(indices, (std::set<int>{0, 1, 2, 3})) << "each party has its own arrival index";
}

// ---- Condition, SimpleQueue -------------------------------------------------------------------

TEST_P(ObjectsTest, anonymous_condition_with_its_own_lock_wakes_and_is_woken_by_a_child) {
  mproc::Condition cond;
  Counter flag(0);
  std::optional<Process> p;
  {
    std::unique_lock hold{cond.lock()};  // the child takes it once this waits
    p.emplace(start(answer_on_condition, std::ref(cond), std::ref(flag)));
    while (*flag != 1)
      ASSERT_FALSE(cond.wait_for(kPatience).timed_out()) << "the child's notify did not arrive";
    *flag = 2;
    cond.notify_all();
  }
  EXPECT_EQ(exit_code_of(*p), 0) << "the child's wait timed out (2) or it failed";
}

TEST_P(ObjectsTest, anonymous_simple_queue_carries_a_childs_messages_in_order) {
  mproc::SimpleQueue<int> q;
  Process p = start(put_on_simple_queue, std::ref(q), 100);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(q.get(), i);
  EXPECT_EQ(q.get(), p.pid());
  EXPECT_EQ(exit_code_of(p), 0);
}

// ---- what cannot travel as a descriptor ---------------------------------------------------------

TEST(ObjectsMisuse, a_condition_over_a_lock_of_ones_own_is_refused_at_start_with_the_fix) {
  Lock lock;
  mproc::Condition cond(lock);
  Counter flag(0);
  Process p(answer_on_condition, std::ref(cond), std::ref(flag));
  p.set_start_method(StartMethod::spawn).set_daemon(true);
  try {
    p.start();
    ADD_FAILURE() << "start() sent a Condition whose lock would arrive as another object";
  } catch (const mproc::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("Condition()"), std::string::npos) << e.what();
  }
}

TEST(ObjectsMisuse, a_named_lock_passed_by_reference_to_a_spawned_child_is_refused_with_the_fix) {
  ScratchName<Lock> name("smo-named-by-ref");
  auto lock = Lock::create(name.str());
  Event held;
  for (const StartMethod method : {StartMethod::spawn, StartMethod::forkserver}) {
    Process p(hold_anonymous_lock_and_die, std::ref(lock), std::ref(held));
    p.set_start_method(method).set_daemon(true);
    try {
      p.start();
      ADD_FAILURE() << "start() accepted a named Lock as a descriptor";
    } catch (const mproc::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("ByName<Lock>"), std::string::npos) << e.what();
    }
  }
  mproc::stop_forkserver();
}

// One descriptor per anonymous object must not eat the program's descriptor table: past half of
// RLIMIT_NOFILE, anonymous objects are plain MAP_ANONYMOUS memory (for fork children only), and
// sending one to a spawned child says why. Objects made before that still travel.
TEST(ObjectsMisuse, anonymous_objects_leave_half_the_descriptor_table_to_the_program) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  {
    Event held;
    std::vector<std::unique_ptr<Lock>> locks;
    for (int i = 0; i < 100; ++i) locks.push_back(std::make_unique<Lock>());

    std::vector<int> own;
    for (int i = 0; i < 20; ++i) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      EXPECT_GE(fd, 0) << "the program's own open() failed after 100 anonymous Locks: "
                       << std::strerror(errno);
      if (fd >= 0) own.push_back(fd);
    }
    for (const int fd : own) ::close(fd);

    Process late(hold_anonymous_lock_and_die, std::ref(*locks.back()), std::ref(held));
    late.set_start_method(StartMethod::spawn).set_daemon(true);
    try {
      late.start();
      ADD_FAILURE() << "start() sent an anonymous Lock that has no descriptor";
    } catch (const mproc::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("RLIMIT_NOFILE"), std::string::npos) << e.what();
    }

    Process early(hold_anonymous_lock_and_die, std::ref(*locks.front()), std::ref(held));
    early.set_start_method(StartMethod::spawn).set_daemon(true);
    early.start();
    ASSERT_TRUE(held.wait(kPatience));
    EXPECT_EQ(exit_code_of(early), -SIGKILL);
    const mproc::Acquired a = locks.front()->acquire();
    EXPECT_TRUE(a.owner_died()) << "the spawned child did not hold the first Lock";
    locks.front()->release();
  }
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
}

}  // namespace
