// The fault seam itself (support/fault_injection.hpp): it forwards to libc (or a sanitizer's
// interceptor) when nothing is armed, fails exactly the chosen calls, stays silent in a forked
// child, and is async-signal-safe. What every other fault_*_test.cpp relies on.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "support/fault_support.hpp"

using mproc::test::FaultPlan;
using mproc::test::kAlways;
using mproc_test::exit_code_of;
using mproc_test::start_child;
using namespace std::chrono_literals;
using namespace mproc_test::fault;

namespace {

TEST(FaultSeam, forwards_to_libc_when_nothing_is_armed) {
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  char c;
  EXPECT_EQ(::read(fd, &c, 1), 0);
  ::close(fd);
  const int efd = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  ::close(efd);
}

TEST(FaultSeam, fails_the_chosen_calls_and_only_those) {
  FaultPlan plan;
  plan.inject("eventfd", EMFILE, /*after*/ 1, /*times*/ 2);
  std::vector<int> results;
  for (int i = 0; i < 4; ++i) {
    errno = 0;
    const int fd = ::eventfd(0, EFD_CLOEXEC);
    results.push_back(fd < 0 ? -errno : 0);
    if (fd >= 0) ::close(fd);
  }
  EXPECT_EQ(results, (std::vector<int>{0, -EMFILE, -EMFILE, 0}));
  EXPECT_EQ(plan.calls("eventfd"), 4u);
  EXPECT_EQ(plan.injected("eventfd"), 2u);
  EXPECT_EQ(plan.injected(), 2u);
}

TEST(FaultSeam, a_plan_disarms_when_it_goes_out_of_scope) {
  {
    FaultPlan plan;
    plan.inject("eventfd", EMFILE, 0, kAlways);
    EXPECT_LT(::eventfd(0, EFD_CLOEXEC), 0);
  }
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  ::close(fd);
}

TEST(FaultSeam, a_rule_can_be_limited_to_one_descriptor) {
  Doorbell a, b;
  FaultPlan plan;
  plan.inject(mproc::test::Fault{"write", EIO, 0, kAlways, a.write_fd()});
  EXPECT_EQ(::write(a.write_fd(), "x", 1), -1);
  EXPECT_EQ(errno, EIO);
  EXPECT_EQ(::write(b.write_fd(), "x", 1), 1);
}

TEST(FaultSeam, posix_functions_fail_by_returning_the_error) {
  const int fd = ::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  FaultPlan plan;
  plan.inject("posix_fallocate", ENOSPC);
  plan.inject("mmap", ENOMEM);
  EXPECT_EQ(::posix_fallocate(fd, 0, 4096), ENOSPC);
  EXPECT_EQ(::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0), MAP_FAILED);
  EXPECT_EQ(errno, ENOMEM);
  ::close(fd);
}

TEST(FaultSeam, system_calls_made_through_syscall_can_fail_by_name) {
  std::atomic<std::uint32_t> word{0};
  FaultPlan plan;
  plan.inject("futex_wait", EINTR);
  const timespec long_time{10, 0};
  // Without the fault this would sleep ten seconds.
  EXPECT_EQ(
      ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, 0, &long_time, nullptr, 0),
      -1);
  EXPECT_EQ(errno, EINTR);
  EXPECT_EQ(plan.injected("futex_wait"), 1u);
}

TEST(FaultSeam, an_unknown_function_name_is_refused) {
  FaultPlan plan;
  EXPECT_THROW(plan.inject("opne", EMFILE), std::invalid_argument);
}

TEST(FaultSeam, a_plan_stays_silent_in_a_forked_child) {
  FaultPlan plan;
  plan.inject("eventfd", EMFILE, 0, kAlways);
  mproc::Process child = start_child([] {
    const int fd = ::eventfd(0, EFD_CLOEXEC);
    CHILD_CHECK(fd >= 0);
  });
  EXPECT_EQ(exit_code_of(child), 0);
  EXPECT_LT(::eventfd(0, EFD_CLOEXEC), 0);  // still armed here
}

