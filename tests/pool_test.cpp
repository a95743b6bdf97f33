// mproc::Pool with real worker processes: results and their order, failures and their
// positions, dead workers replaced and reported, recycling, terminate, timeouts — each test under
// every start method (fork, spawn, forkserver), set as the process-wide default the Pool takes.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <csignal>
#include <iterator>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/pool.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Pool;
using mproc::PoolOptions;
using mproc_test::kPatience;

namespace {

int square(int x) {
  return x * x;
}
int add(int a, int b) {
  return a + b;
}
std::string shout(const std::string& s) {
  return s + "!";
}
pid_t worker_pid(int) {
  return ::getpid();
}

int fail_on_13(int x) {
  if (x == 13) throw std::invalid_argument("13 is unlucky");
  return x;
}

int fail_on_5_and_50(int x) {
  if (x == 5 || x == 50) throw std::runtime_error("bad " + std::to_string(x));
  return x;
}

int die_on(int x) {
  if (x == 3) ::raise(SIGKILL);
  if (x == 4) {
    // A crash with the default action (sanitizers install their own SIGSEGV handler, which
    // would turn the death into an ordinary exit).
    std::signal(SIGSEGV, SIG_DFL);
    ::raise(SIGSEGV);
  }
  return x;
}

// Workload, not synchronisation: a task that takes a while.
int slow(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int g_initialised = 0;
void initialise() {
  g_initialised = 42;
}
int read_initialised(int) {
  return g_initialised;
}

// Writes a byte to g_witness[1] if it is destroyed in a process other than the test runner:
// a pool worker must never run the parent's static destructors.
int g_witness[2] = {-1, -1};
const pid_t g_runner = ::getpid();
struct Witness {
  ~Witness() {
    if (::getpid() != g_runner && g_witness[1] >= 0) (void)!::write(g_witness[1], "x", 1);
  }
} g_static_witness;

// An exception whose message (2 MiB) is larger than the pool's results queue (1 MiB) can carry.
constexpr std::size_t kHugeMessage = std::size_t{2} << 20;
int fail_hugely_on_3(int x) {
  if (x == 3) throw std::length_error(std::string(kHugeMessage, 'x'));
  return x;
}
// ...and one that is large but fits.
int fail_largely_on_1(int x) {
  if (x == 1) throw std::length_error(std::string(std::size_t{900} << 10, 'y'));
  return x;
}

std::string text_of_size(int bytes) {
  return std::string(static_cast<std::size_t>(bytes), 'z');
}
std::vector<int> numbers_up_to(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 1);
  return v;
}

std::vector<int> range(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// One body, three start methods: a Pool built in a test takes the process-wide default.
class PoolTest : public testing::TestWithParam<mproc::StartMethod> {
 protected:
  void SetUp() override { mproc::set_start_method(GetParam()); }
  void TearDown() override {
    mproc::set_start_method(mproc::StartMethod::fork);
    mproc::stop_forkserver();  // the runner audits its children
  }
  bool forked() const { return GetParam() == mproc::StartMethod::fork; }
};

std::string method_name(const testing::TestParamInfo<mproc::StartMethod>& param) {
  return mproc::start_method_name(param.param);
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(AllMethods, PoolTest,
                         testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                         mproc::StartMethod::forkserver),
                         method_name);

TEST_P(PoolTest, map_returns_results_in_input_order) {
  Pool pool(2);
  EXPECT_EQ(pool.processes(), 2);
  const auto inputs = range(1000);
  for (std::size_t chunksize : {0u, 1u, 7u, 1000u}) {
    const std::vector<int> out = pool.map(square, inputs, chunksize);
    ASSERT_EQ(out.size(), inputs.size());
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], i * i) << chunksize;
  }
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
}

TEST_P(PoolTest, map_carries_structured_arguments_and_results) {
  Pool pool(2);
  const std::vector<std::string> words{"a", "bb", "ccc"};
  EXPECT_EQ(pool.map(shout, words), (std::vector<std::string>{"a!", "bb!", "ccc!"}));
}

TEST_P(PoolTest, starmap_spreads_tuples_over_arguments) {
  Pool pool(2);
  const std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(pool.starmap(add, pairs), (std::vector<int>{3, 7, 11}));
}

