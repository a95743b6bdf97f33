// The Process contract under every start method (fork, spawn, forkserver): one test body each,
// parameterised. Children are registered entry points and share objects by name, which works
// under all three (docs/design/start-methods.md); the fork-only contract (lambdas, anonymous
// objects) stays in process_test.cpp and the component tests.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sched.h>

#include <csignal>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/start_method.hpp"
#include "mproc/value.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::ByName;
using mproc::Event;
using mproc::Process;
using mproc::StartMethod;
using mproc_test::exit_code_of;
using mproc_test::kPatience;
using mproc_test::ScratchName;
using Texts = mproc::Queue<std::string>;

// ---- the children ---------------------------------------------------------------------------

namespace {

void return_normally() {}
void exit_with(int code) {
  mproc::exit(code);
}
void throw_runtime_error(std::string message) {
  throw std::runtime_error(message);
}
void raise_signal(int signo) {
  ::raise(signo);
}
void wait_for_event(ByName<Event> event) {
  event->wait();
}
void ignore_sigterm_and_wait(ByName<Event> event) {
  ::signal(SIGTERM, SIG_IGN);
  event->wait();
}

void report_identity(ByName<Texts> out) {
  const mproc::ProcessInfo me = mproc::current_process();
  const auto parent = mproc::parent_process();
  out->put(me.name);
  out->put(std::to_string(me.pid));
  out->put(me.daemon ? "daemon" : "not daemon");
  out->put(parent ? parent->name + " " + std::to_string(parent->pid) : "no parent");
}

void echo_arguments(ByName<Texts> out, int n, std::string s, std::vector<int> v, double d) {
  std::string text = std::to_string(n) + " " + s + " [";
  for (const int x : v) text += std::to_string(x) + ",";
  out->put(text + "] " + std::to_string(d));
}

void produce_numbers(ByName<mproc::Queue<int>> q, int count) {
  for (int i = 0; i < count; ++i) q->put(i);
}

void take_lock_and_die(ByName<mproc::Lock> lock, ByName<Event> held) {
  const mproc::Acquired a = lock->acquire();
  if (!a) mproc::exit(2);
  held->set();
  ::raise(SIGKILL);
}

// Increments a shared counter `rounds` times, each time under the lock, with a read, a yield
// and a write: without mutual exclusion, increments are lost.
void count_under_lock(ByName<mproc::Lock> lock, ByName<mproc::RawValue<long>> counter, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    std::scoped_lock hold{*lock};
    const long seen = **counter;
    sched_yield();
    **counter = seen + 1;
  }
}

// Starts a daemon grandchild (with the same method) that waits on `release`, reports its pid and
// blocks on `release` itself: the middle of a family whose middle gets SIGKILLed.
void start_daemon_grandchild(ByName<mproc::Queue<int>> pids, ByName<Event> release, int method) {
  Process grandchild(wait_for_event, release);
  grandchild.set_start_method(static_cast<StartMethod>(method)).set_daemon(true).start();
  pids->put(static_cast<int>(*grandchild.pid()));
  release->wait();
}

}  // namespace

MPROC_ENTRY(return_normally);
MPROC_ENTRY(exit_with);
MPROC_ENTRY(throw_runtime_error);
MPROC_ENTRY(raise_signal);
MPROC_ENTRY(wait_for_event);
MPROC_ENTRY(ignore_sigterm_and_wait);
MPROC_ENTRY(report_identity);
MPROC_ENTRY(echo_arguments);
MPROC_ENTRY(produce_numbers);
MPROC_ENTRY(take_lock_and_die);
MPROC_ENTRY(count_under_lock);
MPROC_ENTRY(start_daemon_grandchild);

// ---- the contract, under each method ---------------------------------------------------------

namespace {

int sys_pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

class StartMethodTest : public testing::TestWithParam<StartMethod> {
 protected:
  void TearDown() override { mproc::stop_forkserver(); }  // the runner audits its children

