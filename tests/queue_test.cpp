// mproc::Queue, JoinableQueue, SimpleQueue across real processes.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Bytes;
using mproc::JoinableQueue;
using mproc::Process;
using mproc::Queue;
using mproc::SimpleQueue;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::Shared;
using mproc_test::start_child;

namespace {

struct Point {  // trivially copyable: travels by memcpy
  double x, y;
  int id;
  friend bool operator==(const Point&, const Point&) = default;
};

struct Order {  // a user type: cereal's serialize() is the customisation point
  std::string customer;
  std::vector<int> items;
  std::optional<std::string> note;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(customer, items, note);
  }
  friend bool operator==(const Order&, const Order&) = default;
};

// CPU time (user + system) of a process, in clock ticks, from /proc.
long cpu_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) {
      stime = std::stol(field);
      break;
    }
  }
  return utime + stime;
}

}  // namespace

// Every kind of message, across a process boundary, through one queue per type.
template <class T>
void round_trip(const T& value) {
  Queue<T> q;
  Process p = start_child([&] { q.put(value); });
  std::optional<T> got = q.get_for(kPatience);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == value);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Queue, carries_trivially_copyable_standard_and_user_types) {
  round_trip(42);
  round_trip(Point{1.5, -2.5, 7});
  round_trip(std::string("hello, processes"));
  round_trip(std::string());
  round_trip(std::vector<double>{1.0, 2.0, 3.5});
  round_trip(std::map<std::string, std::vector<int>>{{"a", {1, 2}}, {"b", {}}});
  round_trip(std::optional<int>(5));
  round_trip(std::optional<std::string>());
  round_trip(std::tuple<int, std::string, double>(1, "two", 3.0));
  round_trip(std::pair<std::string, int>("pair", 2));
  round_trip(Order{"ada", {3, 1, 4}, std::string("gift wrap")});
  round_trip(std::vector<Order>{{"a", {1}, std::nullopt}, {"b", {2, 3}, std::string("x")}});
  round_trip(Bytes{std::byte{0}, std::byte{255}, std::byte{7}});
}

TEST(Queue, tiny_and_large_messages_share_one_queue) {
  Queue<std::vector<int>> q(256 * 1024);
  const std::vector<int> tiny{1};
  std::vector<int> large(15'000);  // 60 KB
  for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<int>(i * 7);
  Process p = start_child([&] {
    for (int round = 0; round < 50; ++round) {
      q.put(tiny);
      q.put(large);
    }
  });
  for (int round = 0; round < 50; ++round) {
    auto a = q.get_for(kPatience);
    auto b = q.get_for(kPatience);
    ASSERT_TRUE(a && b);
    ASSERT_EQ(*a, tiny);
    ASSERT_EQ(*b, large) << "round " << round;
  }
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Queue, a_message_larger_than_the_queue_is_an_error_not_a_hang) {
  Queue<Bytes> q(4096);
  EXPECT_EQ(q.capacity_bytes(), 4096u);
  EXPECT_EQ(q.max_message_bytes(), 4088u);
  try {
    q.put(Bytes(5000));
    FAIL() << "expected mproc::Error";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EMSGSIZE);
    EXPECT_NE(std::string(e.what()).find("4088"), std::string::npos) << e.what();
  }
  q.put(Bytes(4088));  // the largest that fits
  EXPECT_EQ(q.get()->size(), 4088u);
}

TEST(Queue, one_producers_messages_arrive_in_order_through_many_wraps) {
  Queue<std::uint64_t> q(4096);  // small: the ring wraps and the producer blocks often
  constexpr std::uint64_t kCount = 100'000;
  Process p = start_child([&] {
    for (std::uint64_t i = 0; i < kCount; ++i) q.put(i);
  });
  for (std::uint64_t i = 0; i < kCount; ++i) {
    auto v = q.get_for(kPatience);
    ASSERT_TRUE(v.has_value());
    ASSERT_EQ(*v, i);
  }
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Queue, many_producers_and_consumers_deliver_every_message_exactly_once) {
  constexpr int kProducers = 3, kConsumers = 3, kPerProducer = 20'000;
  struct Tally {
    std::atomic<int> seen[kProducers * kPerProducer];
  };
  Shared<Tally> tally;
  Queue<std::string> q(64 * 1024);
  std::vector<Process> ps;
  for (int c = 0; c < kConsumers; ++c) {
    ps.push_back(start_child([&] {
      std::string s;
      while (q.get_into(s)) {
        const int id = std::stoi(s.substr(0, s.find(':')));
        CHILD_CHECK(s.size() == std::string::size_type(8 + id % 50) || s.find(':') != std::string::npos);
        tally->seen[id].fetch_add(1);
      }
    }));
  }
  std::vector<Process> producers;
  for (int pr = 0; pr < kProducers; ++pr) {
    producers.push_back(start_child([&, pr] {
      for (int i = 0; i < kPerProducer; ++i) {
        const int id = pr * kPerProducer + i;
        q.put(std::to_string(id) + ":" + std::string(static_cast<std::size_t>(id % 50), 'x'));
      }
    }));
  }
  for (auto& p : producers) EXPECT_EQ(exit_code_of(p), 0);
  q.close();
  for (auto& p : ps) EXPECT_EQ(exit_code_of(p), 0);
  int missing = 0, duplicated = 0;
  for (auto& s : tally->seen) {
    missing += s.load() == 0;
    duplicated += s.load() > 1;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(duplicated, 0);
}

TEST(Queue, get_on_an_empty_queue_times_out_after_roughly_the_timeout) {
  Queue<int> q;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(q.get_for(150ms).has_value());
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 150ms + kPatience);
  EXPECT_FALSE(q.try_get().has_value());
  EXPECT_FALSE(q.closed());
}

