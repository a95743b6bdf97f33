// mproc::Pipe and Connection across real processes: messages, one-way pipes, end of stream when
// the peer closes or dies, descriptors for poll loops, wait() on several connections.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>

#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Bytes;
using mproc::Connection;
using mproc::Pipe;
using mproc::Process;
using mproc_test::exit_code_of;
using mproc_test::Flag;
using mproc_test::kPatience;
using mproc_test::start_child;

namespace {

bool fd_readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

}  // namespace

TEST(Pipe, both_ends_send_and_receive_any_message_type) {
  auto [here, there] = Pipe();
  Process p = start_child([&] {
    auto question = there.recv<std::string>();
    CHILD_CHECK(question == "how many?");
    there.send(42);
    there.send(std::map<std::string, std::vector<int>>{{"primes", {2, 3, 5}}});
    there.send_bytes(Bytes{std::byte{1}, std::byte{2}});
  });
  there.close();  // the parent does not use the child's end
  here.send(std::string("how many?"));
  EXPECT_EQ(here.recv<int>(), 42);
  auto m = here.recv<std::map<std::string, std::vector<int>>>();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->at("primes"), (std::vector<int>{2, 3, 5}));
  EXPECT_EQ(here.recv_bytes(), (Bytes{std::byte{1}, std::byte{2}}));
  EXPECT_EQ(exit_code_of(p), 0);
  EXPECT_EQ(here.recv<int>(), std::nullopt) << "the child exited: end of stream";
}

