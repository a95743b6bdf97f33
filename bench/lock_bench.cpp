// lock_bench — what mproc's crash safety costs, next to the locks it replaces.
//
// Measured (each figure is the median of kRounds rounds; every round runs every variant once,
// so the headline ratios are taken within one round and then their median is printed):
//
//  1. Uncontended: one thread acquires and releases the lock in a loop; ns per pair.
//       mproc::Lock, mproc::RLock, std::mutex, a process-shared *non-robust* pthread mutex in
//       MAP_SHARED|MAP_ANONYMOUS memory (what Boost.Interprocess uses), mproc::FileLock
//       (exclusive) and raw flock(2) LOCK_EX/LOCK_UN as the OS baseline for file locks.
//  2. Contended: 2 processes started with mproc::Process (child i pinned to CPU i, so that they
//       really run side by side) each increment a counter in
//       MAP_SHARED anonymous memory N times under the lock; total critical sections per second
//       (M ops/s) and the share of them that changed owner (a real handoff between processes).
//       The final counter is checked against 2*N: the program fails if it differs.
//       Children start together: each signals "ready" and spins (bounded, then sched_yield) on
//       a shared start flag that the parent sets once both are ready; the clock runs from that
//       moment until both are joined.
//  3. Peak RSS of the benchmark (parent) process, getrusage(RUSAGE_SELF).ru_maxrss.
//
// Lock files live in a mkdtemp directory under /tmp, removed at the end.
//
// Run (Release build):   ./build/release/bench/lock_bench            full run
//                        ./build/release/bench/lock_bench --quick    iteration counts / 10
// Exit status: 0 on success, 1 on a wrong counter, a failed child or any other error.
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "mproc/acquired.hpp"
#include "mproc/file_lock.hpp"
#include "mproc/lock.hpp"
#include "bench_util.hpp"
#include "mproc/process.hpp"

namespace {

using bench::allowed_cpus;
using bench::fail_errno;
using bench::kNoCpu;
using bench::median;
using bench::pin_to_cpu;
using bench::ratios;
using bench::Series;
using bench::SharedMap;
using bench::spin_until;
using bench::TempDir;

using Clock = std::chrono::steady_clock;

constexpr int kRounds = 5;
constexpr int kProcesses = 2;

// ---- small helpers -------------------------------------------------------------------------

void must(mproc::Acquired got, const char* what) {
  if (!got || got.owner_died()) throw std::runtime_error(std::string("unexpected result of ") + what);
}

void check_rc(int rc, const char* what) {
  if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A process-shared, non-robust pthread mutex in its own shared page (as Boost.Interprocess).
class PsharedMutex {
 public:
  PsharedMutex() : map_(sizeof(pthread_mutex_t)) {
    m_ = static_cast<pthread_mutex_t*>(map_.data());
    pthread_mutexattr_t attr;
    check_rc(::pthread_mutexattr_init(&attr), "pthread_mutexattr_init");
    check_rc(::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED), "setpshared");
    check_rc(::pthread_mutex_init(m_, &attr), "pthread_mutex_init");
    ::pthread_mutexattr_destroy(&attr);
  }
  ~PsharedMutex() { ::pthread_mutex_destroy(m_); }
  PsharedMutex(const PsharedMutex&) = delete;
  PsharedMutex& operator=(const PsharedMutex&) = delete;
  void lock() { check_rc(::pthread_mutex_lock(m_), "pthread_mutex_lock"); }
  void unlock() { check_rc(::pthread_mutex_unlock(m_), "pthread_mutex_unlock"); }

 private:
  SharedMap map_;
  pthread_mutex_t* m_;
};

int open_rw(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) fail_errno("open " + path);
  return fd;
}

void flock_or_throw(int fd, int op) {
  if (::flock(fd, op) != 0) fail_errno("flock");
}

// ---- 1. uncontended ------------------------------------------------------------------------

template <class Acquire, class Release>
double ns_per_pair(std::int64_t iterations, Acquire acquire, Release release) {
  const auto t0 = Clock::now();
  for (std::int64_t i = 0; i < iterations; ++i) {
    acquire();
    release();
  }
  return seconds_since(t0) * 1e9 / static_cast<double>(iterations);
}

// ---- 2. contended --------------------------------------------------------------------------

// The state both children share: the start barrier and the guarded counter.
struct Arena {
  std::atomic<int> ready;
  std::atomic<int> go;
  alignas(64) std::uint64_t counter;  // guarded by the lock under test
  std::uint64_t switches;             // guarded: critical sections whose owner changed
  int last_owner;                     // guarded
};

