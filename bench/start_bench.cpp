// Start-up cost per child for each start method: Process construction, start() and join() of a
// child whose target returns at once, measured one child at a time (the parent waits for each),
// beside Python's multiprocessing start methods measured in the same run (bench/start_bench.py).
//
//   start_bench [--quick] [--rounds N]
//
// Workload: N rounds per method (default 301; --quick 21); per round, one child that does
// nothing; the figure is the wall time from before the Process is constructed to after join()
// returns, in microseconds: median, 10th and 90th percentiles. The first forkserver child (which
// also starts the server) is reported apart and left out of the rounds; so is Python's. The
// parent has no other thread; the program is this benchmark, small, so spawn's exec is cheap
// here — a spawned child of a large program also pays for its static initialisers.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/start_method.hpp"

namespace {

using Clock = std::chrono::steady_clock;

void noop() {}

double elapsed_us(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

double start_and_join(mproc::StartMethod method) {
  const auto t0 = Clock::now();
  mproc::Process p(noop);
  p.set_start_method(method);
  p.start();
  p.join();
  const double us = elapsed_us(t0);
  if (p.exitcode() != 0) throw std::runtime_error("a child failed");
  return us;
}

struct Figures {
  double median, p10, p90;
};

Figures figures(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[v.size() / 10], v[v.size() * 9 / 10]};
}

void run_python(int rounds) {
  const std::string cmd =
      std::string("python3 ") + MPROC_SOURCE_DIR + "/bench/start_bench.py " + std::to_string(rounds);
  FILE* out = ::popen(cmd.c_str(), "r");
  if (out == nullptr) {
    std::printf("  Python: not measured (cannot run python3)\n");
    return;
  }
  char method[32];
  double med = 0, p10 = 0, p90 = 0;
  int n = 0;
  int lines = 0;
  while (std::fscanf(out, "%31s %lf %lf %lf %d", method, &med, &p10, &p90, &n) == 5) {
    std::printf("  Python %-10s  %9.1f  %9.1f  %9.1f  %6d\n", method, med, p10, p90, n);
    ++lines;
  }
  if (::pclose(out) != 0 || lines != 3) std::printf("  Python: not measured (python3 not found or failed)\n");
}

}  // namespace

MPROC_ENTRY(noop);

int main(int argc, char** argv) {
  mproc::init(argc, argv);
  int rounds = 301;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) rounds = 21;
    if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = std::atoi(argv[++i]) | 1;
  }
  try {
    std::printf(
        "start_bench: start() + join() of a child that returns at once, one child at a time,\n"
        "%d rounds per method; microseconds per child (median, 10th, 90th percentile)\n\n",
        rounds);
    std::printf("  %-17s  %9s  %9s  %9s  %6s\n", "method", "median", "p10", "p90", "rounds");
    const double first_server = start_and_join(mproc::StartMethod::forkserver);
    for (const auto method :
         {mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
      std::vector<double> us;
      for (int r = 0; r < rounds; ++r) us.push_back(start_and_join(method));
      const Figures f = figures(us);
      std::printf("  mproc %-11s  %9.1f  %9.1f  %9.1f  %6d\n", mproc::start_method_name(method), f.median,
                  f.p10, f.p90, rounds);
    }
    run_python(rounds);
    std::printf("\n  (the first forkserver child, which also started the server: %.1f us)\n", first_server);
    mproc::stop_forkserver();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "start_bench: FAILED: %s\n", e.what());
    return 1;
  }
  return 0;
}