TEST_P(PoolTest, apply_and_apply_async_run_one_task) {
  Pool pool(2);
  EXPECT_EQ(pool.apply(add, 20, 22), 42);
  auto r = pool.apply_async(square, 9);
  r.wait();
  EXPECT_TRUE(r.ready());
  EXPECT_TRUE(r.successful());
  EXPECT_EQ(r.get(), 81);
}

TEST_P(PoolTest, captureless_and_trivially_copyable_lambdas_are_accepted) {
  Pool pool(2);
  EXPECT_EQ(pool.apply([](int x) { return x + 1; }, 1), 2);
  const int k = 3;
  EXPECT_EQ(pool.map([k](int x) { return x * k; }, std::vector<int>{1, 2}), (std::vector<int>{3, 6}));
}

TEST_P(PoolTest, get_with_a_timeout_expires_and_leaves_the_pool_usable) {
  Pool pool(2);
  auto r = pool.apply_async(slow, 400);
  EXPECT_EQ(r.get(10ms), std::nullopt);
  EXPECT_FALSE(r.ready());
  EXPECT_THROW((void)r.successful(), mproc::UsageError);
  EXPECT_EQ(pool.apply(square, 5), 25) << "the other worker still serves";
  EXPECT_EQ(r.get(kPatience), 400);
}

TEST_P(PoolTest, imap_yields_in_order_while_work_is_running) {
  Pool pool(2);
  std::vector<int> seen;
  for (int v : pool.imap(square, range(200))) seen.push_back(v);
  ASSERT_EQ(seen.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], i * i);
}

