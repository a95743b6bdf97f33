#pragma once
// What the benchmarks share: medians and per-round ratios, a shared anonymous mapping for the
// children's start flags and results, CPU pinning, and a bounded start-line spin.
#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <exception>
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

}  // namespace bench
