// mproc::Process: lifecycle, exit codes, names, misuse, daemon children — with real processes.
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "mproc/error.hpp"
#include "mproc/process.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Process;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::run_capturing_stderr;
using mproc_test::start_child;

namespace {

// A started daemon child: tests' children die with the runner if the watchdog fires.

int name_number(const std::string& name) {
  EXPECT_EQ(name.rfind("Process-", 0), 0u) << name;
  return std::atoi(name.c_str() + 8);
}

}  // namespace

TEST(Process, returning_normally_gives_exit_code_zero) {
  Process p = start_child([] {});
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Process, std_exit_gives_its_status_as_exit_code) {
  Process p = start_child([] { std::exit(3); });
  EXPECT_EQ(exit_code_of(p), 3);
}

TEST(Process, mproc_exit_unwinds_the_target_and_gives_its_code) {
  Flag unwound;
  struct Raii {
    const Flag& flag;
    ~Raii() { flag.raise(); }
  };
  Process p = start_child([&] {
    Raii guard{unwound};
    try {
      mproc::exit(5);
    } catch (const std::exception&) {
      std::_Exit(2);  // SystemExit must not be a std::exception
    }
  });
  EXPECT_EQ(exit_code_of(p), 5);
  EXPECT_TRUE(unwound.wait_for(0ms)) << "the target's destructors must run";
}

