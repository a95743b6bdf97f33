// The seed's producer/consumer across machines: jobs through a Redis JoinableQueue, workers as
// separate programs (start them on any machine that reaches the server).
//
//   redis_jobs work    redis://host/jobs          a worker: squares numbers until the queue closes
//   redis_jobs produce redis://host/jobs COUNT    puts 1..COUNT, collects the squares, checks
//                                                 the sum, waits (join) and closes the queue
//
// At least once: a worker killed mid-job has its job handed to another worker after the
// visibility timeout (here 2 s), so the producer may see a result twice; it counts distinct
// jobs. Exit status 0 when every job came back with the right answer.
#include <mproc/redis/queue.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>

namespace {

namespace mr = mproc::redis;
using namespace std::chrono_literals;

mr::QueueOptions options() {
  mr::QueueOptions o;
  o.visibility_timeout = 2s;
  return o;
}

std::string results_of(const std::string& jobs) {
  return jobs + "-results";
}

int work(const std::string& address) {
  auto jobs = mr::JoinableQueue<long>::open_or_create(address, options());
  auto results = mr::Queue<std::pair<long, long>>::open_or_create(results_of(address));
  int done = 0;
  while (auto n = jobs.get()) {
    results.put({*n, *n * *n});
    jobs.task_done();
    ++done;
  }
  std::printf("worker %d: %d jobs, the queue is closed\n", static_cast<int>(::getpid()), done);
  return 0;
}

int produce(const std::string& address, long count) {
  auto jobs = mr::JoinableQueue<long>::open_or_create(address, options());
  auto results = mr::Queue<std::pair<long, long>>::open_or_create(results_of(address));
  for (long i = 1; i <= count; ++i) jobs.put(i);
  std::set<long> seen;
  long long sum = 0;
  while (static_cast<long>(seen.size()) < count) {
    const auto r = results.get_for(30s);
    if (!r) {
      std::fprintf(stderr, "produce: no result for 30 s; %zu of %ld back\n", seen.size(), count);
      return 1;
    }
    if (seen.insert(r->first).second) sum += r->second;
  }
  const bool joined = jobs.join_for(30s);
  jobs.close();
  const long long want = static_cast<long long>(count) * (count + 1) * (2 * count + 1) / 6;
  std::printf("produce: %ld jobs, sum of squares %lld (expected %lld), join %s\n", count, sum, want,
              joined ? "returned" : "timed out");
  return sum == want && joined ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 3 && std::string(argv[1]) == "work") return work(argv[2]);
    if (argc == 4 && std::string(argv[1]) == "produce") return produce(argv[2], std::atol(argv[3]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "redis_jobs: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: redis_jobs work ADDRESS | redis_jobs produce ADDRESS COUNT\n");
  return 2;
}
