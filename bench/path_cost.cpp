// path_cost: the instructions one operation costs on its fast path, counted by callgrind
// (bench/path_cost.sh runs it), so that a change to the ring or the lock can be judged on a
// noisy machine: instruction counts do not depend on the load, timings do. One thread, one
// process, nothing contended: what every operation pays before it meets another process.
//   path_cost MODE [N]   runs N (default 1,000,000) operations of MODE and prints a checksum
// Modes: queue-4k, queue-1m (a put and a get of a 56-byte message through a Queue of 4 KiB /
// 1 MiB), queue-batch (put_many and get_many of 64 such messages, per message), pipe (send and
// recv of an int through a Pipe), lock (Lock acquire + release), pthread (the same through a
// bare robust, process-shared pthread mutex: the floor mproc::Lock is built on).
#include <pthread.h>
#include <sys/mman.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"

namespace {

using Msg = std::array<char, 56>;

long queue_pairs(std::size_t capacity, long n) {
  mproc::Queue<Msg> q(capacity);
  Msg m{};
  long sum = 0;
  for (long i = 0; i < n; ++i) {
    m[0] = static_cast<char>(i);
    q.put(m);
    sum += (*q.get())[0];
  }
  return sum;
}

long queue_batches(long n) {
  constexpr std::size_t kBatch = 64;
  mproc::Queue<Msg> q(1u << 20);
  std::vector<Msg> in(kBatch), out(kBatch);
  long sum = 0;
  for (long i = 0; i < n; i += static_cast<long>(kBatch)) {
    in[0][0] = static_cast<char>(i);
    q.put_many(in);
    const std::size_t got = q.get_many(out);
    sum += static_cast<long>(got) + out[0][0];
  }
  return sum;
}

long pipe_pairs(long n) {
  auto [a, b] = mproc::Pipe();
  long sum = 0;
  for (long i = 0; i < n; ++i) {
    a.send(static_cast<int>(i));
    sum += *b.recv<int>();
  }
  return sum;
}

long lock_pairs(long n) {
  mproc::Lock lock;
  long sum = 0;
  for (long i = 0; i < n; ++i) {
    sum += lock.acquire() ? 1 : 0;
    lock.release();
  }
  return sum;
}

long pthread_pairs(long n) {
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return -1;
  auto* m = static_cast<pthread_mutex_t*>(page);
  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  ::pthread_mutex_init(m, &attr);
  long sum = 0;
  for (long i = 0; i < n; ++i) {
    sum += ::pthread_mutex_lock(m) == 0 ? 1 : 0;
    ::pthread_mutex_unlock(m);
  }
  ::munmap(page, 4096);
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const long n = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 1'000'000;
  long sum = 0;
  if (mode == "queue-4k") {
    sum = queue_pairs(4096, n);
  } else if (mode == "queue-1m") {
    sum = queue_pairs(1u << 20, n);
  } else if (mode == "queue-batch") {
    sum = queue_batches(n);
  } else if (mode == "pipe") {
    sum = pipe_pairs(n);
  } else if (mode == "lock") {
    sum = lock_pairs(n);
  } else if (mode == "pthread") {
    sum = pthread_pairs(n);
  } else {
    std::fprintf(stderr, "usage: %s queue-4k|queue-1m|queue-batch|pipe|lock|pthread [N]\n", argv[0]);
    return 2;
  }
  std::printf("%s %ld operations, checksum %ld\n", mode.c_str(), n, sum);
  return 0;
}