TEST(Queue, put_on_a_full_queue_times_out_and_succeeds_once_there_is_room) {
  Queue<int> q(4096, 3);  // at most three messages
  EXPECT_TRUE(q.try_put(1));
  EXPECT_TRUE(q.try_put(2));
  EXPECT_TRUE(q.put_for(3, 10ms));
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.try_put(4));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(q.put_for(4, 100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
  Process p = start_child([&] { CHILD_CHECK(q.get() == 1); });
  EXPECT_TRUE(q.put_for(4, kPatience));
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(q.get(), 2);
}

TEST(Queue, qsize_empty_and_full_are_exact) {
  Queue<int> q(4096, 5);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.qsize(), 0u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(q.full());
    q.put(i);
    EXPECT_EQ(q.qsize(), static_cast<std::size_t>(i + 1));
  }
  EXPECT_TRUE(q.full());
  Process p = start_child([&] {
    CHILD_CHECK(q.qsize() == 5);  // the child sees the same queue
    CHILD_CHECK(q.get() == 0);
  });
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(q.qsize(), 4u);
  EXPECT_FALSE(q.full());
}

TEST(Queue, close_makes_put_fail_and_get_drain_then_end) {
  Queue<int> q;
  q.put(1);
  q.put(2);
  q.close();
  EXPECT_TRUE(q.closed());
  EXPECT_THROW(q.put(3), mproc::Closed);
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.get(), std::nullopt);  // end of queue, not a hang
  EXPECT_EQ(q.get_for(1s), std::nullopt);
}

TEST(Queue, close_wakes_a_consumer_blocked_in_another_process) {
  Queue<int> q;
  Flag waiting;
  Process p = start_child([&] {
    waiting.raise();
    CHILD_CHECK(!q.get().has_value());  // woken by close, not by a message
  });
  ASSERT_TRUE(waiting.wait_for(kPatience));
  q.close();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Queue, close_wakes_a_producer_blocked_on_a_full_queue) {
  Queue<int> q(4096, 1);
  q.put(1);
  Flag waiting;
  Process p = start_child([&] {
    waiting.raise();
    try {
      q.put(2);
    } catch (const mproc::Closed&) {
      std::exit(0);
    }
    std::exit(1);
  });
  ASSERT_TRUE(waiting.wait_for(kPatience));
  q.close();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Queue, a_consumer_blocked_on_an_idle_queue_uses_no_cpu) {
  // Named, so that the test can see (as `mproc ls` does) when the consumer is past its brief
  // spin phase and asleep.
  const mproc_test::ScratchName<Queue<int>> name("idle-get");
  Queue<int> q = Queue<int>::create(name.str());
  Process p = start_child([&] { CHILD_CHECK(q.get() == 1); });
  ASSERT_TRUE(mproc_test::wait_for_sleeping_consumer(name.str()));
  const long before = cpu_ticks(*p.pid());
  std::this_thread::sleep_for(1s);  // the idle second being measured
  const long used = cpu_ticks(*p.pid()) - before;
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  EXPECT_LE(used, ticks_per_second / 20) << "a blocked get() burned " << used << " ticks in 1 s";
  q.put(1);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Queue, a_producer_killed_while_blocked_in_put_does_not_wedge_the_queue) {
  const mproc_test::ScratchName<Queue<int>> name("put-kill");
  Queue<int> q = Queue<int>::create(name.str(), 4096, 1);
  q.put(0);
  Process p = start_child([&] {
    q.put(1);  // blocks holding the producer lock: killed here
    std::_Exit(3);
  });
  // Asleep in put, so it holds the producer lock: the kill leaves the lock's owner dead.
  ASSERT_TRUE(mproc_test::wait_for_sleeping_producer(name.str()));
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  EXPECT_EQ(q.get(), 0);
  EXPECT_TRUE(q.put_for(2, kPatience)) << "the dead producer's lock must be recovered";
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.stats().abandoned_puts, 1u);
  EXPECT_TRUE(q.empty()) << "the killed put delivered nothing";
}