TEST(Process, target_receives_decay_copied_arguments_and_move_only_ones) {
  auto owned = std::make_unique<int>(5);
  Process p = start_child([](int a, const std::string& s,
                             std::unique_ptr<int> u) { CHILD_CHECK(a == 7 && s == "seven" && u && *u == 5); },
                          7, std::string("seven"), std::move(owned));
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Process, uncaught_exception_prints_type_and_message_and_exits_with_one) {
  auto [code, text] = run_capturing_stderr([] { throw std::invalid_argument("bad ticket count"); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(text.find("std::invalid_argument: bad ticket count"), std::string::npos) << text;
  EXPECT_NE(text.find("Process Process-"), std::string::npos) << text;
}

TEST(Process, uncaught_non_standard_exception_names_its_type) {
  auto [code, text] = run_capturing_stderr([] { throw 42; });
  EXPECT_EQ(code, 1);
  EXPECT_NE(text.find("uncaught int"), std::string::npos) << text;
}

TEST(Process, terminate_gives_minus_sigterm) {
  Flag ready;
  Process p = start_child([&] {
    ready.raise();
    ready.block_forever();
  });
  ASSERT_TRUE(ready.wait_for(kPatience));
  p.terminate();
  EXPECT_EQ(exit_code_of(p), -SIGTERM);
}

TEST(Process, kill_gives_minus_sigkill_even_when_sigterm_is_ignored) {
  Flag ready;
  Process p = start_child([&] {
    std::signal(SIGTERM, SIG_IGN);
    ready.raise();
    ready.block_forever();
  });
  ASSERT_TRUE(ready.wait_for(kPatience));
  p.terminate();
  EXPECT_FALSE(p.join(50ms)) << "SIGTERM was ignored, so the child must still run";
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
}

TEST(Process, join_with_timeout_returns_false_while_running_and_true_once_ended) {
  Flag go;
  Process p = start_child([&] { CHILD_CHECK(go.wait_for(kPatience)); });
  EXPECT_FALSE(p.join(100ms));
  EXPECT_TRUE(p.is_alive());
  EXPECT_FALSE(p.exitcode().has_value());
  go.raise();
  EXPECT_TRUE(p.join(kPatience));
  EXPECT_FALSE(p.is_alive());
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, join_timeout_lasts_at_least_the_timeout) {
  Flag never;
  Process p = start_child([&] { never.block_forever(); });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(p.join(200ms));
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 200ms);
  EXPECT_LT(waited, 200ms + kPatience) << "join(timeout) overslept grossly";
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
}

TEST(Process, unstarted_process_is_not_alive_and_has_no_pid_or_exit_code) {
  Process p([] {});
  EXPECT_FALSE(p.is_alive());
  EXPECT_FALSE(p.pid().has_value());
  EXPECT_FALSE(p.exitcode().has_value());
  EXPECT_EQ(p.sentinel(), -1);
}

TEST(Process, default_names_count_up_like_python) {
  Process a([] {});
  Process b([] {});
  EXPECT_EQ(name_number(b.name()), name_number(a.name()) + 1);
  b.set_name("worker");
  EXPECT_EQ(b.name(), "worker");
}

TEST(Process, child_knows_its_name_pid_daemon_flag_and_parent) {
  const pid_t me = ::getpid();
  EXPECT_EQ(mproc::current_process().name, "MainProcess");
  EXPECT_FALSE(mproc::parent_process().has_value());
  Process p([me] {
    const auto self = mproc::current_process();
    CHILD_CHECK(self.name == "collector");
    CHILD_CHECK(self.pid == ::getpid());
    CHILD_CHECK(self.daemon);
    const auto parent = mproc::parent_process();
    CHILD_CHECK(parent.has_value() && parent->pid == me && parent->name == "MainProcess");
  });
  p.set_name("collector").set_daemon(true);
  p.start();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Process, children_of_a_child_are_named_after_it) {
  Process p([] {
    const std::string mine = mproc::current_process().name;
    Process grandchild([] {});
    CHILD_CHECK(grandchild.name() == mine + ":1");
    grandchild.start();
    grandchild.join();
    CHILD_CHECK(grandchild.exitcode() == 0);
  });
  p.set_daemon(true);
  p.start();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Process, starting_twice_is_a_usage_error) {
  Process p = start_child([] {});
  EXPECT_THROW(p.start(), mproc::UsageError);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Process, joining_a_process_never_started_is_a_usage_error) {
  Process p([] {});
  EXPECT_THROW(p.join(), mproc::UsageError);
  EXPECT_THROW((void)p.join(1s), mproc::UsageError);
  EXPECT_THROW(p.terminate(), mproc::UsageError);
}

TEST(Process, joining_the_current_process_is_a_usage_error) {
  Process p([] {});
  // The child's copy of `p` describes the child itself.
  Process* self = &p;
  p = Process([&self] {
    try {
      self->join();
    } catch (const mproc::UsageError& e) {
      CHILD_CHECK(std::string(e.what()).find("current process") != std::string::npos);
      CHILD_CHECK(self->is_alive());
      std::exit(0);
    }
    std::exit(2);
  });
  p.set_daemon(true);
  p.start();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Process, a_sibling_cannot_join_or_signal_a_process_it_did_not_start) {
  Flag done;
  Process first = start_child([&] { CHILD_CHECK(done.wait_for(kPatience)); });
  Process second = start_child([&] {
    bool refused_join = false, refused_kill = false;
    try {
      first.join();
    } catch (const mproc::UsageError&) {
      refused_join = true;
    }
    try {
      first.kill();
    } catch (const mproc::UsageError&) {
      refused_kill = true;
    }
    CHILD_CHECK(refused_join && refused_kill);
  });
  EXPECT_EQ(exit_code_of(second), 0);
  done.raise();
  EXPECT_EQ(exit_code_of(first), 0);
}

TEST(Process, destroying_a_running_process_terminates_and_reaps_it) {
  Flag ready;
  int watcher = -1;
  {
    Process p = start_child([&] {
      ready.raise();
      ready.block_forever();
    });
    ASSERT_TRUE(ready.wait_for(kPatience));
    watcher = static_cast<int>(::syscall(SYS_pidfd_open, *p.pid(), 0));
    ASSERT_GE(watcher, 0);
  }  // ~Process: SIGTERM, reap
  siginfo_t info{};
  EXPECT_EQ(::waitid(P_PIDFD, static_cast<id_t>(watcher), &info, WEXITED | WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD) << "the child must already have been reaped";
  pollfd pfd{watcher, POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 1) << "the child must have ended";
  ::close(watcher);
}

TEST(Process, a_process_that_ended_unjoined_is_reaped_by_its_destructor) {
  {
    Process p = start_child([] {});
    pollfd pfd{p.sentinel(), POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, static_cast<int>(std::chrono::milliseconds(kPatience).count())), 1);
  }
  // The runner's child audit fails this test if a zombie is left.
}

TEST(Process, terminate_after_the_child_ended_is_a_no_op) {
  Process p = start_child([] { std::exit(4); });
  EXPECT_EQ(exit_code_of(p), 4);
  p.terminate();
  p.kill();
  EXPECT_EQ(p.exitcode(), 4);
}

TEST(Process, active_children_lists_running_children_only) {
  Flag go;
  Process a = start_child([&] { CHILD_CHECK(go.wait_for(kPatience)); });
  Process b = start_child([] {});
  ASSERT_TRUE(b.join(kPatience));
  auto alive = mproc::active_children();
  ASSERT_EQ(alive.size(), 1u);
  EXPECT_EQ(alive[0].pid, *a.pid());
  EXPECT_EQ(alive[0].name, a.name());
  go.raise();
  ASSERT_TRUE(a.join(kPatience));
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST(Process, cpu_count_is_the_affinity_mask_size) {
  const int n = mproc::cpu_count();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, static_cast<int>(::sysconf(_SC_NPROCESSORS_CONF)));
}

TEST(Process, processes_can_be_kept_in_a_vector) {
  std::vector<Process> ps;
  for (int i = 0; i < 4; ++i) ps.emplace_back([](int n) { std::exit(n); }, i + 10);
  for (auto& p : ps) p.set_daemon(true).start();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(exit_code_of(ps[static_cast<std::size_t>(i)]), i + 10);
}

// Daemon semantics: a daemon child never outlives its parent, even a SIGKILLed one. The test
// runner becomes a child subreaper so that the orphaned grandchild is reparented to it and can
// be reaped here (and so leaves no zombie).
class DaemonTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0); }
  void TearDown() override { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }

  // Starts a middle process that starts a grandchild (daemon or not) and blocks; returns the
  // middle process and the grandchild's pid.
  std::pair<Process, pid_t> start_family(bool grandchild_is_daemon, Flag& release_grandchild) {
    Flag report;
    Process middle([&, grandchild_is_daemon] {
      Process grandchild([&] { CHILD_CHECK(release_grandchild.wait_for(kPatience)); });
      grandchild.set_daemon(grandchild_is_daemon);
      grandchild.start();
      report.send(static_cast<int>(*grandchild.pid()));
      report.block_forever();
    });
    middle.start();
    int pid = 0;
    EXPECT_TRUE(report.receive(pid, kPatience));
    return {std::move(middle), static_cast<pid_t>(pid)};
  }
};

TEST_F(DaemonTest, daemon_child_dies_when_its_parent_is_sigkilled) {
  Flag release;
  auto [middle, grandchild] = start_family(true, release);
  ASSERT_GT(grandchild, 0);
  middle.kill();
  EXPECT_EQ(exit_code_of(middle), -SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(grandchild, &status, 0), grandchild);  // reparented to us (subreaper)
  ASSERT_TRUE(WIFSIGNALED(status)) << "the daemon outlived its parent and exited by itself";
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

TEST_F(DaemonTest, non_daemon_child_outlives_its_sigkilled_parent) {
  Flag release;
  auto [middle, grandchild] = start_family(false, release);
  ASSERT_GT(grandchild, 0);
  middle.kill();
  EXPECT_EQ(exit_code_of(middle), -SIGKILL);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(grandchild), &info, WEXITED | WNOHANG | WNOWAIT), 0);
  EXPECT_EQ(info.si_pid, 0) << "a non-daemon child must keep running";
  release.raise();
  int status = 0;
  ASSERT_EQ(::waitpid(grandchild, &status, 0), grandchild);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
