// pool_bench — what a task costs in mproc::Pool, and what the pool buys on CPU-bound work,
// next to Python's multiprocessing.Pool doing the same in the same run.
//
// Measured (median of kRounds rounds):
//  1. Overhead: pool.map over 1,000,000 trivial tasks (x -> x + 1) with chunksize 1000;
//     microseconds per task, end to end (encode, dispatch, run, return, decode).
//  2. CPU-bound: counting primes below 2,000,000 in 64 ranges by trial division, serially in
//     this process and with imap_unordered over a pool of cpu_count() workers; the speed-up.
//  3. The same two workloads through Python's multiprocessing.Pool (bench/pool_bench.py), when
//     python3 is on the PATH: its per-task overhead and its own speed-up.
//
// Run (Release build):  ./build/release/bench/pool_bench          full run
//                       ./build/release/bench/pool_bench --quick  tasks / 10, one round
#include <mproc/mproc.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int plus_one(int x) {
  return x + 1;
}

bool is_prime(long n) {
  if (n < 2) return false;
  for (long d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

long count_primes(std::pair<long, long> r) {
  long c = 0;
  for (long n = r.first; n < r.second; ++n) c += is_prime(n);
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs the Python side; returns {overhead us/task, serial s, pool s} or empty.
std::vector<double> run_python(int tasks, long limit, int ranges, int workers) {
  const std::string script = std::string(MPROC_SOURCE_DIR) + "/bench/pool_bench.py";
  const std::string cmd = "python3 " + script + " " + std::to_string(tasks) + " " + std::to_string(limit) +
                          " " + std::to_string(ranges) + " " + std::to_string(workers) + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {};
  double a = 0, b = 0, c = 0;
  const int n = std::fscanf(p, "%lf %lf %lf", &a, &b, &c);
  if (::pclose(p) != 0 || n != 3) return {};
  return {a, b, c};
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int rounds = quick ? 1 : 3;
  const int tasks = quick ? 100'000 : 1'000'000;
  const long limit = quick ? 200'000 : 2'000'000;
  constexpr int kRanges = 64;

  std::vector<int> inputs(static_cast<std::size_t>(tasks));
  std::iota(inputs.begin(), inputs.end(), 0);
  std::vector<std::pair<long, long>> ranges;
  for (long i = 0; i < kRanges; ++i) ranges.emplace_back(limit * i / kRanges, limit * (i + 1) / kRanges);

  mproc::Pool pool;
  std::vector<double> overhead, serial, parallel;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    const std::vector<int> out = pool.map(plus_one, inputs, 1000);
    overhead.push_back(seconds(t0) * 1e6 / tasks);
    for (int i = 0; i < tasks; ++i) {
      if (out[static_cast<std::size_t>(i)] != i + 1) {
        std::fprintf(stderr, "pool_bench: wrong result at %d\n", i);
        return 1;
      }
    }

    t0 = Clock::now();
    long s = 0;
    for (const auto& rg : ranges) s += count_primes(rg);
    serial.push_back(seconds(t0));

    t0 = Clock::now();
    long p = 0;
    for (long c : pool.imap_unordered(count_primes, ranges)) p += c;
    parallel.push_back(seconds(t0));
    if (s != p) {
      std::fprintf(stderr, "pool_bench: serial found %ld primes, the pool %ld\n", s, p);
      return 1;
    }
  }

  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  std::printf("mproc pool_bench: %d workers on %d CPUs, median of %d rounds\n", pool.processes(),
              mproc::cpu_count(), rounds);
  std::printf("  map overhead, %d trivial tasks, chunksize 1000: %8.3f us/task\n", tasks, median(overhead));
  std::printf("  primes below %ld in %d ranges: serial %.3f s, pool %.3f s, speed-up %.2fx\n", limit, kRanges,
              median(serial), median(parallel), median(serial) / median(parallel));
  std::printf("  peak RSS of this (parent) process: %ld KiB\n", ru.ru_maxrss);

  const auto py = run_python(tasks, limit, kRanges, pool.processes());
  if (py.empty()) {
    std::printf("  Python multiprocessing.Pool: not measured (python3 not found or failed)\n");
  } else {
    std::printf(
        "  Python multiprocessing.Pool, same workloads: map overhead %.3f us/task "
        "(mproc is %.0fx lower); primes serial %.3f s, pool %.3f s, speed-up %.2fx\n",
        py[0], py[0] / median(overhead), py[1], py[2], py[1] / py[2]);
  }
  return 0;
}