TEST(FaultSeam, notifies_after_the_chosen_number_of_failures) {
  Doorbell bell;
  FaultPlan plan;
  plan.inject("eventfd", EMFILE, 0, kAlways);
  plan.notify_after(3, bell.write_fd());
  for (int i = 0; i < 2; ++i) (void)::eventfd(0, 0);
  EXPECT_FALSE(bell.wait_for(0ms));
  (void)::eventfd(0, 0);
  EXPECT_TRUE(bell.wait_for(0ms));
}

// The checks run in signal handlers too: a handler that calls an interposed function while
// another thread arms and disarms plans must neither deadlock nor crash.
std::atomic<int> g_handler_fd{-1};
std::atomic<unsigned> g_handler_runs{0};
extern "C" void write_from_handler(int) {
  const int saved = errno;
  (void)!::write(g_handler_fd.load(), "h", 1);
  g_handler_runs.fetch_add(1);
  errno = saved;
}

TEST(FaultSeam, checks_are_async_signal_safe) {
  int sink[2];
  ASSERT_EQ(::pipe2(sink, O_CLOEXEC | O_NONBLOCK), 0);
  g_handler_fd.store(sink[1]);
  struct sigaction sa {
  }, old{};
  sa.sa_handler = write_from_handler;
  ::sigaction(SIGUSR2, &sa, &old);
  sigevent ev{};
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = SIGUSR2;
  ev._sigev_un._tid = ::gettid();
  timer_t timer;
  ASSERT_EQ(::timer_create(CLOCK_MONOTONIC, &ev, &timer), 0);
  const itimerspec fast{{0, 50'000}, {0, 50'000}};
  ::timer_settime(timer, 0, &fast, nullptr);
  // Until enough plans came and went and enough handlers ran among them (counts, not a time: a
  // loaded machine takes longer, and must not see less).
  constexpr std::uint64_t kRounds = 2000;
  constexpr unsigned kHandlerRuns = 200;
  g_handler_runs.store(0);
  std::uint64_t rounds = 0;
  char buf[4096];
  while (rounds < kRounds || g_handler_runs.load() < kHandlerRuns) {
    FaultPlan plan;
    plan.inject("write", EIO, 0, kAlways).inject(mproc::test::Fault{"read", EIO, 0, 1, sink[0]});
    (void)!::read(sink[0], buf, sizeof buf);  // fails (injected)
    ++rounds;
  }
  ::timer_delete(timer);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGUSR2, &ignore, nullptr);
  ::sigaction(SIGUSR2, &old, nullptr);
  ::close(sink[0]);
  ::close(sink[1]);
  EXPECT_GE(rounds, kRounds);
  EXPECT_GE(g_handler_runs.load(), kHandlerRuns);
}

// Under a sanitizer, calls must still reach its interceptors (or ASan/TSan would miss them):
// the seam forwards to the sanitizer runtime's interceptor — in libasan.so/libtsan.so with GCC,
// in the executable itself with clang's static runtime — which then calls libc.
TEST(FaultSeam, forwards_through_a_sanitizer_runtime_when_there_is_one) {
#if defined(__SANITIZE_THREAD__)
  const bool sanitized = true;
  const char* intercepted = "fork";  // TSan must see fork to keep its state straight in the child
#elif defined(__SANITIZE_ADDRESS__)
  const bool sanitized = true;
  const char* intercepted = "mmap";
#else
  const bool sanitized = false;
  const char* intercepted = "open";
#endif
  const std::string where = mproc::test::forwarded_to(intercepted);
  if (sanitized) {
    EXPECT_EQ(where.find("libc.so"), std::string::npos) << intercepted << " skips the sanitizer: " << where;
#if !defined(__clang__)
    EXPECT_NE(where.find("san.so"), std::string::npos) << intercepted << " goes to " << where;
#endif
  } else {
    EXPECT_NE(where.find("libc.so"), std::string::npos) << intercepted << " goes to " << where;
  }
}

}  // namespace