// Runs in each child: wait for the start signal, then `increments` critical sections.
template <class Acquire, class Release>
void increment_loop(Arena& a, int id, std::int64_t increments, Acquire acquire, Release release) {
  a.ready.fetch_add(1, std::memory_order_acq_rel);
  spin_until(a.go, 1);
  for (std::int64_t i = 0; i < increments; ++i) {
    acquire();
    ++a.counter;
    if (a.last_owner != id) {
      ++a.switches;
      a.last_owner = id;
    }
    release();
  }
}

struct ContendedResult {
  double mops;        // million critical sections per second, all processes together
  double switch_pct;  // percentage of critical sections that changed owner
};

// `child(id)` sets up its own handle on the lock and calls increment_loop.
// The CPUs this process may run on. Child i is pinned to CPU i (modulo their number), so that
// two children really run on two cores: left alone, the scheduler sometimes puts both on one
// core, and then they take turns per time slice and hardly contend at all.

template <class Child>
ContendedResult contended(Arena& a, const std::vector<std::size_t>& cpus, std::int64_t increments,
                          const char* name, Child child) {
  a.ready.store(0);
  a.go.store(0);
  a.counter = 0;
  a.switches = 0;
  a.last_owner = -1;

  std::vector<mproc::Process> procs;
  for (int id = 0; id < kProcesses; ++id) {
    procs.emplace_back(
        [&child](int me, std::size_t cpu) {
          pin_to_cpu(cpu);
          child(me);
        },
        id, cpus.empty() ? kNoCpu : cpus[static_cast<std::size_t>(id) % cpus.size()]);
  }
  for (auto& p : procs) p.start();
  spin_until(a.ready, kProcesses);
  const auto t0 = Clock::now();
  a.go.store(1, std::memory_order_release);
  for (auto& p : procs) p.join();
  const double secs = seconds_since(t0);

  for (auto& p : procs) {
    if (p.exitcode() != 0) {
      throw std::runtime_error(std::string(name) + ": child " + p.name() + " exited with " +
                               std::to_string(p.exitcode().value_or(-999)));
    }
  }
  const auto expected = static_cast<std::uint64_t>(increments) * kProcesses;
  if (a.counter != expected) {
    throw std::runtime_error(std::string(name) + ": counter is " + std::to_string(a.counter) + ", expected " +
                             std::to_string(expected) + " (mutual exclusion broken)");
  }
  const double total = static_cast<double>(expected);
  return {total / secs / 1e6, 100.0 * static_cast<double>(a.switches) / total};
}

// ---- output --------------------------------------------------------------------------------

void print_row(const char* name, const Series& s, int precision, const char* extra = "") {
  char range[64];
  std::snprintf(range, sizeof range, "(%.*f .. %.*f)", precision, s.min(), precision, s.max());
  std::printf("  %-28s %9.*f   %-*s%s\n", name, precision, s.med(), *extra != 0 ? 20 : 0, range, extra);
}

void print_ratio(const char* what, const std::vector<double>& r) {
  const auto [lo, hi] = std::minmax_element(r.begin(), r.end());
  std::printf("  %-44s %6.2fx   (%.2f .. %.2f)\n", what, median(r), *lo, *hi);
}

