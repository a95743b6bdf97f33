// Start methods with a threaded parent (the hazard fork has, the safety spawn and forkserver
// give) and with bad input: a target that cannot be spawned, an entry missing in the child, a
// forkserver that was killed. (A program without mproc::init: start_method_noinit.cpp.)
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mproc/error.hpp"
#include "mproc/process.hpp"
#include "mproc/start_method.hpp"
#include "support/test_support.hpp"

using mproc::Process;
using mproc::StartMethod;
using mproc_test::exit_code_of;
using mproc_test::kPatience;
using mproc_test::run_capturing_stderr;

namespace {

// What a child of a busy parent does: allocate and log, the two things that hang after a fork
// that copied a held malloc or stdio lock. Its exit code proves it ran to the end.
void allocate_and_log(int i) {
  std::vector<std::unique_ptr<std::string>> v;
  for (int k = 0; k < 64; ++k) v.push_back(std::make_unique<std::string>(100 + k, 'x'));
  if (FILE* log = std::fopen("/dev/null", "w")) {
    std::fprintf(log, "child %d allocated %zu strings\n", i, v.size());
    std::fclose(log);
  }
  mproc::exit(i % 100);
}

void return_normally() {}
// Blocks until a signal kills it (pause returns only for a caught signal).
void block_until_killed() {
  for (;;) ::pause();
}
void late_entry() {}  // registered in a test body, after init: unknown in a fresh child
void never_registered() {}
void add_through_pointer(int* total, int n) {
  *total += n;
}  // fork only: a pointer cannot travel

// Threads that allocate and log in a loop until stopped, as a service's pool and logger do.
class BusyThreads {
 public:
  explicit BusyThreads(int n) {
    for (int t = 0; t < n; ++t) {
      threads_.emplace_back([this, t] {
        FILE* log = std::fopen("/dev/null", "w");
        std::size_t rounds = 0;
        while (!stop_.load(std::memory_order_relaxed)) {
          auto s = std::make_unique<std::string>(static_cast<std::size_t>(64 + rounds % 512), 'y');
          if (log != nullptr) std::fprintf(log, "thread %d round %zu %s\n", t, rounds, s->c_str());
          ++rounds;
        }
        if (log != nullptr) std::fclose(log);
      });
    }
  }
  ~BusyThreads() {
    stop_.store(true);
    for (std::thread& t : threads_) t.join();
  }
  BusyThreads(const BusyThreads&) = delete;
  BusyThreads& operator=(const BusyThreads&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

MPROC_ENTRY(allocate_and_log);
MPROC_ENTRY(return_normally);
MPROC_ENTRY(block_until_killed);

namespace {

// ---- a threaded parent -------------------------------------------------------------------------

// How many children the threaded-parent test starts: 1,000; the count, not a time, is the
// measure. Under a sanitizer a spawned child is a sanitized program whose start-up alone takes
// tens of milliseconds, so 100 keep the test inside the watchdog (MPROC_TEST_CHILDREN sets any
// count, for a longer run by hand).
int children_to_start() {
  if (const char* s = std::getenv("MPROC_TEST_CHILDREN")) return std::atoi(s);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return 100;
#else
  return 1000;
#endif
}

std::string method_name(const testing::TestParamInfo<StartMethod>& param) {
  return mproc::start_method_name(param.param);
}

class ThreadedParent : public testing::TestWithParam<StartMethod> {
 protected:
  void TearDown() override { mproc::stop_forkserver(); }
};

INSTANTIATE_TEST_SUITE_P(SafeMethods, ThreadedParent,
                         testing::Values(StartMethod::spawn, StartMethod::forkserver), method_name);

TEST_P(ThreadedParent, starts_a_thousand_children_while_threads_allocate_and_log_and_none_hangs) {
  BusyThreads busy(2);
  const int n = children_to_start();
  int finished = 0;
  for (int i = 0; i < n; ++i) {
    Process p(allocate_and_log, i);
    p.set_start_method(GetParam()).set_daemon(true).start();
    ASSERT_TRUE(p.join(kPatience)) << "child " << i << " hung";
    ASSERT_EQ(p.exitcode(), i % 100) << "child " << i;
    ++finished;
  }
  EXPECT_EQ(finished, n);
}

TEST(ForkWarning, forking_from_a_threaded_process_warns_once_naming_the_other_methods) {
  const auto [code, text] = run_capturing_stderr([] {
    ::unsetenv("MPROC_NO_FORK_WARNING");
    BusyThreads busy(1);
    for (int i = 0; i < 3; ++i) {
      Process p(return_normally);
      p.set_start_method(StartMethod::fork).set_daemon(true).start();
      CHILD_CHECK(p.join(kPatience) && p.exitcode() == 0);
    }
  });
  EXPECT_EQ(code, 0);
  EXPECT_EQ(count(text, "mproc: warning: forking"), 1u) << text;
  EXPECT_NE(text.find("spawn or forkserver start method"), std::string::npos) << text;
  EXPECT_NE(text.find("MPROC_NO_FORK_WARNING"), std::string::npos) << text;
}

TEST(ForkWarning, is_silenced_by_its_environment_variable_and_absent_without_threads) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer runs a thread of its own in every process, so no process is "
                  "single-threaded (and the warning is right: that thread's locks are copied too)";
#endif
  const auto [code, text] = run_capturing_stderr([] {
    {
      ::unsetenv("MPROC_NO_FORK_WARNING");
      Process p(return_normally);  // no other thread: no warning
      p.set_start_method(StartMethod::fork).set_daemon(true).start();
      CHILD_CHECK(p.join(kPatience));
    }
    ::setenv("MPROC_NO_FORK_WARNING", "1", 1);
    BusyThreads busy(1);
    Process p(return_normally);
    p.set_start_method(StartMethod::fork).set_daemon(true).start();
    CHILD_CHECK(p.join(kPatience));
  });
  EXPECT_EQ(code, 0);
  EXPECT_EQ(text.find("mproc: warning"), std::string::npos) << text;
}

// ---- bad input ------------------------------------------------------------------------------------

class BadInput : public testing::TestWithParam<StartMethod> {
 protected:
  void TearDown() override { mproc::stop_forkserver(); }
};

INSTANTIATE_TEST_SUITE_P(SafeMethods, BadInput, testing::Values(StartMethod::spawn, StartMethod::forkserver),
                         method_name);

std::string start_error(Process& p) {
  try {
    p.start();
  } catch (const mproc::UsageError& e) {
    return e.what();
  }
  return "(started)";
}

TEST_P(BadInput, a_lambda_target_is_a_usage_error_naming_the_fix_and_leaves_it_startable) {
  Process p([] {});
  p.set_start_method(GetParam()).set_daemon(true);
  const std::string what = start_error(p);
  EXPECT_NE(what.find("not a plain function"), std::string::npos) << what;
  EXPECT_NE(what.find("MPROC_ENTRY"), std::string::npos) << what;
  EXPECT_FALSE(p.pid().has_value());
  p.set_start_method(StartMethod::fork).start();  // the same object can still start with fork
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST_P(BadInput, a_pointer_argument_compiles_for_fork_and_is_a_usage_error_for_the_others) {
  // A program written for fork passes pointers into memory the child inherits; it must keep
  // compiling now that a Process can also spawn, and only a spawn start may refuse it.
  int total = 0;
  Process p(add_through_pointer, &total, 2);
  p.set_start_method(GetParam()).set_daemon(true);
  const std::string what = start_error(p);
  EXPECT_NE(what.find("not a type the queue codec can carry"), std::string::npos) << what;
  EXPECT_FALSE(p.pid().has_value());
}

TEST_P(BadInput, an_unregistered_function_is_a_usage_error) {
  Process p(never_registered);
  p.set_start_method(GetParam()).set_daemon(true);
  const std::string what = start_error(p);
  EXPECT_NE(what.find("not a registered entry point"), std::string::npos) << what;
}

TEST_P(BadInput, an_entry_unknown_in_the_child_exits_with_one_and_says_which) {
  const StartMethod method = GetParam();
  const auto [code, text] = run_capturing_stderr([method] {
    (void)mproc::register_entry("late_entry", late_entry);  // after init: the child never sees it
    Process p(late_entry);
    p.set_start_method(method).set_daemon(true).start();
    CHILD_CHECK(p.join(kPatience));
    CHILD_CHECK(p.exitcode() == 1);
  });
  EXPECT_EQ(code, 0);
  EXPECT_NE(text.find("no entry point named \"late_entry\""), std::string::npos) << text;
}

TEST_P(BadInput, a_child_starts_with_no_signal_blocked_though_the_starting_thread_blocks_them) {
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &term, &old), 0);
  Process p(block_until_killed);
  p.set_start_method(GetParam()).set_daemon(true).start();
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, &old, nullptr), 0);
  p.terminate();
  EXPECT_EQ(exit_code_of(p), -SIGTERM);
}

