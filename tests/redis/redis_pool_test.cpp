// redis::Pool: tasks registered by name, run by worker processes (standing in for machines)
// through a real redis-server; a task's exception comes back as RemoteError; a worker SIGKILLed
// mid-task has its task run again by another; a task that kills every worker that runs it ends
// in WorkerDied after max_attempts, not in a hang.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/redis/pool.hpp"
#include "redis_server.hpp"

namespace {

using mproc_test::RedisServer;
using namespace std::chrono_literals;
namespace mr = mproc::redis;

long square(long x) {
  return x * x;
}
MPROC_REDIS_TASK(square);

long refuse(long x) {
  throw std::invalid_argument("refused " + std::to_string(x));
}
MPROC_REDIS_TASK(refuse);

// Kills the worker that runs it the first time (a marker file says it happened), then works.
long die_once(std::string marker) {
  if (::mkdir(marker.c_str(), 0700) == 0) ::raise(SIGKILL);
  return 7;
}
MPROC_REDIS_TASK(die_once);

long die_always(long) {
  ::raise(SIGKILL);
  return 0;
}
MPROC_REDIS_TASK(die_always);

mr::PoolOptions fast() {
  mr::PoolOptions o;
  o.visibility_timeout = 200ms;
  o.max_attempts = 2;
  o.connection.wait_slice = 200ms;
  return o;
}

class RedisPool : public testing::Test {
 protected:
  void start_workers(const std::string& url, int n) {
    for (int i = 0; i < n; ++i) {
      workers.emplace_back([url] {
        try {
          ::_exit(mr::run_worker(url, fast()));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "worker: %s\n", e.what());
          ::_exit(3);
        }
      });
      workers.back().start();
    }
  }
  // Closes the pool: the live workers drain the queue and exit; all are joined.
  void stop(mr::Pool& pool) {
    pool.close();
    for (auto& w : workers) (void)w.join(mproc_test::kPatience);
  }
  RedisServer server;
  std::vector<mproc::Process> workers;
};

TEST_F(RedisPool, map_and_apply_async_return_results_in_order) {
  const std::string url = server.url("pool");
  start_workers(url, 2);
  mr::Pool pool(url, fast());
  std::vector<long> in;
  for (long i = 0; i < 50; ++i) in.push_back(i);
  const std::vector<long> out = pool.map<long>("square", in);
  for (long i = 0; i < 50; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i * i);
  EXPECT_EQ(pool.apply_async<long>("square", 12L).get(), 144);
  stop(pool);
  for (auto& w : workers) EXPECT_EQ(w.exitcode(), 0);
}

TEST_F(RedisPool, a_task_that_throws_reaches_the_caller_as_remote_error) {
  const std::string url = server.url("throws");
  start_workers(url, 1);
  mr::Pool pool(url, fast());
  try {
    (void)pool.apply<long>("refuse", 5L);
    ADD_FAILURE() << "no RemoteError";
  } catch (const mproc::RemoteError& e) {
    EXPECT_EQ(e.type(), "std::invalid_argument");
    EXPECT_EQ(e.message(), "refused 5");
  }
  EXPECT_THROW((void)pool.apply<long>("no_such_task", 1L), mproc::RemoteError);
  stop(pool);
}

TEST_F(RedisPool, a_worker_killed_mid_task_has_its_task_run_again_by_another) {
  const std::string url = server.url("rerun");
  start_workers(url, 2);
  mr::Pool pool(url, fast());
  const mproc_test::TempDir dir;
  EXPECT_EQ(pool.apply<long>("die_once", (dir / "died").string()), 7);
  stop(pool);
  int killed = 0;
  for (auto& w : workers) killed += w.exitcode() == -SIGKILL ? 1 : 0;
  EXPECT_EQ(killed, 1);
}

TEST_F(RedisPool, a_task_that_kills_every_worker_ends_in_worker_died_after_max_attempts) {
  const std::string url = server.url("poison");
  start_workers(url, 3);  // two die on it; the third finds it over its attempts
  mr::Pool pool(url, fast());
  EXPECT_THROW((void)pool.apply<long>("die_always", 1L), mproc::WorkerDied);
  EXPECT_EQ(pool.apply<long>("square", 3L), 9);  // the pool goes on
  stop(pool);
}

}  // namespace
