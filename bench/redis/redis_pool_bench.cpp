// redis::Pool beside the shared-memory mproc::Pool, on this machine, in the same run:
//   per-task overhead  N tasks of identity(long) through map, one worker process
//   primes speed-up    primes below kLimit in 64 chunks: serial, then 1 and 2 workers of each
// Workers of the Redis pool are forked processes calling run_worker() (as separate programs on
// other machines would); the server is local (unix socket, no persistence). Median of 3 rounds
// (--quick: 1 round, smaller sizes).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_server.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/redis/pool.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace mr = mproc::redis;

long identity(long x) {
  return x;
}
MPROC_REDIS_TASK(identity);

long count_primes(std::pair<long, long> range) {
  long n = 0;
  for (long v = std::max(range.first, 2L); v < range.second; ++v) {
    bool prime = true;
    for (long d = 2; d * d <= v; ++d) {
      if (v % d == 0) {
        prime = false;
        break;
      }
    }
    n += prime ? 1 : 0;
  }
  return n;
}
MPROC_REDIS_TASK(count_primes);

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<mproc::Process> start_workers(const std::string& url, int n) {
  std::vector<mproc::Process> w;
  for (int i = 0; i < n; ++i) {
    w.emplace_back([url] { ::_exit(mr::run_worker(url)); });
    w.back().start();
  }
  return w;
}

void stop_workers(mr::Pool& pool, std::vector<mproc::Process>& w) {
  pool.close();
  for (auto& p : w) (void)p.join();
}

int g_pools = 0;  // a closed pool stays closed: each run gets a fresh one

// Seconds for `work` on a fresh Redis pool with `workers` worker processes.
template <class F>
double redis_round(const std::string& sock, int round, int workers, F work) {
  const std::string url = "unix://" + sock + "?name=pool" + std::to_string(round) + "-" +
                          std::to_string(++g_pools) + "w" + std::to_string(workers);
  auto w = start_workers(url, workers);
  mr::Pool pool(url);
  const auto t = Clock::now();
  work(pool);
  const double s = seconds_since(t);
  stop_workers(pool, w);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int rounds = quick ? 1 : 3;
  const long tasks = quick ? 200 : 2000;
  const long limit = quick ? 200000 : 3000000;
  std::vector<long> ids(static_cast<std::size_t>(tasks));
  for (long i = 0; i < tasks; ++i) ids[static_cast<std::size_t>(i)] = i;
  std::vector<std::pair<long, long>> chunks;
  for (long i = 0; i < 64; ++i) chunks.emplace_back(limit * i / 64, limit * (i + 1) / 64);
  try {
    const bench_redis::Server server;
    std::vector<double> r_over, s_over, serial, r1, r2, s1, s2;
    for (int r = 0; r < rounds; ++r) {
      r_over.push_back(
          redis_round(server.socket(), r, 1, [&](mr::Pool& p) { (void)p.map<long>("identity", ids); }));
      {
        mproc::Pool p(1);
        const auto t = Clock::now();
        (void)p.map(identity, ids, 1);
        s_over.push_back(seconds_since(t));
      }
      auto t = Clock::now();
      long total = 0;
      for (const auto& c : chunks) total += count_primes(c);
      serial.push_back(seconds_since(t));
      auto primes = [&](mr::Pool& p) {
        long sum = 0;
        for (long v : p.map<long>("count_primes", chunks)) sum += v;
        if (sum != total) std::fprintf(stderr, "wrong count %ld, expected %ld\n", sum, total);
      };
      r1.push_back(redis_round(server.socket(), r, 1, primes));
      r2.push_back(redis_round(server.socket(), r, 2, primes));
      for (int n : {1, 2}) {
        mproc::Pool p(n);
        t = Clock::now();
        (void)p.map(count_primes, chunks, 1);
        (n == 1 ? s1 : s2).push_back(seconds_since(t));
      }
    }
    std::printf("Pool over Redis beside the shared-memory Pool (median of %d rounds)\n", rounds);
    std::printf(
        "  per-task overhead, %ld x identity(long), 1 worker: redis %.1f us/task, shared memory %.1f "
        "us/task\n",
        tasks, median(r_over) * 1e6 / static_cast<double>(tasks),
        median(s_over) * 1e6 / static_cast<double>(tasks));
    std::printf("  primes below %ld in 64 chunks: serial %.3f s\n", limit, median(serial));
    std::printf("    redis pool:         1 worker %.3f s (%.2fx), 2 workers %.3f s (%.2fx)\n", median(r1),
                median(serial) / median(r1), median(r2), median(serial) / median(r2));
    std::printf("    shared-memory pool: 1 worker %.3f s (%.2fx), 2 workers %.3f s (%.2fx)\n", median(s1),
                median(serial) / median(s1), median(s2), median(serial) / median(s2));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "redis_pool_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
