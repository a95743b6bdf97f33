// Counts the primes below a limit by splitting the range across a pool of worker processes,
// with a live progress line driven by imap_unordered, and compares the time with the same work
// done serially in this process.
#include <mproc/mproc.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <utility>
#include <vector>

namespace {

bool is_prime(long n) {
  if (n < 2) return false;
  for (long d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

// One task: the primes in [range.first, range.second). A plain function, so the pool can send
// it to its workers.
long count_primes(std::pair<long, long> range) {
  long count = 0;
  for (long n = range.first; n < range.second; ++n) count += is_prime(n);
  return count;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  constexpr long kLimit = 3'000'000;
  constexpr long kRanges = 60;
  std::vector<std::pair<long, long>> ranges;
  for (long i = 0; i < kRanges; ++i) ranges.emplace_back(kLimit * i / kRanges, kLimit * (i + 1) / kRanges);

  const auto t0 = std::chrono::steady_clock::now();
  long serial = 0;
  for (const auto& r : ranges) serial += count_primes(r);
  const double serial_s = seconds_since(t0);

  mproc::Pool pool;  // one worker per CPU
  const bool live = ::isatty(STDOUT_FILENO) != 0;
  const auto t1 = std::chrono::steady_clock::now();
  long parallel = 0, done = 0;
  for (long count : pool.imap_unordered(count_primes, ranges)) {
    parallel += count;
    ++done;
    if (live) {
      std::printf("\r%d workers: %2ld/%ld ranges done, %ld primes so far", pool.processes(), done, kRanges,
                  parallel);
      std::fflush(stdout);
    }
  }
  const double pool_s = seconds_since(t1);
  if (live) std::printf("\n");

  std::printf("primes below %ld: %ld (serial) and %ld (pool of %d)\n", kLimit, serial, parallel,
              pool.processes());
  std::printf("serial: %.3f s   pool: %.3f s   speed-up: %.2fx on %d CPUs\n", serial_s, pool_s,
              serial_s / pool_s, mproc::cpu_count());
  return serial == parallel ? 0 : 1;
}
