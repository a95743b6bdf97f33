// CPU time a Pool's own process spends while its workers are busy and it only waits for them,
// under each start method.
//
//   pool_idle_bench [--seconds S] [--repeats R]
//
// Workload: a Pool of 2 workers; map() of 2 tasks that each sleep S seconds (default 3) in the
// worker: a long task, during which the pool's process has nothing to do but wait for the
// results. The figure is the pool process's CPU time (user + system, getrusage RUSAGE_SELF:
// the dispatcher thread and the thread waiting in map()) from before map() to after it returns,
// in milliseconds; R repeats (default 5) per method on one Pool, median and range printed. The
// pool is started (and its workers ready, by one map() of a trivial task) before measuring.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "mproc/pool.hpp"
#include "mproc/start_method.hpp"

namespace {

// Workload, not synchronisation: a task that takes a while.
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

double cpu_ms() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto ms = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_usec) / 1e3;
  };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

}  // namespace

int main(int argc, char** argv) {
  mproc::init(argc, argv);
  int seconds = 3;
  int repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::atoi(argv[i + 1]);
  }
  std::printf("pool_idle_bench: 2 workers, 2 tasks of %d s each, %d repeats; CPU ms of the pool's process\n",
              seconds, repeats);
  for (const auto method :
       {mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
    mproc::Pool pool(2, method);
    (void)pool.map(sleep_ms, std::vector<int>{0, 0}, 1);  // workers up
    std::vector<double> cpu;
    for (int r = 0; r < repeats; ++r) {
      const double before = cpu_ms();
      const auto out = pool.map(sleep_ms, std::vector<int>{seconds * 1000, seconds * 1000}, 1);
      cpu.push_back(cpu_ms() - before);
      if (out.size() != 2) return 1;
    }
    std::sort(cpu.begin(), cpu.end());
    std::printf("  %-10s median %8.2f ms  (min %.2f, max %.2f)\n", mproc::start_method_name(method),
                cpu[cpu.size() / 2], cpu.front(), cpu.back());
  }
  mproc::stop_forkserver();
  return 0;
}
