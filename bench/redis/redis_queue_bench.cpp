// redis::Queue throughput and latency beside the ceiling of raw hiredis loops, on the same
// redis-server (started here: unix socket and TCP loopback, no persistence), in the same run.
//
//   redis_queue_bench [--quick]
//
// Workload: 64-byte std::string messages; one producer then one consumer in this process
// (sequential phases, so each figure is one client against the server). Rows:
//   raw XADD            hiredis, one XADD per round trip (the single-command ceiling)
//   raw XADD pipelined  hiredis, 64 XADDs appended then 64 replies read
//   raw XREADGROUP      hiredis, XREADGROUP COUNT 1 NOACK per round trip (the ceiling of a get),
//                       and COUNT 64 (of a get_many), over the entries the raw XADDs left
//   put / get           redis::Queue per message (one EVALSHA per round trip)
//   put_many / get_many redis::Queue, batches of 64
//   latency put->get    one message put then got, per round trip pair (median of rounds)
//   get, putter waiting a bounded queue (max 16) kept full by a putter thread (a Queue object,
//                       so a connection, of its own): every get must wake the waiting putter
// Each row: messages per second, median of 5 rounds (--quick: 1 round, fewer messages).
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench_server.hpp"
#include "mproc/redis/queue.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double rate(std::size_t n, Clock::duration d) {
  return static_cast<double>(n) / std::chrono::duration<double>(d).count();
}

struct Target {
  const char* label;
  std::function<redisContext*()> connect;
  std::string url_prefix;  // + name
};

void check(redisReply* r) {
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) throw std::runtime_error("raw command failed");
  freeReplyObject(r);
}

double raw_xadd(const Target& t, std::size_t n, const std::string& msg) {
  redisContext* c = t.connect();
  const auto start = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    check(static_cast<redisReply*>(redisCommand(c, "XADD rawq * t 1 d %b", msg.data(), msg.size())));
  }
  const double r = rate(n, Clock::now() - start);
  redisFree(c);
  return r;
}

// Reads the n entries of stream rawq (left by raw_xadd) through a group, `count` per round trip.
double raw_xreadgroup(const Target& t, std::size_t n, std::size_t count) {
  redisContext* c = t.connect();
  check(static_cast<redisReply*>(redisCommand(c, "XGROUP CREATE rawq g 0")));
  const std::string cnt = std::to_string(count);
  const auto start = Clock::now();
  std::size_t got = 0;
  while (got < n) {
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "XREADGROUP GROUP g c COUNT %s NOACK STREAMS rawq >", cnt.c_str()));
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY) throw std::runtime_error("raw XREADGROUP failed");
    got += r->element[0]->element[1]->elements;
    freeReplyObject(r);
  }
  const double per_s = rate(n, Clock::now() - start);
  check(static_cast<redisReply*>(redisCommand(c, "XGROUP DESTROY rawq g")));
  redisFree(c);
  return per_s;
}

double raw_pipelined(const Target& t, std::size_t n, const std::string& msg) {
  redisContext* c = t.connect();
  const auto start = Clock::now();
  for (std::size_t i = 0; i < n; i += 64) {
    const std::size_t k = std::min<std::size_t>(64, n - i);
    for (std::size_t j = 0; j < k; ++j) redisAppendCommand(c, "XADD rawq * t 1 d %b", msg.data(), msg.size());
    for (std::size_t j = 0; j < k; ++j) {
      void* r = nullptr;
      if (redisGetReply(c, &r) != REDIS_OK) throw std::runtime_error("pipelined read failed");
      check(static_cast<redisReply*>(r));
    }
  }
  const double r = rate(n, Clock::now() - start);
  check(static_cast<redisReply*>(redisCommand(c, "DEL rawq")));
  redisFree(c);
  return r;
}

struct QueueRates {
  double put, get, put_many, get_many, latency_us;
};

QueueRates queue_rates(const Target& t, std::size_t n, const std::string& msg, int round) {
  QueueRates out{};
  const std::string url = t.url_prefix + "bench-" + std::to_string(round);
  mproc::redis::Queue<std::string>::unlink(url);
  auto q = mproc::redis::Queue<std::string>::create(url);
  auto start = Clock::now();
  for (std::size_t i = 0; i < n; ++i) q.put(msg);
  out.put = rate(n, Clock::now() - start);
  start = Clock::now();
  for (std::size_t i = 0; i < n; ++i) (void)q.get();
  out.get = rate(n, Clock::now() - start);
  const std::vector<std::string> batch(64, msg);
  start = Clock::now();
  for (std::size_t i = 0; i < n; i += 64) q.put_many(batch);
  out.put_many = rate(n, Clock::now() - start);
  std::vector<std::string> into(64);
  start = Clock::now();
  for (std::size_t got = 0; got < n;) got += q.get_many(into);
  out.get_many = rate(n, Clock::now() - start);
  std::vector<double> lat;
  for (int i = 0; i < 200; ++i) {
    const auto s = Clock::now();
    q.put(msg);
    (void)q.get();
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
  }
  out.latency_us = median(lat);
  mproc::redis::Queue<std::string>::unlink(url);
  return out;
}

