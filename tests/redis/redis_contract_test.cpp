// One contract, two backends: the same test bodies run against the shared-memory
// mproc::Queue<T> and mproc::redis::Queue<T> (typed tests). What holds for both is here; what
// only one can do is in its own tests (queue_test.cpp, redis_queue_test.cpp).
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/redis/queue.hpp"
#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;

// A backend makes named queues (so separately started processes can open them) with a bound.
struct SharedMemoryBackend {
  template <class T>
  using Queue = mproc::Queue<T>;
  std::vector<std::string> made;
  template <class T>
  std::string make(const std::string& stem, std::size_t max_messages = 0) {
    const std::string name = mproc_test::unique_name(stem);
    (void)mproc::Queue<T>::create(name, mproc::Queue<T>::kDefaultCapacity, max_messages,
                                  {0600, mproc::Lifetime::persistent});
    made.push_back(name);
    return name;
  }
  template <class T>
  Queue<T> open(const std::string& name) {
    return mproc::Queue<T>::open(name);
  }
  ~SharedMemoryBackend() {
    for (const auto& n : made) {
      try {
        mproc::Queue<int>::unlink(n);
      } catch (const mproc::Error&) {  // already gone: nothing to clean
      }
    }
  }
};

struct RedisBackend {
  template <class T>
  using Queue = mproc::redis::Queue<T>;
  mproc_test::RedisServer server;
  template <class T>
  std::string make(const std::string& stem, std::size_t max_messages = 0) {
    const std::string url = server.url(stem);
    (void)mproc::redis::Queue<T>::create(url, {.max_messages = max_messages});
    return url;
  }
  template <class T>
  Queue<T> open(const std::string& url) {
    return mproc::redis::Queue<T>::open(url);
  }
};

template <class Backend>
class QueueContract : public testing::Test {
 protected:
  Backend backend;
};

using Backends = testing::Types<SharedMemoryBackend, RedisBackend>;
class BackendNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, SharedMemoryBackend> ? "shared_memory" : "redis";
  }
};
TYPED_TEST_SUITE(QueueContract, Backends, BackendNames);

TYPED_TEST(QueueContract, messages_of_one_producer_arrive_in_order_and_intact) {
  auto q = this->backend.template open<std::string>(this->backend.template make<std::string>("order"));
  for (int i = 0; i < 100; ++i) q.put(std::string(static_cast<std::size_t>(i), 'x') + std::to_string(i));
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(q.get(), std::string(static_cast<std::size_t>(i), 'x') + std::to_string(i));
  }
}

TYPED_TEST(QueueContract, structured_messages_round_trip) {
  using M = std::map<std::string, std::vector<int>>;
  auto q = this->backend.template open<M>(this->backend.template make<M>("structured"));
  const M m{{"a", {1, 2}}, {"b", {}}};
  q.put(m);
  EXPECT_EQ(q.get(), m);
}

TYPED_TEST(QueueContract, get_for_on_an_empty_queue_returns_nothing) {
  auto q = this->backend.template open<int>(this->backend.template make<int>("empty"));
  EXPECT_FALSE(q.get_for(20ms).has_value());
  EXPECT_FALSE(q.try_get().has_value());
  EXPECT_TRUE(q.empty());
}

TYPED_TEST(QueueContract, a_full_queue_refuses_try_put_until_a_get_makes_room) {
  auto q = this->backend.template open<int>(this->backend.template make<int>("full", 3));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(q.try_put(i));
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.try_put(3));
  EXPECT_FALSE(q.put_for(3, 10ms));
  EXPECT_EQ(q.get(), 0);
  EXPECT_TRUE(q.try_put(3));
  EXPECT_EQ(q.qsize(), 3u);
}

TYPED_TEST(QueueContract, close_drains_then_ends_gets_and_refuses_puts) {
  auto q = this->backend.template open<int>(this->backend.template make<int>("close"));
  q.put(1);
  q.close();
  EXPECT_TRUE(q.closed());
  EXPECT_THROW(q.put(2), mproc::Closed);
  EXPECT_EQ(q.get(), 1);
  EXPECT_FALSE(q.get().has_value());
}

TYPED_TEST(QueueContract, opening_with_another_type_is_a_clear_error) {
  const std::string name = this->backend.template make<int>("typed");
  try {
    (void)this->backend.template open<std::string>(name);
    ADD_FAILURE() << "opened a queue of int as a queue of std::string";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EINVAL) << e.what();
    EXPECT_NE(std::string(e.what()).find("expects"), std::string::npos) << e.what();
  }
}

TYPED_TEST(QueueContract, batches_keep_order_and_count) {
  auto q = this->backend.template open<int>(this->backend.template make<int>("batch"));
  std::vector<int> in(300);
  for (int i = 0; i < 300; ++i) in[static_cast<std::size_t>(i)] = i;
  q.put_many(in);
  std::vector<int> out(50);
  std::vector<int> all;
  while (all.size() < in.size()) {
    const std::size_t n = q.get_many_for(out, mproc_test::kPatience);
    ASSERT_GT(n, 0u);
    all.insert(all.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
  }
  EXPECT_EQ(all, in);
}

TYPED_TEST(QueueContract, many_producers_and_consumers_in_processes_deliver_every_message_exactly_once) {
  constexpr int kProducers = 3;
  constexpr int kEach = 200;
  const std::string name = this->backend.template make<int>("mpmc", 16);
  std::vector<mproc::Process> procs;
  for (int p = 0; p < kProducers; ++p) {
    procs.emplace_back([this, name, p] {
      auto q = this->backend.template open<int>(name);
      for (int i = 0; i < kEach; ++i) q.put(p * kEach + i);
    });
  }
  mproc_test::Shared<std::array<std::atomic<int>, kProducers * kEach>> seen;
  for (int c = 0; c < 2; ++c) {
    procs.emplace_back([this, name, &seen] {
      auto q = this->backend.template open<int>(name);
      while (auto v = q.get()) (*seen)[static_cast<std::size_t>(*v)].fetch_add(1);
    });
  }
  for (auto& p : procs) p.start();
  for (int p = 0; p < kProducers; ++p)
    EXPECT_EQ(mproc_test::exit_code_of(procs[static_cast<std::size_t>(p)]), 0);
  auto q = this->backend.template open<int>(name);
  q.close();  // after the last put returned: the consumers drain, then end
  for (std::size_t c = kProducers; c < procs.size(); ++c) EXPECT_EQ(mproc_test::exit_code_of(procs[c]), 0);
  for (std::size_t i = 0; i < seen->size(); ++i) EXPECT_EQ((*seen)[i].load(), 1) << "message " << i;
}

}  // namespace
