#pragma once
// What the benchmarks share: medians and per-round ratios, a shared anonymous mapping for the
// children's start flags and results, CPU pinning, a bounded start-line spin, the clock, whole
// reads and writes on descriptors, a pipe and a temporary directory.
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mproc/process.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace bench {

[[noreturn]] inline void fail_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];  // the round counts are odd
}

/// One figure measured once per round.
struct Series {
  std::vector<double> values;
  double med() const { return median(values); }
  double min() const { return *std::min_element(values.begin(), values.end()); }
  double max() const { return *std::max_element(values.begin(), values.end()); }
};

/// num[i] / den[i], round by round: ratios taken within one round, then summarised.
inline std::vector<double> ratios(const Series& num, const Series& den) {
  std::vector<double> r;
  for (std::size_t i = 0; i < num.values.size(); ++i) r.push_back(num.values[i] / den.values[i]);
  return r;
}

/// A MAP_SHARED|MAP_ANONYMOUS region: shared with every child forked while it exists.
class SharedMap {
 public:
  explicit SharedMap(std::size_t size) : size_(size) {
    addr_ = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (addr_ == MAP_FAILED) fail_errno("mmap");
  }
  SharedMap(const SharedMap&) = delete;
  SharedMap& operator=(const SharedMap&) = delete;
  ~SharedMap() { ::munmap(addr_, size_); }
  void* data() const { return addr_; }

 private:
  void* addr_;
  std::size_t size_;
};

// Child i of a pinned scenario runs on CPU i (modulo their number), so that two processes really
// run side by side: left alone, the scheduler sometimes puts both on one core, and then they
// take turns per time slice and hardly interact at all.
inline constexpr std::size_t kNoCpu = static_cast<std::size_t>(-1);

/// The CPUs this process may run on; empty when unknown (then children are not pinned).
inline std::vector<std::size_t> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<std::size_t> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (std::size_t c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
  return cpus;
}

inline void pin_to_cpu(std::size_t cpu) {
  if (cpu == kNoCpu) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) fail_errno("sched_setaffinity");
}

static_assert(std::atomic<int>::is_always_lock_free, "the start flag must work across processes");

/// Waits at the start line: spins briefly, then yields (a benchmark, not a library wait).
inline void spin_until(const std::atomic<int>& flag, int value) {
  for (int spins = 0; flag.load(std::memory_order_acquire) < value; ++spins) {
    if (spins > 1000) ::sched_yield();
  }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process, so a child can stamp when
/// it finished and the parent can compare that with its own start stamp.
inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Exactly `size` bytes, looping on short reads and EINTR; end of file is an error (the
/// benchmarks count their messages, so an early end means one was lost).
inline void read_full(int fd, void* buf, std::size_t size, const char* what = "pipe") {
  auto* p = static_cast<std::byte*>(buf);
  while (size > 0) {
    const ssize_t n = ::read(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(std::string("read from ") + what);
    }
    if (n == 0) throw std::runtime_error(std::string("unexpected end of file on ") + what);
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

inline void write_full(int fd, const void* buf, std::size_t size, const char* what = "pipe") {
  const auto* p = static_cast<const std::byte*>(buf);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(std::string("write to ") + what);
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

/// A pipe(2): both ends open in the parent, inherited by every child forked while it exists.
/// Each child uses the ends it needs; closing the others is unnecessary when no reader relies
/// on end-of-file (message counts and sentinels end the loops).
class OsPipe {
 public:
  OsPipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) fail_errno("pipe2");
  }
  ~OsPipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  OsPipe(const OsPipe&) = delete;
  OsPipe& operator=(const OsPipe&) = delete;
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }

 private:
  int fds_[2] = {-1, -1};
};

/// A mkdtemp directory under $TMPDIR (or /tmp), removed with its files on destruction. Children
/// leave with _exit(), so only the parent's destructor runs.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix) {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != 0 ? base : "/tmp") + "/" + std::string(prefix) + ".XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) fail_errno("mkdtemp " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

/// A benchmark's main(): accepts only --quick, runs run(quick), turns an exception into a message
/// and exit status 1 (2 for a bad argument).
template <class Run>
int main_with_quick(int argc, char** argv, const char* name, Run run) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--quick") {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return 2;
    }
  }
  try {
    return run(quick);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return 1;
  }
}

/// Joins every child of a run. When one exits non-zero, or `timeout` passes first, its peers
/// may wait for it forever (a consumer for a message that will never come): they are killed.
/// Returns what went wrong, "" if nothing; `why(i)` may give child i's own account.
inline std::string join_all(std::vector<mproc::Process>& procs, const std::string& name,
                            std::chrono::seconds timeout,
                            const std::function<std::string(std::size_t)>& why = {}) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string failure;
  std::vector<bool> joined(procs.size(), false);
  for (std::size_t left = procs.size(); left > 0;) {
    left = 0;
    for (std::size_t i = 0; i < procs.size(); ++i) {
      mproc::Process& p = procs[i];
      if (joined[i]) continue;
      if (!p.join(std::chrono::milliseconds(20))) {
        ++left;
        continue;
      }
      joined[i] = true;
      if (p.exitcode() != 0 && failure.empty()) {
        const std::string own = why ? why(i) : std::string();
        failure = !own.empty() ? own
                               : name + ": child " + p.name() + " exited with " +
                                     std::to_string(p.exitcode().value_or(-999));
        failure += " (the run's other processes were killed)";
        for (auto& other : procs) other.kill();
      }
    }
    if (left > 0 && failure.empty() && std::chrono::steady_clock::now() > deadline) {
      failure = name + ": not finished after " + std::to_string(timeout.count()) +
                " s: a message or a wake-up was lost (or the machine is badly overloaded); "
                "the children were killed";
      for (auto& other : procs) other.kill();
    }
  }
  return failure;
}

}  // namespace bench
