// redis::Pool: tasks registered by name, run by worker processes (standing in for machines)
// through a real redis-server; a task's exception comes back as RemoteError; a worker SIGKILLed
// mid-task has its task run again by another; a task that kills every worker that runs it ends
// in WorkerDied after max_attempts, not in a hang.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <set>
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

// Refuses odd numbers.
long even_only(long x) {
  if (x % 2 != 0) throw std::invalid_argument("odd " + std::to_string(x));
  return x;
}
MPROC_REDIS_TASK(even_only);

// Returns its argument once somebody opens the FIFO `path` for writing and closes it: a task
// that finishes when the test says so (open and read block in the kernel).
long gated(std::string path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open the gate " + path);
  char buf[16];
  while (::read(fd, buf, sizeof buf) > 0) {}
  ::close(fd);
  return -1;
}
MPROC_REDIS_TASK(gated);

mr::PoolOptions fast() {
  mr::PoolOptions o;
  o.visibility_timeout = 200ms;
  o.max_attempts = 2;
  o.connection.wait_slice = 200ms;
  return o;
}

class RedisPool : public testing::Test {
 protected:
  void start_workers(const std::string& url, int n, const mr::PoolOptions& options = fast()) {
    for (int i = 0; i < n; ++i) {
      workers.emplace_back([url, options] {
        try {
          ::_exit(mr::run_worker(url, options));
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

// ---- imap_unordered ------------------------------------------------------------------------------

TEST_F(RedisPool, imap_unordered_yields_every_result_exactly_once) {
  const std::string url = server.url("unordered");
  start_workers(url, 3);
  mr::Pool pool(url, fast());
  std::vector<long> in;
  std::multiset<long> expected;
  for (long i = 0; i < 80; ++i) {
    in.push_back(i);
    expected.insert(i * i);
  }
  auto results = pool.imap_unordered<long>("square", in);
  EXPECT_EQ(results.size(), in.size());
  std::multiset<long> got;
  for (long r : results) got.insert(r);
  EXPECT_EQ(got, expected);
  stop(pool);
}

// The first task cannot finish before the others have been received: in input order this
// would never end; in completion order the gate opens after the other three results.
TEST_F(RedisPool, imap_unordered_yields_results_as_they_complete_not_in_input_order) {
  const std::string url = server.url("completion");
  mr::PoolOptions patient = fast();
  patient.visibility_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(mproc_test::kPatience * 3);
  start_workers(url, 2, patient);
  mr::Pool pool(url, patient);
  const mproc_test::TempDir dir;
  const std::string gate = (dir / "gate").string();
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  auto results = pool.imap_unordered<long>("gated", std::vector<std::string>{gate});
  auto others = pool.imap_unordered<long>("square", std::vector<long>{1, 2, 3});
  std::multiset<long> first;
  for (long r : others) first.insert(r);
  EXPECT_EQ(first, (std::multiset<long>{1, 4, 9}));
  const int fd = ::open(gate.c_str(), O_WRONLY);  // the gated task holds the read end
  ASSERT_GE(fd, 0);
  ::close(fd);
  auto it = results.begin();
  EXPECT_EQ(*it, -1);
  stop(pool);
}

TEST_F(RedisPool, imap_unordered_reports_each_failed_task_as_remote_error_with_its_position_and_goes_on) {
  const std::string url = server.url("unordered-throws");
  start_workers(url, 2);
  mr::Pool pool(url, fast());
  auto results = pool.imap_unordered<long>("even_only", std::vector<long>{0, 1, 2, 3, 4, 5});
  std::set<long> values;
  std::set<std::size_t> failed;
  for (auto it = results.begin(); it != results.end(); ++it) {
    try {
      values.insert(*it);
    } catch (const mproc::RemoteError& e) {
      EXPECT_EQ(e.type(), "std::invalid_argument");
      EXPECT_EQ(e.message(), "odd " + std::to_string(e.index()));
      failed.insert(e.index());
      EXPECT_THROW((void)*it, mproc::RemoteError) << "the same failure until ++it";
    }
  }
  EXPECT_EQ(values, (std::set<long>{0, 2, 4}));
  EXPECT_EQ(failed, (std::set<std::size_t>{1, 3, 5}));
  stop(pool);
}

// A result that does not decode as the caller's R is that position's failure: `*it` throws it
// each time (never reads an empty result), and the iteration goes on to the next.
TEST_F(RedisPool, imap_unordered_reports_a_result_of_another_type_at_its_position_each_time) {
  const std::string url = server.url("unordered-wrong-type");
  start_workers(url, 1);
  mr::Pool pool(url, fast());
  auto results = pool.imap_unordered<std::array<long, 2>>("square", std::vector<long>{1, 2});
  std::size_t failures = 0;
  for (auto it = results.begin(); it != results.end(); ++it) {
    try {
      (void)*it;
      ADD_FAILURE() << "a long decoded as std::array<long, 2>";
    } catch (const mproc::Error& e) {
      EXPECT_EQ(e.code().value(), EBADMSG) << e.what();
    }
    EXPECT_THROW((void)*it, mproc::Error) << "the same failure until ++it";
    ++failures;
  }
  EXPECT_EQ(failures, 2u);
  stop(pool);
}

TEST_F(RedisPool, imap_unordered_reruns_a_task_whose_worker_died_and_ends_a_poisoned_one_in_worker_died) {
  const std::string url = server.url("unordered-kill");
  start_workers(url, 5);  // two die on die_once's inputs, two on die_always; one is left
  mr::Pool pool(url, fast());
  const mproc_test::TempDir dir;
  std::multiset<long> got;
  for (long r : pool.imap_unordered<long>(
           "die_once", std::vector<std::string>{(dir / "a").string(), (dir / "b").string()})) {
    got.insert(r);
  }
  EXPECT_EQ(got, (std::multiset<long>{7, 7}));
  auto poisoned = pool.imap_unordered<long>("die_always", std::vector<long>{1});
  try {
    (void)*poisoned.begin();
    ADD_FAILURE() << "no WorkerDied";
  } catch (const mproc::WorkerDied& e) {
    EXPECT_EQ(e.index(), 0u);
  }
  EXPECT_EQ(pool.apply<long>("square", 4L), 16);  // the pool goes on
  stop(pool);
  int killed = 0;
  for (auto& w : workers) killed += w.exitcode() == -SIGKILL ? 1 : 0;
  EXPECT_EQ(killed, 4);
}

}  // namespace
