// The test runner: GoogleTest plus two guards that every test gets.
//  - A watchdog: a test that runs longer than MPROC_TEST_WATCHDOG_S seconds (default 60) is
//    taken for a deadlock; the runner prints which test and exits, instead of hanging CI.
//    Children started by tests are daemons, so they die with the runner.
//  - A child audit: after each test, the runner must have no child processes left, running or
//    zombie. A test that leaks one fails (a forkserver counts: stop_forkserver() before the end).
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "mproc/start_method.hpp"

namespace {

char g_current_test[512] = "(no test)";
unsigned g_watchdog_seconds = 60;

extern "C" void on_watchdog(int) {
  char msg[700];
  const int n = std::snprintf(msg, sizeof msg,
                              "\nWATCHDOG: %s did not finish within %u s; it is probably "
                              "deadlocked. Failing the run.\n",
                              g_current_test, g_watchdog_seconds);
  (void)!::write(STDERR_FILENO, msg, static_cast<std::size_t>(n));
  ::_exit(124);
}

// Children of this process, from /proc (every thread's list).
std::string list_children() {
  std::string out;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/children");
      std::string pid;
      while (f >> pid) out += pid + " ";
    }
    ::closedir(d);
  }
  return out;
}

class Guards : public testing::EmptyTestEventListener {
  void OnTestStart(const testing::TestInfo& info) override {
    std::snprintf(g_current_test, sizeof g_current_test, "%s.%s", info.test_suite_name(), info.name());
    ::alarm(g_watchdog_seconds);
  }
  void OnTestPartResult(const testing::TestPartResult&) override {}
  void OnTestEnd(const testing::TestInfo&) override {
    ::alarm(0);
    const std::string left = list_children();
    if (!left.empty()) {
      std::fprintf(stderr, "%s left child processes behind (pids %s): failing the run\n", g_current_test,
                   left.c_str());
      leaked_ = true;
    }
  }

 public:
  bool leaked_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  // In a child started by the spawn or forkserver start method this runs the child's entry
  // point and never returns (start_method_test.cpp).
  mproc::init(argc, argv);
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer runs a thread of its own, so every fork would print mproc's warning about
  // forking a threaded process into output that tests read (start_method_misuse_test unsets it).
  ::setenv("MPROC_NO_FORK_WARNING", "1", 0);
#endif
  testing::InitGoogleTest(&argc, argv);
  if (const char* s = std::getenv("MPROC_TEST_WATCHDOG_S"))
    g_watchdog_seconds = static_cast<unsigned>(std::atoi(s));
  struct sigaction sa {};
  sa.sa_handler = on_watchdog;
  ::sigaction(SIGALRM, &sa, nullptr);
  auto* guards = new Guards;  // owned by gtest's listener list
  testing::UnitTest::GetInstance()->listeners().Append(guards);
  const int rc = RUN_ALL_TESTS();
  return rc != 0 ? rc : (guards->leaked_ ? 1 : 0);
}
