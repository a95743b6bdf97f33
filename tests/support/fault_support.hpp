#pragma once
// What the fault tests (tests/fault_*_test.cpp) share: a doorbell, a storm of signals, the census
// of what a failure must not leak, and the sweep that fails each resource call in turn.
//
// mproc's promise under faults: a call interrupted by a signal (EINTR) is retried transparently —
// it completes with the right result and its timeout is still honoured — and a resource that
// cannot be had (ENOSPC, ENOMEM, EMFILE, ENFILE, EAGAIN) surfaces as an mproc::Error carrying
// the errno and naming the object. Never a crash, a hang, a lost message, or a leaked object:
// after a failure the process has the same descriptors, the same shared mappings, no new
// /dev/shm/mproc.* name and no child.
//
// Real interruptions come from a POSIX timer that fires SIGUSR1 at the blocked thread every
// millisecond, through a handler installed without SA_RESTART. Injected failures come from
// support/fault_injection.hpp, which interposes the libc functions in each fault test executable;
// named objects are exercised through the public factories only, so that these tests hold
// whatever system calls the implementation makes (the sweeps discover them by counting).
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "mproc/error.hpp"
#include "support/fault_injection.hpp"
#include "support/test_support.hpp"

namespace mproc_test::fault {

using mproc::test::FaultPlan;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

/// A pipe that a signal handler or the fault seam can ring (write is async-signal-safe) and a
/// process can wait on with a deadline. Like mproc_test::Flag, with the descriptor exposed.
class Doorbell {
 public:
  Doorbell() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  ~Doorbell() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;
  void ring() const noexcept { (void)!::write(fds_[1], "x", 1); }
  int write_fd() const noexcept { return fds_[1]; }
  int read_fd() const noexcept { return fds_[0]; }
  bool wait_for(std::chrono::milliseconds timeout) const { return wait_readable(fds_[0], timeout); }

  static bool wait_readable(int fd, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() < 0) return false;
      pollfd p{fd, POLLIN, 0};
      const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return false;
      char c;
      return ::read(fd, &c, 1) == 1;
    }
  }

 private:
  int fds_[2];
};

// Signals handled by the storm's handler (in this process).
inline std::atomic<unsigned> g_storm_handled{0};

extern "C" inline void on_storm_signal(int) {
  g_storm_handled.fetch_add(1, std::memory_order_relaxed);
}