  template <class F, class... Args>
  Process make(F f, Args&&... args) {
    Process p(f, std::forward<Args>(args)...);
    p.set_start_method(GetParam()).set_daemon(true);  // dies with the runner if the watchdog fires
    return p;
  }
  template <class F, class... Args>
  Process start(F f, Args&&... args) {
    Process p = make(f, std::forward<Args>(args)...);
    p.start();
    return p;
  }
};

std::string method_name(const testing::TestParamInfo<StartMethod>& info) {
  return mproc::start_method_name(info.param);
}

INSTANTIATE_TEST_SUITE_P(AllMethods, StartMethodTest,
                         testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         method_name);

TEST_P(StartMethodTest, returning_normally_gives_exit_code_zero) {
  Process p = start(return_normally);
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(p.start_method(), GetParam());
}

TEST_P(StartMethodTest, mproc_exit_gives_its_code) {
  Process p = start(exit_with, 7);
  EXPECT_EQ(exit_code_of(p), 7);
}

TEST_P(StartMethodTest, uncaught_exception_exits_with_one) {
  Process p = start(throw_runtime_error, "expected by the test");
  EXPECT_EQ(exit_code_of(p), 1);
}

TEST_P(StartMethodTest, death_by_signal_gives_minus_the_signal) {
  Process p = start(raise_signal, SIGABRT);
  EXPECT_EQ(exit_code_of(p), -SIGABRT);
}

TEST_P(StartMethodTest, terminate_gives_minus_sigterm) {
  ScratchName<Event> name("sm-term");
  Event never = Event::create(name.str());
  Process p = start(wait_for_event, ByName<Event>(name.str()));
  EXPECT_TRUE(p.is_alive());
  p.terminate();
  EXPECT_EQ(exit_code_of(p), -SIGTERM);
}

TEST_P(StartMethodTest, kill_gives_minus_sigkill_even_when_sigterm_is_ignored) {
  ScratchName<Event> name("sm-kill");
  Event never = Event::create(name.str());
  Process p = start(ignore_sigterm_and_wait, ByName<Event>(name.str()));
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
}

TEST_P(StartMethodTest, join_with_timeout_returns_false_while_running_then_true) {
  ScratchName<Event> name("sm-join");
  Event release = Event::create(name.str());
  Process p = start(wait_for_event, ByName<Event>(name.str()));
  EXPECT_FALSE(p.join(20ms));
  EXPECT_TRUE(p.is_alive());
  EXPECT_FALSE(p.exitcode().has_value());
  release.set();
  EXPECT_TRUE(p.join(kPatience));
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_FALSE(p.is_alive());
}

TEST_P(StartMethodTest, sentinel_becomes_readable_when_the_child_ends) {
  ScratchName<Event> name("sm-sentinel");
  Event release = Event::create(name.str());
  Process p = start(wait_for_event, ByName<Event>(name.str()));
  pollfd fd{p.sentinel(), POLLIN, 0};
  EXPECT_EQ(::poll(&fd, 1, 0), 0);
  release.set();
  EXPECT_EQ(::poll(&fd, 1, static_cast<int>(std::chrono::milliseconds(kPatience).count())), 1);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(StartMethodTest, child_knows_its_name_pid_daemon_flag_and_parent) {
  ScratchName<Texts> name("sm-identity");
  Texts out = Texts::create(name.str());
  Process p = make(report_identity, ByName<Texts>(name.str()));
  p.set_name("worker-7");
  p.start();
  EXPECT_EQ(out.get(), "worker-7");
  EXPECT_EQ(out.get(), std::to_string(*p.pid()));
  EXPECT_EQ(out.get(), "daemon");
  EXPECT_EQ(out.get(), "MainProcess " + std::to_string(::getpid()));
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(StartMethodTest, default_name_is_the_one_the_parent_gave) {
  ScratchName<Texts> name("sm-default-name");
  Texts out = Texts::create(name.str());
  Process p = start(report_identity, ByName<Texts>(name.str()));
  EXPECT_EQ(out.get(), p.name());
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(StartMethodTest, arguments_arrive_converted_to_the_parameter_types) {
  ScratchName<Texts> name("sm-args");
  Texts out = Texts::create(name.str());
  Process p =
      start(echo_arguments, ByName<Texts>(name.str()), 42, "forty-two", std::vector<int>{1, 2, 3}, 0.5f);
  EXPECT_EQ(out.get(), "42 forty-two [1,2,3,] 0.500000");
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(StartMethodTest, a_queue_passed_by_name_carries_messages_in_order) {
  ScratchName<mproc::Queue<int>> name("sm-queue");
  auto q = mproc::Queue<int>::create(name.str());
  Process p = start(produce_numbers, ByName<mproc::Queue<int>>(name.str()), 1000);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(q.get(), i);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(StartMethodTest, a_lock_whose_owner_died_is_reported_to_the_next_acquirer) {
  ScratchName<mproc::Lock> lock_name("sm-lock");
  ScratchName<Event> held_name("sm-held");
  auto lock = mproc::Lock::create(lock_name.str());
  Event held = Event::create(held_name.str());
  Process p = start(take_lock_and_die, ByName<mproc::Lock>(lock_name.str()), ByName<Event>(held_name.str()));
  ASSERT_TRUE(held.wait(kPatience));
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  const mproc::Acquired a = lock.acquire();
  EXPECT_TRUE(a.owner_died());
  lock.release();
}

TEST_P(StartMethodTest, a_named_lock_excludes_its_holders_in_every_child) {
  ScratchName<mproc::Lock> lock_name("sm-mutex");
  ScratchName<mproc::RawValue<long>> counter_name("sm-counter");
  auto lock = mproc::Lock::create(lock_name.str());
  auto counter = mproc::RawValue<long>::create(counter_name.str(), 0);
  constexpr int kChildren = 3;
  constexpr int kRounds = 2000;
  std::vector<Process> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(start(count_under_lock, ByName<mproc::Lock>(lock_name.str()),
                             ByName<mproc::RawValue<long>>(counter_name.str()), kRounds));
  }
  for (Process& p : children) EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(*counter, long{kChildren} * kRounds);
}

TEST_P(StartMethodTest, active_children_lists_it_while_it_runs) {
  ScratchName<Event> name("sm-active");
  Event release = Event::create(name.str());
  Process p = start(wait_for_event, ByName<Event>(name.str()));
  bool listed = false;
  for (const auto& c : mproc::active_children()) listed = listed || c.pid == *p.pid();
  EXPECT_TRUE(listed);
  release.set();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(StartMethodTest, destroying_a_running_process_terminates_it) {
  ScratchName<Event> name("sm-destroy");
  Event never = Event::create(name.str());
  pid_t pid = 0;
  int pidfd = -1;
  {
    Process p = start(wait_for_event, ByName<Event>(name.str()));
    pid = *p.pid();
    pidfd = ::dup(p.sentinel());
  }
  ASSERT_GT(pid, 0);
  pollfd fd{pidfd, POLLIN, 0};
  EXPECT_EQ(::poll(&fd, 1, 0), 1) << "the destructor returned before the child ended";
  ::close(pidfd);
}

// A daemon child never outlives its parent, even a SIGKILLed one. The runner becomes a child
// subreaper, so that what is orphaned is reparented to it and reaped here.
TEST_P(StartMethodTest, daemon_child_dies_when_its_parent_is_sigkilled) {
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  ScratchName<mproc::Queue<int>> pids_name("sm-daemon-pids");
  ScratchName<Event> release_name("sm-daemon-release");
  auto pids = mproc::Queue<int>::create(pids_name.str());
  Event release = Event::create(release_name.str());
  Process middle = start(start_daemon_grandchild, ByName<mproc::Queue<int>>(pids_name.str()),
                         ByName<Event>(release_name.str()), static_cast<int>(GetParam()));
  const auto grandchild = pids.get_for(kPatience);
  ASSERT_TRUE(grandchild.has_value());
  const int gfd = sys_pidfd_open(*grandchild);
  ASSERT_GE(gfd, 0);
  middle.kill();
  EXPECT_EQ(exit_code_of(middle), -SIGKILL);
  pollfd fd{gfd, POLLIN, 0};
  EXPECT_EQ(::poll(&fd, 1, static_cast<int>(std::chrono::milliseconds(kPatience).count())), 1)
      << "the daemon outlived its SIGKILLed parent";
  ::close(gfd);
  // Reap what was reparented here (the grandchild, or the middle's forkserver), after our own
  // forkserver is gone, so that every child left is one that is ending.
  mproc::stop_forkserver();
  while (::waitpid(-1, nullptr, 0) > 0) {}
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  release.set();
}

}  // namespace