TEST(Queue, a_consumer_killed_while_blocked_in_get_does_not_wedge_the_queue) {
  const mproc_test::ScratchName<Queue<int>> name("get-kill");
  Queue<int> q = Queue<int>::create(name.str());
  Process p = start_child([&] {
    (void)q.get();  // sleeps holding the consumer lock: killed here
    std::_Exit(3);
  });
  // Asleep, so it holds the consumer lock: the kill leaves the lock's owner dead.
  ASSERT_TRUE(mproc_test::wait_for_sleeping_consumer(name.str()));
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  q.put(7);
  EXPECT_EQ(q.get_for(kPatience), 7);
  EXPECT_EQ(q.stats().abandoned_gets, 1u);
}

TEST(JoinableQueue, join_waits_until_every_task_is_done) {
  JoinableQueue<int> q;
  for (int i = 0; i < 100; ++i) q.put(i);
  EXPECT_EQ(q.unfinished_tasks(), 100u);
  EXPECT_FALSE(q.join(50ms));
  Process p = start_child([&] {
    for (int i = 0; i < 100; ++i) {
      CHILD_CHECK(q.get() == i);
      q.task_done();
    }
  });
  EXPECT_TRUE(q.join(kPatience));
  EXPECT_EQ(q.unfinished_tasks(), 0u);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(JoinableQueue, task_done_more_often_than_items_taken_is_an_error) {
  JoinableQueue<int> q;
  q.put(1);
  EXPECT_THROW(q.task_done(), mproc::UsageError);  // nothing taken yet
  EXPECT_EQ(q.get(), 1);
  q.task_done();
  EXPECT_THROW(q.task_done(), mproc::UsageError);
  EXPECT_TRUE(q.join(0s));
}

TEST(SimpleQueue, puts_and_gets_across_processes) {
  SimpleQueue<std::string> q;
  Process p = start_child([&] { q.put("simple"); });
  EXPECT_EQ(q.get(), "simple");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(exit_code_of(p), 0);
}

long allocations_so_far();  // tests/support/alloc_counter.cpp

TEST(Queue, put_and_get_of_trivial_types_and_bytes_do_not_allocate) {
  Queue<Point> points;
  Queue<Bytes> bytes;
  const Bytes payload(1000, std::byte{9});
  Bytes received;
  received.reserve(payload.size());
  // Warm up: the first use may allocate once (a per-thread buffer, a static).
  points.put(Point{1, 2, 3});
  (void)points.get();
  const long before = allocations_so_far();
  for (int i = 0; i < 1000; ++i) {
    points.put(Point{1, 2, i});
    std::optional<Point> got = points.get();
    ASSERT_TRUE(got && got->id == i);
    bytes.put(std::span<const std::byte>(payload));
    ASSERT_TRUE(bytes.get_into(received));
  }
  EXPECT_EQ(allocations_so_far() - before, 0) << "allocations on the put/get path";
  EXPECT_EQ(received, payload);
}

TEST(Queue, fileno_is_readable_while_messages_wait) {
  Queue<int> q;
  q.put(1);  // before anyone watches: arming must still signal it
  const int fd = q.fileno();
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_EQ(q.try_get(), 1);
  EXPECT_EQ(q.try_get(), std::nullopt);  // finds it empty: clears the descriptor
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  Flag go;
  Process child = start_child([&] {
    CHILD_CHECK(go.wait_for(kPatience));
    q.put(2);
  });
  go.raise();
  EXPECT_EQ(::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kPatience).count())), 1);
  EXPECT_EQ(q.try_get(), 2);
  EXPECT_EQ(exit_code_of(child), 0);
}

TEST(Queue, fileno_never_stays_unreadable_while_messages_wait) {
  // A producer thread races with a consumer that polls fileno() and drains with try_get(): the
  // descriptor must become readable every time messages are waiting (a lost signal here once
  // left a full queue behind an unreadable descriptor).
  Queue<int> q(1 << 16);
  const int fd = q.fileno();
  constexpr int kCount = 300'000;
  std::thread producer([&] {
    for (int i = 0; i < kCount; ++i) q.put(i);
  });
  int got = 0;
  while (got < kCount) {
    pollfd p{fd, POLLIN, 0};
    const int patience_ms = static_cast<int>(std::chrono::milliseconds(kPatience).count());
    if (::poll(&p, 1, patience_ms) == 0 && q.qsize() > 0) {
      ADD_FAILURE() << "fileno() stayed unreadable for " << kPatience.count() << " s with " << q.qsize()
                    << " messages waiting";
      break;
    }
    while (q.try_get()) ++got;
  }
  producer.join();
  EXPECT_EQ(got, kCount);
}