/// SIGUSR1 at the calling thread every millisecond (from a helper thread, with tgkill), handled
/// without SA_RESTART: every blocking system call the thread makes meanwhile returns EINTR,
/// again and again. Once `ring_at` signals have been handled it rings `bell` (once), so that a
/// peer acts only once the caller has really been interrupted that many times, however long a
/// loaded machine keeps the caller off a core (a signal sent while another is still pending
/// merges with it).
/// (Under ThreadSanitizer, which defers a handler until its thread leaves the system call, it
/// counts signals sent instead: the call is interrupted all the same.)
class SignalStorm {
 public:
  explicit SignalStorm(unsigned ring_at = 0, const Doorbell* bell = nullptr) {
    g_storm_handled.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_storm_signal;
    sa.sa_flags = 0;  // no SA_RESTART: that is the point
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGUSR1, &sa, &old_) != 0)
      throw std::system_error(errno, std::generic_category(), "sigaction");
    const pid_t pid = ::getpid();
    const pid_t target = ::gettid();
    thread_ = std::thread([this, pid, target, ring_at, bell] {
      sigset_t mine;
      sigemptyset(&mine);
      sigaddset(&mine, SIGUSR1);
      ::pthread_sigmask(SIG_BLOCK, &mine, nullptr);
      while (!stop_.load()) {
        (void)::tgkill(pid, target, SIGUSR1);
        const unsigned sent = sent_.fetch_add(1) + 1;
        if (bell != nullptr && !rung_.load() && (kCountsHandled ? g_storm_handled.load() : sent) >= ring_at) {
          bell->ring();
          rung_.store(true);
        }
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  ~SignalStorm() {
    stop_.store(true);
    thread_.join();
    // Ignoring a signal discards one still pending; then the old action is safe to restore.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGUSR1, &ignore, nullptr);
    ::sigaction(SIGUSR1, &old_, nullptr);
  }
  SignalStorm(const SignalStorm&) = delete;
  SignalStorm& operator=(const SignalStorm&) = delete;

  /// Checks that the storm really hit the thread: with a bell, that it rang (`ring_at` handled);
  /// without, `n` signals sent and, where handlers run promptly, a good part of them handled.
  /// Not all: signals merge while one is pending, and on a loaded machine the target can wait
  /// for a core longer than the storm's 1 ms period.
  /// Signals sent so far, and handled (where handlers are counted; elsewhere, those sent).
  unsigned sent() const { return sent_.load(); }
  unsigned handled() const { return kCountsHandled ? g_storm_handled.load() : sent_.load(); }

  void expect_at_least(unsigned n) const {
    EXPECT_GE(sent_.load(), n);
    if (kCountsHandled) {
      EXPECT_GE(g_storm_handled.load(), rung_.load() ? n : n / 4) << "signals sent but not handled";
    }
  }

 private:
#if defined(__SANITIZE_THREAD__)
  static constexpr bool kCountsHandled = false;
#else
  static constexpr bool kCountsHandled = true;
#endif
  std::atomic<bool> rung_{false};
  struct sigaction old_ {};
  std::atomic<bool> stop_{false};
  std::atomic<unsigned> sent_{0};
  std::thread thread_;
};

/// What a failure must not leave behind, as seen from this process.
struct Resources {
  int descriptors = 0;
  int shared_mappings = 0;      // every mproc segment is one MAP_SHARED mapping
  std::set<std::string> named;  // /dev/shm/mproc.<this test's prefix>*
  std::string children;         // pids of this process's children

  bool operator==(const Resources&) const = default;
};

// Under the run's prefix, unique to this process: "<run prefix>fault-<pid>-".
inline std::string test_prefix() {
  return mproc_test::unique_name("fault") + "-";
}

inline Resources resources() {
  Resources r;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) r.descriptors += e->d_name[0] != '.';
    ::closedir(d);
    --r.descriptors;  // the directory's own
  }
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    // "start-end perms offset dev inode path": perms is "rw-s" for a shared mapping.
    const auto sp = line.find(' ');
    if (sp != std::string::npos && sp + 4 < line.size() && line[sp + 4] == 's') ++r.shared_mappings;
  }
  const std::string mine = "mproc." + test_prefix();
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d)) {
      if (std::string_view(e->d_name).rfind(mine, 0) == 0) r.named.insert(e->d_name);
    }
    ::closedir(d);
  }
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/children");
      for (std::string pid; f >> pid;) r.children += pid + " ";
    }
    ::closedir(d);
  }
  return r;
}

inline std::string describe(const Resources& r) {
  std::string s = std::to_string(r.descriptors) + " descriptors, " + std::to_string(r.shared_mappings) +
                  " shared mappings, names {";
  for (const auto& n : r.named) s += " " + n;
  return s + " }, children {" + r.children + "}";
}

inline void PrintTo(const Resources& r, std::ostream* os) {
  *os << describe(r);
}

#define EXPECT_NOTHING_LEAKED(before) \
  EXPECT_EQ(::mproc_test::fault::resources(), before) << "something leaked"

/// Removes every /dev/shm/mproc.<prefix>* file this test may have left.
inline void remove_test_names() {
  const std::string mine = "mproc." + test_prefix();
  if (DIR* d = ::opendir("/dev/shm")) {
    std::vector<std::string> doomed;
    while (const dirent* e = ::readdir(d)) {
      if (std::string_view(e->d_name).rfind(mine, 0) == 0) doomed.emplace_back(e->d_name);
    }
    ::closedir(d);
    for (const auto& n : doomed) ::unlink(("/dev/shm/" + n).c_str());
  }
}

/// What `f` did: succeeded, or threw an mproc::Error with this errno and message. Any other
/// exception is recorded as code -1, which no test accepts.
struct Outcome {
  bool threw = false;
  int code = 0;
  std::string what;
};
template <class F>
Outcome outcome_of(F&& f) {
  Outcome o;
  try {
    f();
  } catch (const mproc::Error& e) {
    o.threw = true;
    o.code = e.code().value();
    o.what = e.what();
  } catch (const std::exception& e) {
    o.threw = true;
    o.code = -1;
    o.what = std::string("not an mproc::Error: ") + e.what();
  }
  return o;
}

