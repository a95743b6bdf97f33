// Crash chaos across the Redis backend: worker processes (standing in for machines) take jobs
// from a JoinableQueue and put results; the test SIGKILLs random workers (starting others in
// their place) and SIGKILLs and restarts redis-server (appendonly, appendfsync always) in the
// middle. It prints one summary line and checks: every job's result arrives (lost 0), duplicates
// stay within the documented bound (one per kill, plus what a restart makes each worker redo),
// and nothing hangs (each wait is bounded; a stall fails the run).
// Size: MPROC_REDIS_CHAOS_JOBS (default 400; the stress-labelled redis_chaos_long runs 1500).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>

#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/redis/queue.hpp"
#include "redis_server.hpp"

namespace {

using mproc_test::Persistence;
using mproc_test::RedisServer;
using namespace std::chrono_literals;
namespace mr = mproc::redis;

constexpr int kWorkers = 4;

mr::QueueOptions chaos_options() {
  mr::QueueOptions o;
  o.visibility_timeout = 1s;  // a killed worker's job comes back after this long
  o.max_deliveries = 50;      // never dead-letter in this run: a job may be unlucky many times
  return o;
}

// A worker: does a little work per job, so that kills land mid-job; survives the server's
// restart by taking every failed call as "try again" (the job stays pending and comes back).
[[noreturn]] void worker(const std::string& jobs_url, const std::string& results_url) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
  for (;;) {
    try {
      auto jobs = mr::JoinableQueue<int>::open(jobs_url, chaos_options());
      auto results = mr::JoinableQueue<int>::open(results_url, chaos_options());
      while (auto job = jobs.get()) {
        volatile unsigned x = 0;
        for (int i = 0; i < 20000; ++i) x = x + static_cast<unsigned>(i) * static_cast<unsigned>(*job);
        results.put(*job);
        jobs.task_done();
      }
      ::_exit(0);  // closed and drained
    } catch (const mproc::Error& e) {
      const int err = e.code().value();
      // The server went away mid-call (or came back still loading): open again. Anything
      // else is a bug this run must report, not retry forever.
      if (err != ECONNRESET && err != ECONNREFUSED && err != EIO && err != ENOENT) {
        std::fprintf(stderr, "chaos worker: %s\n", e.what());
        ::_exit(3);
      }
    }
  }
}

int jobs_from_env() {
  const char* s = std::getenv("MPROC_REDIS_CHAOS_JOBS");
  return s != nullptr && std::atoi(s) > 0 ? std::atoi(s) : 400;
}

TEST(RedisChaos, random_worker_kills_and_a_server_restart_lose_nothing_and_hang_nowhere) {
  const int n = jobs_from_env();
  RedisServer server(Persistence::aof_always);
  const std::string jobs_url = server.url("chaos-jobs");
  const std::string results_url = server.url("chaos-results");
  auto jobs = mr::JoinableQueue<int>::create(jobs_url, chaos_options());
  std::vector<int> all(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
  jobs.put_many(all);
  // Results come back through a JoinableQueue too, so that a get whose reply a restart cuts
  // off is redelivered rather than lost to this reader.
  auto results = mr::JoinableQueue<int>::create(results_url, chaos_options());

  std::vector<mproc::Process> workers;
  auto start_worker = [&] {
    workers.emplace_back([jobs_url, results_url] { worker(jobs_url, results_url); });
    workers.back().start();
  };
  std::vector<std::size_t> alive;
  for (int w = 0; w < kWorkers; ++w) {
    start_worker();
    alive.push_back(workers.size() - 1);
  }

  std::mt19937 rng(std::random_device{}());
  std::map<int, int> seen;  // job -> results received
  int kills = 0, restarts = 0, hangs = 0, received = 0;
  int next_kill = 10 + static_cast<int>(rng() % 20);
  while (static_cast<int>(seen.size()) < n) {
    std::optional<int> r;
    try {
      r = results.get_for(mproc_test::kPatience);
      if (r) results.task_done();
    } catch (const mproc::Error&) {  // cut off by the restart: ask again
      continue;
    }
    if (!r) {
      ++hangs;  // no result for kPatience: something is stuck
      break;
    }
    ++seen[*r];
    ++received;
    if (received == next_kill) {
      const std::size_t victim = static_cast<std::size_t>(rng() % alive.size());
      workers[alive[victim]].kill();
      (void)workers[alive[victim]].join(mproc_test::kPatience);
      ++kills;
      start_worker();
      alive[victim] = workers.size() - 1;
      next_kill += 5 + static_cast<int>(rng() % 30);
    }
    if (restarts == 0 && received >= n / 2) {
      server.kill();  // appendfsync always: nothing acknowledged may be lost
      server.start();
      ++restarts;
    }
  }
  jobs.close();
  for (const std::size_t w : alive) EXPECT_EQ(mproc_test::exit_code_of(workers[w]), 0);

  int duplicates = 0;
  for (const auto& [job, count] : seen) duplicates += count - 1;
  const int lost = n - static_cast<int>(seen.size());
  // A kill redoes at most the one job its victim held; a restart at most one per worker (a
  // result put whose reply was cut off, then its job redone), and one get of ours.
  const int bound = kills + restarts * (kWorkers + 1);
  std::fflush(stdout);
  std::printf(
      "redis chaos: workers %d, kills %d, server restarts %d (appendfsync always), messages %d, "
      "duplicates %d (bound %d), lost %d, hangs %d\n",
      kWorkers, kills, restarts, n, duplicates, bound, lost, hangs);
  std::fflush(stdout);
  EXPECT_EQ(hangs, 0);
  EXPECT_EQ(lost, 0);
  EXPECT_LE(duplicates, bound);
  EXPECT_GT(kills, 0);
  EXPECT_EQ(restarts, 1);
}

}  // namespace