// Gets from a bounded queue that a putter thread keeps full: each get frees a slot the waiting
// putter is woken for.
double get_with_a_waiting_putter(const Target& t, std::size_t n, const std::string& msg, int round) {
  constexpr std::size_t kMax = 16;
  const std::string url = t.url_prefix + "bench-full-" + std::to_string(round);
  mproc::redis::Queue<std::string>::unlink(url);
  auto q = mproc::redis::Queue<std::string>::create(url, {.max_messages = kMax});
  for (std::size_t i = 0; i < kMax; ++i) q.put(msg);
  std::thread putter([&url, &msg, n] {
    auto p = mproc::redis::Queue<std::string>::open(url);
    for (std::size_t i = 0; i < n; ++i) p.put(msg);
  });
  const auto start = Clock::now();
  for (std::size_t i = 0; i < n; ++i) (void)q.get();
  const double r = rate(n, Clock::now() - start);
  putter.join();
  for (std::size_t i = 0; i < kMax; ++i) (void)q.get();
  mproc::redis::Queue<std::string>::unlink(url);
  return r;
}

void run_target(const Target& t, std::size_t n, int rounds) {
  const std::string msg(64, 'm');
  std::vector<double> raw, pipe, read1, read64, put, get, put_many, get_many, lat, full;
  for (int r = 0; r < rounds; ++r) {
    raw.push_back(raw_xadd(t, n, msg));
    read1.push_back(raw_xreadgroup(t, n, 1));
    read64.push_back(raw_xreadgroup(t, n, 64));
    {
      redisContext* c = t.connect();
      check(static_cast<redisReply*>(redisCommand(c, "DEL rawq")));
      redisFree(c);
    }
    pipe.push_back(raw_pipelined(t, n, msg));
    const QueueRates q = queue_rates(t, n, msg, r);
    put.push_back(q.put);
    get.push_back(q.get);
    put_many.push_back(q.put_many);
    get_many.push_back(q.get_many);
    lat.push_back(q.latency_us);
    full.push_back(get_with_a_waiting_putter(t, n, msg, r));
  }
  const double raw_m = median(raw), pipe_m = median(pipe), read1_m = median(read1), read64_m = median(read64);
  std::printf("%s (%zu messages of 64 B, median of %d rounds)\n", t.label, n, rounds);
  std::printf("  raw XADD, one per round trip  %10.0f msg/s\n", raw_m);
  std::printf("  raw XADD, pipelined by 64     %10.0f msg/s\n", pipe_m);
  std::printf("  raw XREADGROUP NOACK, COUNT 1  %10.0f msg/s\n", read1_m);
  std::printf("  raw XREADGROUP NOACK, COUNT 64 %10.0f msg/s\n", read64_m);
  std::printf("  Queue::put                    %10.0f msg/s  %.2fx raw XADD\n", median(put),
              median(put) / raw_m);
  std::printf("  Queue::get                    %10.0f msg/s  %.2fx raw XADD  %.2fx raw XREADGROUP\n",
              median(get), median(get) / raw_m, median(get) / read1_m);
  std::printf("  Queue::put_many (64)          %10.0f msg/s  %.2fx raw pipelined\n", median(put_many),
              median(put_many) / pipe_m);
  std::printf("  Queue::get_many (64)          %10.0f msg/s  %.2fx raw pipelined  %.2fx raw XREADGROUP 64\n",
              median(get_many), median(get_many) / pipe_m, median(get_many) / read64_m);
  std::printf("  latency put->get              %10.1f us (median)\n", median(lat));
  std::printf("  Queue::get, putter waiting    %10.0f msg/s  %.2fx raw XREADGROUP\n", median(full),
              median(full) / read1_m);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const std::size_t n = quick ? 1024 : 20000;
  const int rounds = quick ? 1 : 5;
  try {
    const bench_redis::Server server;
    const std::string sock = server.socket();
    const int port = server.port();
    const Target unix_target{"unix socket", [sock] { return redisConnectUnix(sock.c_str()); },
                             "unix://" + sock + "?name="};
    const Target tcp_target{"TCP loopback", [port] { return redisConnect("127.0.0.1", port); },
                            "redis://127.0.0.1:" + std::to_string(port) + "/"};
    // Names as the url's last part: unix addresses take the name from ?name=.
    run_target(unix_target, n, rounds);
    run_target(tcp_target, n, rounds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "redis_queue_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