// The error a resource-creating function fails with when the system runs out of something.
inline int natural_error(std::string_view function) {
  if (function == "mmap" || function == "fstat") return ENOMEM;
  if (function == "posix_fallocate" || function == "fallocate" || function == "ftruncate" ||
      function == "linkat") {
    return ENOSPC;
  }
  if (function == "fchmod") return EPERM;
  if (function == "fcntl") return ENOLCK;
  if (function == "pread" || function == "pwrite") return EIO;
  if (function == "fork") return EAGAIN;
  return EMFILE;  // open, openat, shm_open, memfd_create, eventfd, socketpair, pidfd_open
}

// The calls through which mproc creates and opens things: what the sweeps fail one by one.
inline constexpr std::string_view kResourceCalls[] = {
    "open",      "openat", "shm_open", "memfd_create", "fchmod", "fstat",  "ftruncate", "posix_fallocate",
    "fallocate", "mmap",   "linkat",   "fcntl",        "pread",  "pwrite", "eventfd",   "socketpair"};

struct Counted {
  std::string_view function;
  std::uint64_t calls;
};

/// The resource calls `f` makes, counted (f runs once, with nothing failing).
template <class F>
std::vector<Counted> calls_made_by(F&& f) {
  FaultPlan counter;
  for (auto fn : kResourceCalls) counter.count(fn);
  f();
  counter.disarm();
  std::vector<Counted> made;
  for (auto fn : kResourceCalls) {
    if (const auto n = counter.calls(fn)) made.push_back({fn, n});
  }
  return made;
}

/// Whether `what` contains one of the '|'-separated words of `alternatives`.
inline bool names_any(const std::string& what, const std::string& alternatives) {
  std::size_t from = 0;
  for (;;) {
    const std::size_t bar = alternatives.find('|', from);
    if (what.find(alternatives.substr(from, bar - from)) != std::string::npos) return true;
    if (bar == std::string::npos) return false;
    from = bar + 1;
  }
}

/// Fails each resource call that `make` makes, one at a time (the k-th call of each function,
/// for every k), and checks each outcome: an mproc::Error carrying that errno and mentioning
/// `mention`, or success when the failed call was one the library may do without (a
/// best-effort sweep, say) — and, either way, nothing leaked. `cleanup` removes what a trial
/// created (or leaked), so that trials are independent.
template <class Make, class Cleanup>
void sweep_failures(const char* what, const std::string& mention, Make make, Cleanup cleanup,
                    std::uint64_t* errors_seen = nullptr) {
  const std::vector<Counted> made = calls_made_by(make);
  cleanup();
  ASSERT_FALSE(made.empty()) << what << " made none of the resource calls the sweep watches";
  for (const Counted& c : made) {
    for (std::uint64_t k = 0; k < c.calls; ++k) {
      const int err = natural_error(c.function);
      const Resources before = resources();
      Outcome o;
      std::uint64_t injected = 0;
      {
        FaultPlan plan;
        plan.inject(c.function, err, static_cast<unsigned>(k), 1);
        o = outcome_of(make);
        injected = plan.injected();
      }
      SCOPED_TRACE(std::string(what) + ": call " + std::to_string(k + 1) + " of " + std::to_string(c.calls) +
                   " to " + std::string(c.function) + " failed with " + std::strerror(err));
      if (o.threw) {
        EXPECT_EQ(o.code, err) << o.what;
        EXPECT_TRUE(names_any(o.what, mention)) << "the error does not name " << mention << ": " << o.what;
        if (errors_seen != nullptr) ++*errors_seen;
      } else {
        cleanup();  // what it created
      }
      if (injected != 0 || o.threw) {  // else the path changed between runs and nothing failed
        EXPECT_NOTHING_LEAKED(before);
      }
      cleanup();  // so that one leak does not spoil the trials after it
    }
  }
}

/// How a blocked or timed call is interrupted: by real signals, or by EINTR injected into its
/// system calls.
enum class Interruption { signals, injected };

/// The entries of a table of blocking or timed calls whose waits the seam can interrupt.
template <class Entry, std::size_t N>
std::vector<Entry> injectable(const Entry (&table)[N]) {
  std::vector<Entry> v;
  for (const auto& e : table) {
    if (e.injectable) v.push_back(e);
  }
  return v;
}

// Each parameterised test is named after its entry.
inline const auto by_entry_name = [](const auto& param) { return std::string(param.param.name); };

/// A descriptor a Pool task waits on for the test's say-so (a worker inherits it).
inline int g_pool_bell_fd = -1;

}  // namespace mproc_test::fault
