#pragma once
// Helpers for mproc's multi-process tests. Tests never synchronise with sleep: a child tells
// the parent it reached a point through a Flag (a pipe), and every wait has a deadline. The
// watchdog in test_main.cpp fails a test that deadlocks anyway.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <system_error>
#include <utility>

#include "mproc/error.hpp"
#include "mproc/inspect.hpp"
#include "mproc/process.hpp"
#include "mproc/start_method.hpp"

namespace mproc_test {

/// Exit code of a child whose CHILD_CHECK failed.
inline constexpr int kChildCheckFailed = 99;

/// In a child, gtest assertions are invisible to the parent: report through the exit code.
#define CHILD_CHECK(cond)                                                                   \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "child check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::fflush(stderr);                                                                  \
      ::_exit(::mproc_test::kChildCheckFailed);                                             \
    }                                                                                       \
  } while (0)

/// A one-way notification between processes (or threads) through a pipe. Created before fork,
/// it is shared by parent and child.
class Flag {
 public:
  Flag() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  ~Flag() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  Flag(const Flag&) = delete;
  Flag& operator=(const Flag&) = delete;

  void raise() const noexcept { (void)!::write(fds_[1], "x", 1); }
  /// Sends a small value (pid, count) instead of a bare "x".
  void send(int value) const noexcept { (void)!::write(fds_[1], &value, sizeof value); }
  /// Waits for one raise(); false on timeout.
  bool wait_for(std::chrono::milliseconds timeout) const {
    char c;
    return read_exact(&c, 1, timeout);
  }
  bool receive(int& value, std::chrono::milliseconds timeout) const {
    return read_exact(&value, sizeof value, timeout);
  }
  /// Blocks forever (until killed): what a child does after it reached the point under test.
  [[noreturn]] void block_forever() const {
    for (;;) ::pause();
  }

 private:
  bool read_exact(void* out, std::size_t n, std::chrono::milliseconds timeout) const {
    auto* p = static_cast<char*>(out);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (n > 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) return false;
      pollfd pfd{fds_[0], POLLIN, 0};
      const int rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return false;
      const ssize_t got = ::read(fds_[0], p, n);
      if (got <= 0) return false;
      p += got;
      n -= static_cast<std::size_t>(got);
    }
    return true;
  }

  int fds_[2];
};

/// A T placed in anonymous shared memory: parent and children see the same object.
template <class T>
class Shared {
 public:
  Shared() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    value_ = new (p) T{};
  }
  ~Shared() { ::munmap(value_, sizeof(T)); }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  T& operator*() const noexcept { return *value_; }
  T* operator->() const noexcept { return value_; }

 private:
  T* value_;
};

/// A fresh directory, removed with its contents by the process that created it. Its name carries
/// the run's $MPROC_TEST_PREFIX, so that scripts/test can tell a redis-server of this run left
/// running (its working directory is one of these) from another program's.
class TempDir {
 public:
  TempDir() {
    const char* prefix = std::getenv("MPROC_TEST_PREFIX");
    std::string tmpl = (std::filesystem::temp_directory_path() /
                        ("mproc-test-" + std::string(prefix != nullptr ? prefix : "") + "XXXXXX"))
                           .string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() {
    if (::getpid() == owner_) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  pid_t owner_ = ::getpid();
};

/// How long a test waits for something that should happen promptly. Generous: CI machines are
/// shared and slow under sanitizers. Never an assertion about speed.
inline constexpr std::chrono::seconds kPatience{20};

/// Starts a child as a daemon, so that it dies with the test runner if the watchdog fires.
/// Forked whatever the process-wide start method: `f` is typically a lambda.
template <class F, class... Args>
mproc::Process start_child(F&& f, Args&&... args) {
  mproc::Process p(std::forward<F>(f), std::forward<Args>(args)...);
  p.set_start_method(mproc::StartMethod::fork);
  p.set_daemon(true);
  p.start();
  return p;
}

/// The prefix of every named object this test run creates (/dev/shm/mproc.<prefix>...):
/// $MPROC_TEST_PREFIX, which scripts/test sets once per run (and CTest passes on to every test),
/// so that the run checks only its own leftovers and never meets another program's or another
/// run's objects; "test-<pid>-" when it is unset (a test binary run by hand).
inline const std::string& run_prefix() {
  static const std::string prefix = [] {
    const char* s = std::getenv("MPROC_TEST_PREFIX");
    return s != nullptr && *s != '\0' ? std::string(s) : "test-" + std::to_string(::getpid()) + "-";
  }();
  return prefix;
}

/// A name for a named object, under the run's prefix and unique to this test process (tests of
/// one run go on in parallel): <prefix><stem>-<pid>. Every name a test creates comes from here.
inline std::string unique_name(const std::string& stem) {
  return run_prefix() + stem + "-" + std::to_string(::getpid());
}

/// A unique_name for a named object of kind Q (anything with a static unlink(name)), unlinked
/// when the test ends, however it ends (a tracked object may be gone already: its last user
/// removed it on close).
template <class Q>
class ScratchName {
 public:
  explicit ScratchName(const std::string& stem) : name_(unique_name(stem)) {}
  ~ScratchName() {
    try {
      Q::unlink(name_);
    } catch (const mproc::Error& e) {
      if (e.code().value() != ENOENT) ADD_FAILURE() << e.what();
    }
  }
  ScratchName(const ScratchName&) = delete;
  ScratchName& operator=(const ScratchName&) = delete;
  const std::string& str() const noexcept { return name_; }

 private:
  std::string name_;
};

/// Waits (at most kPatience) until a process sleeps in get (`consumer`) or in put on the named
/// queue `name`, as `mproc ls` would report it: a sleeper holds its side of the queue (its lock,
/// or the side's bias) until it wakes.
inline bool wait_for_sleeper(const std::string& name, bool consumer) {
  auto asleep = [&] {
    for (const mproc::NamedObjectInfo& o : mproc::list_named_objects()) {
      // A consumer counts as asleep only once the queue is empty: its waiting flag is still set
      // for a moment after a put woke it (seen under ThreadSanitizer, whose wake-ups are slow).
      if (o.name == name)
        return consumer ? o.consumer_waiting && o.depth == std::size_t{0} : o.producer_waiting;
    }
    return false;
  };
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (!asleep()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    ::usleep(1000);  // polling a condition, not synchronisation by time
  }
  return true;
}
inline bool wait_for_sleeping_consumer(const std::string& name) {
  return wait_for_sleeper(name, true);
}
inline bool wait_for_sleeping_producer(const std::string& name) {
  return wait_for_sleeper(name, false);
}

/// Joins a child (failing the test if it does not end within kPatience) and returns its exit
/// code, or -1000 if it had none.
inline int exit_code_of(mproc::Process& p) {
  EXPECT_TRUE(p.join(kPatience)) << p.name() << " did not end";
  return p.exitcode().value_or(-1000);
}

/// Everything readable from `fd` until end of stream.
inline std::string read_all(int fd) {
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

/// Runs `f` in a forked child whose stderr goes to a pipe; returns its exit code and what it
/// wrote there (read to end of stream: once the child and any children it started have exited).
template <class F>
std::pair<int, std::string> run_capturing_stderr(F f) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  mproc::Process p = start_child([&] {
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    f();
    mproc::stop_forkserver();  // one that f started: its children would hold the pipe open
  });
  ::close(fds[1]);
  std::string text = read_all(fds[0]);
  ::close(fds[0]);
  return {exit_code_of(p), text};
}

}  // namespace mproc_test