TEST_P(BadInput, changing_the_method_after_start_is_a_usage_error) {
  Process p(return_normally);
  p.set_start_method(GetParam()).set_daemon(true).start();
  EXPECT_THROW(p.set_start_method(StartMethod::fork), mproc::UsageError);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(StartMethodDefault, set_start_method_applies_to_processes_made_afterwards) {
  EXPECT_EQ(mproc::get_start_method(), StartMethod::fork);
  Process before(return_normally);
  mproc::set_start_method(StartMethod::spawn);
  Process after(return_normally);
  mproc::set_start_method(StartMethod::fork);
  EXPECT_EQ(before.start_method(), StartMethod::fork);
  EXPECT_EQ(after.start_method(), StartMethod::spawn);
  after.set_daemon(true).start();
  EXPECT_EQ(exit_code_of(after), 0);
}

TEST(Forkserver, a_killed_forkserver_is_replaced_on_the_next_start) {
  Process first(return_normally);
  first.set_start_method(StartMethod::forkserver).set_daemon(true).start();
  EXPECT_EQ(exit_code_of(first), 0);
  const int server = mproc::detail::forkserver_pid();
  ASSERT_GT(server, 0);
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, server, 0));
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::kill(server, SIGKILL), 0);
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kPatience).count())), 1);
  ::close(fd);
  Process second(return_normally);
  second.set_start_method(StartMethod::forkserver).set_daemon(true).start();
  EXPECT_EQ(exit_code_of(second), 0);
  EXPECT_NE(mproc::detail::forkserver_pid(), server);
  mproc::stop_forkserver();
  EXPECT_EQ(mproc::detail::forkserver_pid(), 0);
}

}  // namespace