int run(bool quick) {
  const std::int64_t div = quick ? 10 : 1;
  const std::int64_t n_mutex = 2'000'000 / div;
  const std::int64_t n_file = 200'000 / div;
  const std::int64_t c_mutex = 500'000 / div;
  const std::int64_t c_file = 20'000 / div;

  TempDir dir("mproc_lock_bench");
  const std::string filelock_path = dir.file("filelock.lock");
  const std::string flock_path = dir.file("flock.lock");

  std::printf(
      "mproc lock_bench%s: %d rounds, each figure the median (min .. max) of the rounds; "
      "%d CPUs\n\n",
      quick ? " --quick" : "", kRounds, mproc::cpu_count());

  // ---- 1. uncontended ----
  Series u_lock, u_rlock, u_std, u_pthread, u_filelock, u_flock;
  {
    mproc::Lock lock;
    mproc::RLock rlock;
    std::mutex std_mutex;
    PsharedMutex pmutex;
    mproc::FileLock filelock{filelock_path};
    const int ffd = open_rw(flock_path);
    for (int r = 0; r < kRounds; ++r) {
      u_lock.values.push_back(ns_per_pair(
          n_mutex, [&] { must(lock.acquire(), "Lock::acquire"); }, [&] { lock.release(); }));
      u_rlock.values.push_back(ns_per_pair(
          n_mutex, [&] { must(rlock.acquire(), "RLock::acquire"); }, [&] { rlock.release(); }));
      u_std.values.push_back(ns_per_pair(
          n_mutex, [&] { std_mutex.lock(); }, [&] { std_mutex.unlock(); }));
      u_pthread.values.push_back(ns_per_pair(
          n_mutex, [&] { pmutex.lock(); }, [&] { pmutex.unlock(); }));
      u_filelock.values.push_back(ns_per_pair(
          n_file, [&] { must(filelock.acquire(), "FileLock::acquire"); }, [&] { filelock.release(); }));
      u_flock.values.push_back(ns_per_pair(
          n_file, [&] { flock_or_throw(ffd, LOCK_EX); }, [&] { flock_or_throw(ffd, LOCK_UN); }));
    }
    ::close(ffd);
  }
  std::printf(
      "1. Uncontended: 1 thread, acquire+release pairs per round: %lld (mutexes), "
      "%lld (file locks)\n",
      static_cast<long long>(n_mutex), static_cast<long long>(n_file));
  std::printf("  %-28s %9s   %s\n", "lock", "ns/pair", "(min .. max)");
  print_row("mproc::Lock", u_lock, 1);
  print_row("mproc::RLock", u_rlock, 1);
  print_row("std::mutex", u_std, 1);
  print_row("pshared pthread mutex", u_pthread, 1);
  print_row("mproc::FileLock (exclusive)", u_filelock, 1);
  print_row("flock(2) LOCK_EX/LOCK_UN", u_flock, 1);
  print_ratio("ratio mproc::Lock / pshared pthread mutex:", ratios(u_lock, u_pthread));
  print_ratio("ratio mproc::FileLock / flock:", ratios(u_filelock, u_flock));

  // ---- 2. contended ----
  Series c_lock, c_pthread, c_filelock, c_flock;
  Series s_lock, s_pthread, s_filelock, s_flock;
  {
    SharedMap arena_map(sizeof(Arena));
    auto& a = *new (arena_map.data()) Arena{};
    const std::vector<std::size_t> cpus = allowed_cpus();
    mproc::Lock lock;
    PsharedMutex pmutex;
    auto record = [](Series& rate, Series& switches, ContendedResult res) {
      rate.values.push_back(res.mops);
      switches.values.push_back(res.switch_pct);
    };
    // What each child runs. File locks: each child opens its own descriptor (an inherited one
    // would share the parent's open file description, and with it the lock).
    auto lock_child = [&](int id) {
      increment_loop(
          a, id, c_mutex, [&] { must(lock.acquire(), "Lock::acquire"); }, [&] { lock.release(); });
    };
    auto pthread_child = [&](int id) {
      increment_loop(
          a, id, c_mutex, [&] { pmutex.lock(); }, [&] { pmutex.unlock(); });
    };
    auto filelock_child = [&](int id) {
      mproc::FileLock fl{filelock_path};
      increment_loop(
          a, id, c_file, [&] { must(fl.acquire(), "FileLock::acquire"); }, [&] { fl.release(); });
    };
    auto flock_child = [&](int id) {
      const int fd = open_rw(flock_path);
      increment_loop(
          a, id, c_file, [&] { flock_or_throw(fd, LOCK_EX); }, [&] { flock_or_throw(fd, LOCK_UN); });
      ::close(fd);
    };
    for (int r = 0; r < kRounds; ++r) {
      record(c_lock, s_lock, contended(a, cpus, c_mutex, "mproc::Lock", lock_child));
      record(c_pthread, s_pthread, contended(a, cpus, c_mutex, "pshared pthread", pthread_child));
      record(c_filelock, s_filelock, contended(a, cpus, c_file, "mproc::FileLock", filelock_child));
      record(c_flock, s_flock, contended(a, cpus, c_file, "flock", flock_child));
    }
  }
  std::printf(
      "\n2. Contended: %d processes (mproc::Process, child i pinned to CPU i), each "
      "incrementing a MAP_SHARED\n   counter under the lock %lld times (mutexes), %lld "
      "times (file locks); counter verified = %d x that\n",
      kProcesses, static_cast<long long>(c_mutex), static_cast<long long>(c_file), kProcesses);
  std::printf("  %-28s %9s   %-20s%s\n", "lock", "M ops/s", "(min .. max)", "owner switches");
  auto row = [](const char* name, const Series& rate, const Series& sw) {
    char extra[48];
    std::snprintf(extra, sizeof extra, "%9.1f%%", sw.med());
    print_row(name, rate, 3, extra);
  };
  row("mproc::Lock", c_lock, s_lock);
  row("pshared pthread mutex", c_pthread, s_pthread);
  row("mproc::FileLock (exclusive)", c_filelock, s_filelock);
  row("flock(2) LOCK_EX/LOCK_UN", c_flock, s_flock);
  print_ratio("throughput mproc::Lock / pshared pthread mutex:", ratios(c_lock, c_pthread));
  print_ratio("throughput mproc::FileLock / flock:", ratios(c_filelock, c_flock));

  // ---- 3. memory ----
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  std::printf("\n3. Peak RSS of the benchmark process (ru_maxrss): %ld KiB\n", usage.ru_maxrss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return bench::main_with_quick(argc, argv, "lock_bench", run);
}
