// EINTR at a timed call: under a storm of signals, or with EINTR injected into its system calls,
// a timeout is still honoured — not cut short, not restarted from scratch.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/event.hpp"
#include "mproc/file_lock.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/semaphore.hpp"
#include "support/fault_support.hpp"

using mproc::test::FaultPlan;
using mproc_test::exit_code_of;
using mproc_test::kPatience;
using mproc_test::start_child;
using namespace std::chrono_literals;
using namespace mproc_test::fault;

namespace {

constexpr auto kTimeout = 200ms;
// How late a timed call may return: what the suite allows anything that should happen promptly
// (sanitizers and a loaded CI machine; not a speed assertion). A call that restarts its whole
// timeout after each EINTR never returns under the storm, and meets the watchdog.
constexpr auto kSlack = kPatience;
// Under the storm, a call is made again (on fresh objects) until the storm has sent it this many
// signals, counted over the calls, and handled a quarter of them where handlers are counted: a
// loaded machine can leave the storm's thread a few turns in one kTimeout. At most
// kStormAttempts calls: a storm that never gets through is a failure, whatever the speed.
constexpr unsigned kStormSignals = 20;
constexpr int kStormAttempts = 50;

struct Timed {
  std::vector<std::string_view> eintr_points;
  /// In a peer process, if set: take what the call will wait for, and keep it.
  std::function<void()> hold;
  /// The call with `timeout`; returns whether it reported the timeout.
  std::function<bool(std::chrono::milliseconds timeout, mproc::Process* holder)> times_out;
};
using TimedMaker = Timed (*)();

// One timed call, on objects fresh from `make`; adds the storm's signals to `sent` and `handled`.
void expect_timeout_honoured_once(TimedMaker make, Interruption how, unsigned& sent, unsigned& handled) {
  const Timed t = make();
  mproc_test::Flag held, done;
  std::optional<mproc::Process> holder;
  if (t.hold) {
    holder.emplace(start_child([&] {
      t.hold();
      held.raise();
      (void)done.wait_for(kPatience);
    }));
    ASSERT_TRUE(held.wait_for(kPatience));
  }
  bool timed_out = false;
  Clock::duration took{};
  if (how == Interruption::signals) {
    SignalStorm storm;
    const auto start = Clock::now();
    timed_out = t.times_out(kTimeout, holder ? &*holder : nullptr);
    took = Clock::now() - start;
    sent += storm.sent();
    handled += storm.handled();
  } else {
    FaultPlan plan;
    // Many EINTRs, then real sleeps: either way the deadline must hold.
    for (auto point : t.eintr_points) plan.inject(point, EINTR, 0, 50);
    const auto start = Clock::now();
    timed_out = t.times_out(kTimeout, holder ? &*holder : nullptr);
    took = Clock::now() - start;
    EXPECT_GT(plan.injected(), 0u);
  }
  EXPECT_TRUE(timed_out);
  EXPECT_GE(took, kTimeout) << "cut short";
  EXPECT_LT(took, kTimeout + kSlack) << "the timeout was not honoured (restarted after each EINTR?)";
  if (holder) {
    done.raise();
    EXPECT_EQ(exit_code_of(*holder), 0);
  }
}

void expect_timeout_honoured(TimedMaker make, Interruption how) {
  if (how != Interruption::signals) {
    unsigned sent = 0, handled = 0;
    expect_timeout_honoured_once(make, how, sent, handled);
    return;
  }
  unsigned sent = 0, handled = 0;
  for (int attempt = 0; attempt < kStormAttempts; ++attempt) {
    expect_timeout_honoured_once(make, how, sent, handled);
    if (testing::Test::HasFatalFailure()) return;
    if (sent >= kStormSignals && handled >= kStormSignals / 4) break;
  }
  EXPECT_GE(sent, kStormSignals) << "the storm hardly reached the call in " << kStormAttempts << " calls";
  EXPECT_GE(handled, kStormSignals / 4) << "signals sent but not handled";
}

Timed queue_get_for() {
  auto q = std::make_shared<mproc::Queue<int>>();
  return {{"futex_wait"}, {}, [q](auto timeout, auto*) { return !q->get_for(timeout).has_value(); }};
}

Timed queue_put_for() {
  auto q = std::make_shared<mproc::Queue<int>>(4096, 1);
  q->put(1);
  return {{"futex_wait"}, {}, [q](auto timeout, auto*) { return !q->put_for(2, timeout); }};
}

Timed joinable_queue_join_for() {
  auto q = std::make_shared<mproc::JoinableQueue<int>>();
  q->put(1);
  return {{"futex_wait"}, {}, [q](auto timeout, auto*) { return !q->join(timeout); }};
}

Timed connection_poll_for() {
  auto ends = std::make_shared<std::pair<mproc::Connection, mproc::Connection>>(mproc::Pipe());
  return {{"ppoll"}, {}, [ends](auto timeout, auto*) { return !ends->first.poll(timeout); }};
}

Timed connection_wait_for() {
  auto ends = std::make_shared<std::pair<mproc::Connection, mproc::Connection>>(mproc::Pipe());
  return {{"ppoll"}, {}, [ends](auto timeout, auto*) {
            mproc::Connection* watched[] = {&ends->first};
            return mproc::wait(std::span<mproc::Connection* const>(watched), timeout).empty();
          }};
}

Timed lock_acquire_for() {
  auto lock = std::make_shared<mproc::Lock>();
  return {{},
          [lock] { CHILD_CHECK(lock->acquire()); },
          [lock](auto timeout, auto*) { return lock->acquire(timeout).timed_out(); }};
}

Timed semaphore_acquire_for() {
  auto s = std::make_shared<mproc::Semaphore>(0);
  return {{"futex_wait"}, {}, [s](auto timeout, auto*) { return !s->acquire(timeout); }};
}

Timed event_wait_for() {
  auto e = std::make_shared<mproc::Event>();
  return {{"futex_wait"}, {}, [e](auto timeout, auto*) { return !e->wait(timeout); }};
}

Timed condition_wait_for() {
  auto cond = std::make_shared<mproc::Condition>();
  return {{"futex_wait"}, {}, [cond](auto timeout, auto*) {
            std::scoped_lock hold{cond->lock()};
            return cond->wait(timeout).timed_out();
          }};
}

Timed barrier_wait_for() {
  auto b = std::make_shared<mproc::Barrier>(2);
  return {{"futex_wait"}, {}, [b](auto timeout, auto*) {
            try {
              (void)b->wait(timeout);
            } catch (const mproc::BrokenBarrier&) {
              return true;
            }
            return false;
          }};
}

Timed process_join_for() {
  return {{"ppoll"}, [] {}, [](auto timeout, mproc::Process* holder) { return !holder->join(timeout); }};
}

int never_returns(int) {
  if (!Doorbell::wait_readable(g_pool_bell_fd, kPatience)) return -1;
  return 0;
}

Timed pool_result_for() {
  auto bell = std::make_shared<Doorbell>();
  g_pool_bell_fd = bell->read_fd();
  auto pool = std::make_shared<mproc::Pool>(1);
  return {{"poll"}, {}, [pool, bell](auto timeout, auto*) {
            auto r = pool->apply_async(never_returns, 0);
            const bool timed_out = !r.wait(timeout);
            bell->ring();  // let the worker go, so the pool shuts down at once
            return timed_out;
          }};
}

Timed file_lock_acquire_for() {
  auto dir = std::make_shared<mproc_test::TempDir>();
  const std::string path = (*dir / "lock").string();
  auto mine = std::make_shared<mproc::FileLock>(path);
  return {{"fcntl", "nanosleep", "clock_nanosleep"},
          [path] {
            static std::optional<mproc::FileLock> theirs;  // held until the holder exits
            theirs.emplace(path);
            CHILD_CHECK(theirs->acquire());
          },
          [mine, dir](auto timeout, auto*) { return mine->acquire(timeout).timed_out(); }};
}

struct NamedTimed {
  const char* name;
  TimedMaker make;
  bool injectable = true;
};
void PrintTo(const NamedTimed& t, std::ostream* os) {
  *os << t.name;
}

const NamedTimed kTimed[] = {
    {"queue_get_for", queue_get_for},
    {"queue_put_for", queue_put_for},
    {"joinable_queue_join_for", joinable_queue_join_for},
    {"connection_poll_for", connection_poll_for},
    {"connection_wait_for", connection_wait_for},
    {"lock_acquire_for", lock_acquire_for, false},
    {"semaphore_acquire_for", semaphore_acquire_for},
    {"event_wait_for", event_wait_for},
    {"condition_wait_for", condition_wait_for},
    {"barrier_wait_for", barrier_wait_for},
    {"process_join_for", process_join_for},
    {"pool_result_for", pool_result_for},
    {"file_lock_acquire_for", file_lock_acquire_for},
};

class TimedCall : public testing::TestWithParam<NamedTimed> {};
class TimedCallWithSystemCalls : public testing::TestWithParam<NamedTimed> {};

TEST_P(TimedCall, honours_its_timeout_under_a_storm_of_signals) {
  expect_timeout_honoured(GetParam().make, Interruption::signals);
}

TEST_P(TimedCallWithSystemCalls, honours_its_timeout_when_its_system_calls_return_EINTR) {
  expect_timeout_honoured(GetParam().make, Interruption::injected);
}

INSTANTIATE_TEST_SUITE_P(Each, TimedCall, testing::ValuesIn(kTimed), by_entry_name);
INSTANTIATE_TEST_SUITE_P(Each, TimedCallWithSystemCalls, testing::ValuesIn(injectable(kTimed)),
                         by_entry_name);

}  // namespace