TEST_P(PoolTest, imap_unordered_yields_every_result_once) {
  Pool pool(2);
  std::multiset<int> seen;
  for (int v : pool.imap_unordered(square, range(200), 3)) seen.insert(v);
  ASSERT_EQ(seen.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(seen.count(i * i), 1u);
}

TEST_P(PoolTest, an_exception_in_a_task_reaches_the_caller_with_type_message_and_position) {
  Pool pool(2);
  try {
    (void)pool.map(fail_on_13, range(40), 1);
    FAIL() << "expected mproc::RemoteError";
  } catch (const mproc::RemoteError& e) {
    EXPECT_EQ(e.type(), "std::invalid_argument");
    EXPECT_EQ(e.message(), "13 is unlucky");
    EXPECT_EQ(e.index(), 13u);
    EXPECT_NE(std::string(e.what()).find("13 is unlucky"), std::string::npos);
  }
  auto ok = pool.apply_async(fail_on_13, 12);
  auto bad = pool.apply_async(fail_on_13, 13);
  EXPECT_EQ(ok.get(), 12) << "other tasks are unaffected";
  EXPECT_THROW((void)bad.get(), mproc::RemoteError);
  EXPECT_FALSE(bad.successful());
}

TEST_P(PoolTest, map_reports_the_first_failure_by_input_position) {
  Pool pool(2);
  for (std::size_t chunksize : {1u, 10u}) {
    try {
      (void)pool.map(fail_on_5_and_50, range(100), chunksize);
      FAIL() << "expected mproc::RemoteError";
    } catch (const mproc::RemoteError& e) {
      EXPECT_EQ(e.index(), 5u) << "chunksize " << chunksize;
      EXPECT_EQ(e.message(), "bad 5");
    }
  }
}

TEST_P(PoolTest, a_worker_killed_mid_task_fails_that_task_and_is_replaced) {
  Pool pool(2);
  auto killed = pool.apply_async(die_on, 3);
  try {
    (void)killed.get(kPatience);
    FAIL() << "expected mproc::WorkerDied";
  } catch (const mproc::WorkerDied& e) {
    EXPECT_EQ(e.exitcode(), -SIGKILL);
    EXPECT_NE(std::string(e.what()).find("signal 9"), std::string::npos) << e.what();
  }
  auto crashed = pool.apply_async(die_on, 4);
  try {
    (void)crashed.get(kPatience);
    FAIL() << "expected mproc::WorkerDied";
  } catch (const mproc::WorkerDied& e) {
    EXPECT_EQ(e.exitcode(), -SIGSEGV);
  }
  // The pool replaced both workers and keeps serving.
  const auto out = pool.map(square, range(100));
  EXPECT_EQ(out[99], 99 * 99);
}

TEST_P(PoolTest, a_dead_worker_in_a_map_fails_the_map_not_the_pool) {
  Pool pool(2);
  try {
    (void)pool.map(die_on, std::vector<int>{0, 1, 2, 3, 5, 6}, 1);
    FAIL() << "expected mproc::WorkerDied";
  } catch (const mproc::WorkerDied& e) {
    EXPECT_EQ(e.index(), 3u);
  }
  EXPECT_EQ(pool.apply(square, 3), 9);
}

TEST_P(PoolTest, maxtasksperchild_recycles_workers) {
  PoolOptions options;
  options.processes = 1;
  options.maxtasksperchild = 1;
  Pool pool(options);
  std::set<pid_t> pids;
  for (int i = 0; i < 4; ++i) pids.insert(pool.apply(worker_pid, i));
  EXPECT_EQ(pids.size(), 4u) << "each task ran in a fresh worker";
}

TEST_P(PoolTest, the_initializer_runs_in_every_worker) {
  PoolOptions options;
  options.processes = 2;
  options.initializer = initialise;
  Pool pool(options);
  for (int v : pool.map(read_initialised, range(20), 1)) EXPECT_EQ(v, 42);
  EXPECT_EQ(g_initialised, 0) << "not in the parent";
}

TEST_P(PoolTest, terminate_fails_unfinished_tasks_quickly) {
  Pool pool(2);
  auto running = pool.apply_async(slow, 30'000);
  auto queued = pool.map_async(slow, std::vector<int>{30'000, 30'000, 30'000}, 1);
  const auto t0 = std::chrono::steady_clock::now();
  pool.terminate();
  pool.join();
  EXPECT_THROW((void)running.get(), mproc::PoolTerminated);
  EXPECT_THROW((void)queued.get(), mproc::PoolTerminated);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, kPatience);
  EXPECT_THROW((void)pool.apply_async(square, 1), mproc::UsageError);
}

TEST_P(PoolTest, close_lets_queued_work_finish_then_join_returns) {
  Pool pool(2);
  auto r = pool.map_async(square, range(50), 1);
  pool.close();
  EXPECT_THROW((void)pool.apply_async(square, 1), mproc::UsageError);
  pool.join();
  EXPECT_EQ(r.get()[49], 49 * 49);
}

TEST_P(PoolTest, join_while_running_is_a_usage_error) {
  Pool pool(1);
  EXPECT_THROW(pool.join(), mproc::UsageError);
}

TEST_P(PoolTest, destroying_a_busy_pool_does_not_hang) {
  std::optional<mproc::AsyncResult<int>> r;
  const auto t0 = std::chrono::steady_clock::now();
  {
    Pool pool(2);
    r = pool.apply_async(slow, 30'000);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, kPatience);
  EXPECT_THROW((void)r->get(), mproc::PoolTerminated);
}

TEST_P(PoolTest, a_chunk_too_large_for_the_worker_queue_is_an_error_at_submit) {
  PoolOptions options;
  options.processes = 1;
  options.queue_bytes = 4096;
  Pool pool(options);
  EXPECT_THROW((void)pool.apply_async(shout, std::string(10'000, 'x')), mproc::Error);
  EXPECT_EQ(pool.apply(square, 2), 4);
}

TEST_P(PoolTest, workers_do_not_run_the_parents_static_destructors) {
  ASSERT_EQ(::pipe(g_witness), 0);
  {
    PoolOptions options;
    options.processes = 2;
    options.maxtasksperchild = 1;  // workers exit (and are replaced) after every task
    Pool pool(options);
    (void)pool.map(square, range(6), 1);
    pool.close();
    pool.join();
  }
  pollfd p{g_witness[0], POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "a worker ran a static destructor of the parent";
  ::close(g_witness[0]);
  ::close(g_witness[1]);
  g_witness[0] = g_witness[1] = -1;
}

int kill_self(int) {
  ::raise(SIGKILL);
  return 0;
}

TEST_P(PoolTest, a_failure_inside_the_dispatcher_fails_tasks_instead_of_aborting_the_process) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "leaves no file descriptor free, which AddressSanitizer's own runtime needs "
                  "(its reports fail inside the child); runs in the release and tsan presets";
#endif
  // In a child: leave no room for another descriptor, then kill a worker, so that starting its
  // replacement fails (EMFILE). The caller must get an exception, not std::terminate.
  mproc::Process p = mproc_test::start_child([] {
    Pool pool(1);
    // Descriptors already open stay usable; no new one can be opened.
    const rlimit tight{3, 3};
    CHILD_CHECK(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
    bool failed_cleanly = false;
    try {
      (void)pool.apply(kill_self, 1);
    } catch (const std::exception&) {
      failed_cleanly = true;
    }
    CHILD_CHECK(failed_cleanly);
    try {
      (void)pool.apply_async(square, 2).get(kPatience);
    } catch (const std::exception&) {
      // terminated or refused: either is a clean failure
    }
  });
  EXPECT_EQ(mproc_test::exit_code_of(p), 0) << "the process was aborted by an escaped exception";
}

// ---- reading an imap iterator ----------------------------------------------------------------

static_assert(std::input_iterator<mproc::ImapRange<std::string>::iterator>);
static_assert(std::ranges::input_range<mproc::ImapRange<std::string>>);

TEST_P(PoolTest, dereferencing_an_imap_iterator_twice_gives_the_same_value_both_times) {
  Pool pool(2);
  const std::vector<std::string> words{"alpha", "beta", "gamma", "delta"};
  for (const bool ordered : {true, false}) {
    auto results = ordered ? pool.imap(shout, words) : pool.imap_unordered(shout, words);
    std::multiset<std::string> seen;
    for (auto it = results.begin(); it != results.end(); ++it) {
      const std::string first = *it;
      const std::string second = *it;
      EXPECT_EQ(first, second) << "ordered " << ordered;
      EXPECT_EQ(it->size(), first.size());
      auto copy = it;  // a copy at the same position reads the same value
      EXPECT_EQ(*copy, first);
      seen.insert(first);
    }
    EXPECT_EQ(seen, (std::multiset<std::string>{"alpha!", "beta!", "delta!", "gamma!"}))
        << "ordered " << ordered;
  }
  auto vectors = pool.imap(numbers_up_to, std::vector<int>{3, 5});
  auto it = vectors.begin();
  EXPECT_EQ(*it, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(*it, (std::vector<int>{1, 2, 3}));
  ++it;
  EXPECT_EQ(it->size(), 5u);
  EXPECT_EQ(*it, (std::vector<int>{1, 2, 3, 4, 5}));
}

TEST_P(PoolTest, a_failed_imap_item_throws_every_time_it_is_read) {
  Pool pool(2);
  auto results = pool.imap(fail_on_13, std::vector<int>{13, 1});
  auto it = results.begin();
  EXPECT_THROW((void)*it, mproc::RemoteError);
  EXPECT_THROW((void)*it, mproc::RemoteError);
  ++it;
  EXPECT_EQ(*it, 1);
}

// ---- what does not fit the results queue ---------------------------------------------------

TEST_P(PoolTest, an_exception_too_large_for_the_results_queue_arrives_truncated_with_its_position) {
  Pool pool(2);
  const std::string suffix = "[message truncated from " + std::to_string(kHugeMessage) + " bytes]";
  for (std::size_t chunksize : {1u, 4u}) {
    try {
      (void)pool.map(fail_hugely_on_3, range(8), chunksize);
      FAIL() << "expected mproc::RemoteError";
    } catch (const mproc::RemoteError& e) {
      EXPECT_EQ(e.type(), "std::length_error") << "chunksize " << chunksize;
      EXPECT_EQ(e.index(), 3u) << "chunksize " << chunksize;
      ASSERT_GT(e.message().size(), suffix.size());
      EXPECT_LT(e.message().size(), std::size_t{1} << 20);
      EXPECT_GT(e.message().size(), std::size_t{512} << 10) << "as much as fits is kept";
      EXPECT_EQ(e.message().substr(0, 4), "xxxx");
      EXPECT_EQ(e.message().substr(e.message().size() - suffix.size()), suffix)
          << e.message().substr(e.message().size() - 80);
    }
  }
  // Through imap: the iterator throws at the failing task's own position.
  std::size_t position = 0;
  try {
    for (int v : pool.imap(fail_hugely_on_3, range(6))) {
      EXPECT_EQ(v, static_cast<int>(position));
      ++position;
    }
    FAIL() << "expected mproc::RemoteError";
  } catch (const mproc::RemoteError& e) {
    EXPECT_EQ(e.index(), 3u);
    EXPECT_EQ(position, 3u);
  }
  // A large message that fits arrives whole.
  try {
    (void)pool.map(fail_largely_on_1, range(3), 1);
    FAIL() << "expected mproc::RemoteError";
  } catch (const mproc::RemoteError& e) {
    EXPECT_EQ(e.index(), 1u);
    EXPECT_EQ(e.message(), std::string(std::size_t{900} << 10, 'y'));
  }
  EXPECT_EQ(pool.apply(square, 6), 36) << "the pool keeps serving";
}

TEST_P(PoolTest, a_result_too_large_for_the_results_queue_is_an_error_at_its_position) {
  Pool pool(2);
  // One result larger than the queue.
  try {
    (void)pool.map(text_of_size, std::vector<int>{10, 2 << 20, 10}, 1);
    FAIL() << "expected mproc::RemoteError";
  } catch (const mproc::RemoteError& e) {
    EXPECT_EQ(e.index(), 1u);
    EXPECT_EQ(e.type(), "mproc::Error");
    EXPECT_NE(e.message().find(std::to_string((2 << 20) + 8) + " bytes"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("queue_bytes"), std::string::npos) << e.message();
  }
  // Results that fit one by one but not together in one chunk: the one that went over.
  try {
    (void)pool.map(text_of_size, std::vector<int>{400'000, 400'000, 400'000, 10}, 4);
    FAIL() << "expected mproc::RemoteError";
  } catch (const mproc::RemoteError& e) {
    EXPECT_EQ(e.index(), 2u);
    EXPECT_NE(e.message().find("chunksize"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find(std::to_string(3 * 400'008) + " bytes"), std::string::npos) << e.message();
  }
  // The same results in chunks of one all arrive.
  const auto fine = pool.map(text_of_size, std::vector<int>{400'000, 400'000, 400'000, 10}, 1);
  EXPECT_EQ(fine[2].size(), 400'000u);
  EXPECT_EQ(pool.apply(square, 7), 49) << "the pool keeps serving";
}

// ---- options the pool cannot honour ----------------------------------------------------------

template <class F>
std::string usage_error_of(F make) {
  try {
    make();
  } catch (const mproc::UsageError& e) {
    return e.what();
  }
  return "(no mproc::UsageError)";
}

TEST_P(PoolTest, a_negative_number_of_processes_is_a_usage_error) {
  const std::string what = usage_error_of([] { Pool pool(-1); });
  EXPECT_NE(what.find("-1"), std::string::npos) << what;
  EXPECT_NE(what.find("at least 1"), std::string::npos) << what;
  PoolOptions options;
  options.processes = INT_MIN;
  EXPECT_NE(usage_error_of([&] { Pool pool(options); }).find(std::to_string(INT_MIN)), std::string::npos);
}

TEST_P(PoolTest, impossible_options_are_usage_errors) {
  PoolOptions negative_recycling;
  negative_recycling.processes = 1;
  negative_recycling.maxtasksperchild = -3;
  const std::string recycling = usage_error_of([&] { Pool pool(negative_recycling); });
  EXPECT_NE(recycling.find("maxtasksperchild"), std::string::npos) << recycling;
  EXPECT_NE(recycling.find("-3"), std::string::npos) << recycling;

  PoolOptions no_queue;
  no_queue.processes = 1;
  no_queue.queue_bytes = 0;
  const std::string queue = usage_error_of([&] { Pool pool(no_queue); });
  EXPECT_NE(queue.find("queue_bytes"), std::string::npos) << queue;

  PoolOptions huge_queue;
  huge_queue.processes = 1;
  huge_queue.queue_bytes = std::size_t{1} << 40;
  const std::string huge = usage_error_of([&] { Pool pool(huge_queue); });
  EXPECT_NE(huge.find("queue_bytes"), std::string::npos) << huge;

  // The limits themselves are fine.
  PoolOptions smallest;
  smallest.processes = 1;
  smallest.queue_bytes = 1;
  Pool pool(smallest);
  EXPECT_EQ(pool.apply(square, 3), 9);
}
