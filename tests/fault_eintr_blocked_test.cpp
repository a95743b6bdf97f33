// EINTR at a blocked call: interrupted again and again — by a storm of real signals, or by EINTR
// injected into its system calls — every blocking call completes with the right result.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
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
using mproc_test::Shared;
using mproc_test::start_child;
using namespace mproc_test::fault;

namespace {

constexpr unsigned kInterruptions = 30;  // before the peer lets the blocked call finish

/// A call that blocks until a peer process acts.
struct Blocking {
  /// Where an injected EINTR can reach the call (empty: only real signals can, inside glibc).
  std::vector<std::string_view> eintr_points;
  /// In the peer, before the call starts (take a lock the call will wait for, say).
  std::function<void()> prepare = [] {};
  /// In the peer, once the blocked call has been interrupted kInterruptions times.
  std::function<void()> release;
  /// The call and its checks, in this process; `peer` is the peer process.
  std::function<void(mproc::Process& peer)> call;
  int peer_exit = 0;
};

void expect_transparent_retry(const Blocking& b, Interruption how) {
  Doorbell go;
  mproc_test::Flag prepared;
  mproc::Process peer = start_child([&] {
    b.prepare();
    prepared.raise();
    const bool rung = go.wait_for(kPatience);
    b.release();  // whatever happened, let the call finish; the exit code tells the story
    if (!rung) ::_exit(98);
  });
  ASSERT_TRUE(prepared.wait_for(kPatience));
  if (how == Interruption::signals) {
    SignalStorm storm(kInterruptions, &go);
    b.call(peer);
    storm.expect_at_least(kInterruptions);
  } else {
    ASSERT_FALSE(b.eintr_points.empty());
    FaultPlan plan;
    for (auto point : b.eintr_points) plan.inject(point, EINTR, 0, kInterruptions);
    plan.notify_after(kInterruptions, go.write_fd());
    b.call(peer);
    EXPECT_GE(plan.injected(), kInterruptions);
  }
  EXPECT_EQ(exit_code_of(peer), b.peer_exit) << "98: the call was never interrupted enough";
}

// Each maker builds its objects here, before the peer is forked, so the peer inherits them.
using BlockingMaker = Blocking (*)();

Blocking queue_get() {
  auto q = std::make_shared<mproc::Queue<int>>();
  return {{"futex_wait"}, [] {}, [q] { q->put(42); }, [q](mproc::Process&) { EXPECT_EQ(q->get(), 42); }};
}

Blocking queue_put_into_a_full_queue() {
  auto q = std::make_shared<mproc::Queue<int>>(4096, /*max_messages*/ 1);
  q->put(1);
  return {{"futex_wait"},
          [] {},
          [q] { CHILD_CHECK(q->get_for(kPatience) == 1); },
          [q](mproc::Process&) {
            q->put(2);
            EXPECT_EQ(q->get_for(kPatience), 2);
          }};
}

Blocking joinable_queue_join() {
  auto q = std::make_shared<mproc::JoinableQueue<int>>();
  q->put(1);
  return {{"futex_wait"},
          [] {},
          [q] {
            CHILD_CHECK(q->get_for(kPatience) == 1);
            q->task_done();
          },
          [q](mproc::Process&) {
            q->join();
            EXPECT_EQ(q->unfinished_tasks(), 0u);
          }};
}

Blocking connection_recv() {
  auto ends = std::make_shared<std::pair<mproc::Connection, mproc::Connection>>(mproc::Pipe());
  return {{"ppoll"},
          [] {},
          [ends] { ends->second.send(std::string("hello")); },
          [ends](mproc::Process&) { EXPECT_EQ(ends->first.recv<std::string>(), "hello"); }};
}

Blocking connection_send_into_a_full_pipe() {
  auto ends = std::make_shared<std::pair<mproc::Connection, mproc::Connection>>(mproc::Pipe(true, 4096));
  const std::vector<std::byte> big(4096 - 8, std::byte{7});  // the largest message: fills the ring
  ends->first.send_bytes(big);
  return {{"ppoll"},
          [] {},
          [ends] {
            for (int i = 0; i < 2; ++i) {
              const auto got = ends->second.recv_bytes();
              CHILD_CHECK(got && got->size() == 4096 - 8);
            }
          },
          [ends, big](mproc::Process&) { ends->first.send_bytes(big); }};
}

Blocking connection_poll() {
  auto ends = std::make_shared<std::pair<mproc::Connection, mproc::Connection>>(mproc::Pipe());
  return {{"ppoll"},
          [] {},
          [ends] { ends->second.send(7); },
          [ends](mproc::Process&) {
            EXPECT_TRUE(ends->first.poll(kPatience));
            EXPECT_EQ(ends->first.recv<int>(), 7);
          }};
}

Blocking connection_wait() {
  auto ends = std::make_shared<std::pair<mproc::Connection, mproc::Connection>>(mproc::Pipe());
  return {{"ppoll"},
          [] {},
          [ends] { ends->second.send(7); },
          [ends](mproc::Process&) {
            mproc::Connection* watched[] = {&ends->first};
            const auto ready = mproc::wait(std::span<mproc::Connection* const>(watched));
            ASSERT_EQ(ready.size(), 1u);
            EXPECT_EQ(ends->first.recv<int>(), 7);
          }};
}

Blocking lock_acquire() {
  auto lock = std::make_shared<mproc::Lock>();
  return {{},  // pthread_mutex_clocklock retries its own futex waits: only real signals reach it
          [lock] { CHILD_CHECK(lock->acquire()); },
          [lock] { lock->release(); },
          [lock](mproc::Process&) {
            const mproc::Acquired got = lock->acquire();
            EXPECT_TRUE(got);
            EXPECT_FALSE(got.owner_died());
            lock->release();
          }};
}

Blocking semaphore_acquire() {
  auto s = std::make_shared<mproc::Semaphore>(0);
  return {{"futex_wait"},
          [] {},
          [s] { s->release(); },
          [s](mproc::Process&) {
            EXPECT_TRUE(s->acquire());
            EXPECT_EQ(s->get_value(), 0u);
          }};
}

Blocking event_wait() {
  auto e = std::make_shared<mproc::Event>();
  return {{"futex_wait"}, [] {}, [e] { e->set(); }, [e](mproc::Process&) { EXPECT_TRUE(e->wait()); }};
}

Blocking condition_wait() {
  auto cond = std::make_shared<mproc::Condition>();
  auto flag = std::make_shared<Shared<std::atomic<int>>>();
  return {{"futex_wait"},
          [] {},
          [cond, flag] {
            std::scoped_lock hold{cond->lock()};
            (**flag).store(1);
            cond->notify();
          },
          [cond, flag](mproc::Process&) {
            std::scoped_lock hold{cond->lock()};
            cond->wait_for([&] { return (**flag).load() == 1; });
            EXPECT_EQ((**flag).load(), 1);
          }};
}

Blocking barrier_wait() {
  auto b = std::make_shared<mproc::Barrier>(2);
  return {
      {"futex_wait"}, [] {}, [b] { (void)b->wait(); }, [b](mproc::Process&) { EXPECT_LT(b->wait(), 2u); }};
}

Blocking process_join() {
  return {{"ppoll", "waitid"},
          [] {},
          [] { ::_exit(7); },
          [](mproc::Process& peer) {
            peer.join();
            EXPECT_EQ(peer.exitcode(), 7);
          },
          7};
}

int wait_for_bell_then_double(int x) {
  if (!Doorbell::wait_readable(g_pool_bell_fd, kPatience)) return -1;
  return 2 * x;
}

Blocking pool_result() {
  auto bell = std::make_shared<Doorbell>();
  g_pool_bell_fd = bell->read_fd();
  auto pool = std::make_shared<mproc::Pool>(1);
  auto result = std::make_shared<mproc::AsyncResult<int>>(pool->apply_async(wait_for_bell_then_double, 21));
  // The dispatcher thread's poll is where an injected EINTR lands; the caller waits on a
  // condition variable, which glibc retries internally (real signals reach it).
  return {{"poll"},
          [] {},
          [bell] { bell->ring(); },
          [pool, result](mproc::Process&) { EXPECT_EQ(result->get(), 42); }};
}

Blocking file_lock_acquire() {
  auto dir = std::make_shared<mproc_test::TempDir>();
  const std::string path = (*dir / "lock").string();
  auto mine = std::make_shared<mproc::FileLock>(path);
  auto theirs = std::make_shared<std::optional<mproc::FileLock>>();
  return {{"fcntl", "pread", "pwrite"},
          [theirs, path] {
            theirs->emplace(path);
            CHILD_CHECK((*theirs)->acquire());
          },
          [theirs] { (*theirs)->release(); },
          [mine, dir](mproc::Process&) {
            const mproc::Acquired got = mine->acquire();
            EXPECT_TRUE(got);
            EXPECT_FALSE(got.owner_died());
            mine->release();
          }};
}

struct NamedBlocking {
  const char* name;
  BlockingMaker make;
  bool injectable = true;  // has system calls of its own where an injected EINTR lands
};
void PrintTo(const NamedBlocking& b, std::ostream* os) {
  *os << b.name;
}

const NamedBlocking kBlocking[] = {
    {"queue_get", queue_get},
    {"queue_put_into_a_full_queue", queue_put_into_a_full_queue},
    {"joinable_queue_join", joinable_queue_join},
    {"connection_recv", connection_recv},
    {"connection_send_into_a_full_pipe", connection_send_into_a_full_pipe},
    {"connection_poll", connection_poll},
    {"connection_wait", connection_wait},
    {"lock_acquire", lock_acquire, false},
    {"semaphore_acquire", semaphore_acquire},
    {"event_wait", event_wait},
    {"condition_wait", condition_wait},
    {"barrier_wait", barrier_wait},
    {"process_join", process_join},
    {"pool_result", pool_result},
    {"file_lock_acquire", file_lock_acquire},
};

class BlockedCall : public testing::TestWithParam<NamedBlocking> {};
class BlockedCallWithSystemCalls : public testing::TestWithParam<NamedBlocking> {};

TEST_P(BlockedCall, completes_with_the_right_result_under_a_storm_of_signals) {
  expect_transparent_retry(GetParam().make(), Interruption::signals);
}

// Lock::acquire is left out: pthread_mutex_clocklock makes its futex calls inside glibc, which
// retries them itself; the storm above reaches it.
TEST_P(BlockedCallWithSystemCalls, completes_with_the_right_result_when_its_system_calls_return_EINTR) {
  expect_transparent_retry(GetParam().make(), Interruption::injected);
}

INSTANTIATE_TEST_SUITE_P(Each, BlockedCall, testing::ValuesIn(kBlocking), by_entry_name);
INSTANTIATE_TEST_SUITE_P(Each, BlockedCallWithSystemCalls, testing::ValuesIn(injectable(kBlocking)),
                         by_entry_name);

}  // namespace