TEST(Pipe, carries_a_60_kib_message_and_refuses_one_that_can_never_fit) {
  auto [a, b] = Pipe(true, 128 * 1024);
  std::vector<int> big(15'000, 7);
  Process p = start_child([&] { b.send(big); });
  b.close();
  EXPECT_EQ(a.recv<std::vector<int>>(), big);
  EXPECT_EQ(exit_code_of(p), 0);
  try {
    a.send(std::vector<char>(200'000));
    FAIL() << "expected mproc::Error";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EMSGSIZE);
  }
}

TEST(Pipe, a_one_way_pipe_rejects_the_wrong_direction) {
  auto [reader, writer] = Pipe(false);
  EXPECT_TRUE(reader.readable());
  EXPECT_FALSE(reader.writable());
  EXPECT_THROW(reader.send(1), mproc::UsageError);
  EXPECT_THROW((void)writer.recv<int>(), mproc::UsageError);
  writer.send(5);
  EXPECT_EQ(reader.recv<int>(), 5);
}

TEST(Pipe, recv_reports_end_of_stream_after_the_peer_closes_and_drains_first) {
  auto [mine, theirs] = Pipe();
  Flag closed;
  Process p = start_child([&] {
    theirs.send(1);
    theirs.send(2);
    theirs.close();
    closed.raise();
  });
  theirs.close();
  ASSERT_TRUE(closed.wait_for(kPatience));
  EXPECT_EQ(mine.recv<int>(), 1) << "what was sent before the close is still delivered";
  EXPECT_EQ(mine.recv<int>(), 2);
  EXPECT_EQ(mine.recv<int>(), std::nullopt);
  EXPECT_TRUE(mine.poll(0s)) << "end of stream counts as ready, as in Python";
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Pipe, recv_reports_end_of_stream_when_the_peer_process_is_killed) {
  auto [mine, theirs] = Pipe();
  Flag ready;
  Process p = start_child([&] {
    ready.raise();
    ready.block_forever();
  });
  theirs.close();
  ASSERT_TRUE(ready.wait_for(kPatience));
  p.kill();
  EXPECT_EQ(exit_code_of(p), -SIGKILL);
  EXPECT_EQ(mine.recv<int>(), std::nullopt) << "a dead peer must not leave recv() blocked";
}

TEST(Pipe, a_blocked_recv_wakes_when_the_peer_dies) {
  auto [mine, theirs] = Pipe();
  Flag ready;
  Process killer_target = start_child([&] {
    ready.raise();
    ready.block_forever();
  });
  theirs.close();
  ASSERT_TRUE(ready.wait_for(kPatience));
  Process receiver = start_child([&] { CHILD_CHECK(!mine.recv<int>().has_value()); });
  mine.close();  // only the receiver child holds this end now
  killer_target.kill();
  EXPECT_EQ(exit_code_of(killer_target), -SIGKILL);
  EXPECT_EQ(exit_code_of(receiver), 0);
}

TEST(Pipe, an_end_still_held_by_another_process_keeps_the_stream_open) {
  auto [mine, theirs] = Pipe();
  Process p = start_child([&] { theirs.close(); });
  EXPECT_EQ(exit_code_of(p), 0);
  // This process still holds `theirs`: no end of stream, as with OS pipes.
  EXPECT_FALSE(mine.poll(100ms));
  theirs.close();
  EXPECT_TRUE(mine.poll(kPatience));
  EXPECT_EQ(mine.recv<int>(), std::nullopt);
}

TEST(Pipe, send_to_a_dead_peer_reports_a_broken_pipe) {
  auto [mine, theirs] = Pipe(true, 4096);
  Process p = start_child([&] { theirs.close(); });
  theirs.close();
  EXPECT_EQ(exit_code_of(p), 0);
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  int sent = 0;
  try {
    while (std::chrono::steady_clock::now() < deadline) {
      mine.send(sent++);
    }
    FAIL() << "send kept succeeding to a gone peer";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EPIPE) << e.what();
  }
}

TEST(Pipe, recv_of_the_wrong_type_is_an_error_and_leaves_the_message) {
  auto [a, b] = Pipe();
  b.send(std::string("text"));
  try {
    (void)a.recv<int>();
    FAIL() << "expected mproc::Error";
  } catch (const mproc::Error& e) {
    EXPECT_EQ(e.code().value(), EBADMSG);
    EXPECT_NE(std::string(e.what()).find("int"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a.recv<std::string>(), "text");
}

TEST(Pipe, poll_waits_at_most_the_timeout) {
  auto [a, b] = Pipe();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(a.poll(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
  b.send(1);
  EXPECT_TRUE(a.poll(0s));
  EXPECT_TRUE(a.poll(kPatience));
}

TEST(Pipe, fileno_becomes_readable_when_a_message_waits) {
  auto [a, b] = Pipe();
  const int fd = a.fileno();
  EXPECT_FALSE(fd_readable(fd, 0ms));
  Flag go;
  Process p = start_child([&] {
    CHILD_CHECK(go.wait_for(kPatience));
    b.send(std::string("ping"));
  });
  go.raise();
  ASSERT_TRUE(fd_readable(fd, std::chrono::milliseconds(kPatience)));
  EXPECT_EQ(a.recv<std::string>(), "ping");
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Pipe, wait_returns_the_connections_that_are_ready) {
  auto [a1, b1] = Pipe();
  auto [a2, b2] = Pipe();
  auto [a3, b3] = Pipe();
  Connection* all[] = {&a1, &a2, &a3};
  EXPECT_TRUE(mproc::wait(all, 50ms).empty());
  Process p = start_child([&] { b2.send(2); });
  auto ready = mproc::wait(all, kPatience);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &a2);
  EXPECT_EQ(a2.recv<int>(), 2);
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Pipe, using_a_closed_connection_is_an_error) {
  auto [a, b] = Pipe();
  a.close();
  EXPECT_TRUE(a.closed());
  EXPECT_THROW(a.send(1), mproc::UsageError);
  EXPECT_THROW((void)a.recv<int>(), mproc::UsageError);
}

TEST(Pipe, ping_pong_keeps_order_across_many_round_trips) {
  auto [a, b] = Pipe(true, 4096);
  Process p = start_child([&] {
    a.close();  // the child's copy of the parent's end, or it would never see end of stream
    while (auto v = b.recv<int>()) b.send(*v + 1);
  });
  b.close();
  for (int i = 0; i < 20'000; i += 2) {
    a.send(i);
    ASSERT_EQ(a.recv<int>(), i + 1);
  }
  a.close();
  EXPECT_EQ(exit_code_of(p), 0);
}

TEST(Pipe, waiting_on_an_armed_descriptor_sleeps_instead_of_spinning) {
  auto [a, b] = Pipe();
  Connection* ends[] = {&a};
  (void)a.fileno();  // armed: the next send writes a wake byte
  b.send(1);
  EXPECT_EQ(mproc::wait(ends, kPatience).size(), 1u);
  EXPECT_EQ(a.recv<int>(), 1);  // the byte stays behind; wait() must not spin on it
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  EXPECT_TRUE(mproc::wait(ends, 500ms).empty());
  ::getrusage(RUSAGE_SELF, &after);
  const auto cpu_us = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1'000'000L + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
  };
  EXPECT_LT(cpu_us(after) - cpu_us(before), 200'000) << "wait() burned CPU on an empty pipe";
}
