// The seed's conclusion in code. Producers make jobs and consumers take them, through one
// mproc::Queue: no lock in sight, because the queue handles it, and fast, because the jobs
// move through shared memory. For contrast, the same work through a file that every process
// must lock itself (the seed's "sharing data through files works, but it is slow and you do the
// locking yourself").
#include <mproc/mproc.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kProducers = 2;
constexpr int kConsumers = 2;

std::string make_job(int producer, int n) {
  return "order " + std::to_string(n) + " from kitchen " + std::to_string(producer);
}

// What a consumer does with a job: something small and checkable.
long work(const std::string& job) {
  return static_cast<long>(job.size());
}

long expected_total(int jobs_per_producer) {
  long total = 0;
  for (int p = 0; p < kProducers; ++p)
    for (int n = 0; n < jobs_per_producer; ++n) total += work(make_job(p, n));
  return total;
}

// ---- through a Queue ----------------------------------------------------------------------------

double with_queue(int jobs_per_producer) {
  mproc::Queue<std::string> jobs;
  mproc::Queue<long> results;
  const auto t0 = Clock::now();
  std::vector<mproc::Process> producers, consumers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back(
        [&](int id) {
          for (int n = 0; n < jobs_per_producer; ++n) jobs.put(make_job(id, n));
        },
        p);
  }
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&] {
      long done = 0;
      std::string job;
      while (jobs.get_into(job)) done += work(job);  // ends when the queue is closed and empty
      results.put(done);
    });
  }
  for (auto& p : producers) p.start();
  for (auto& c : consumers) c.start();
  for (auto& p : producers) p.join();
  jobs.close();  // no more jobs: consumers finish what is left, then stop
  long total = 0;
  for (int c = 0; c < kConsumers; ++c) total += results.get().value_or(0);
  for (auto& c : consumers) c.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (total != expected_total(jobs_per_producer)) {
    std::printf("queue: WRONG total %ld\n", total);
    return -1;
  }
  return seconds;
}

// ---- through a locked file ----------------------------------------------------------------------

void append_line(const fs::path& file, mproc::FileLock& lock, const std::string& line) {
  std::scoped_lock hold{lock};
  std::ofstream(file, std::ios::app) << line << '\n';
}

// Takes the first line of the file, or returns false if the file is empty.
bool pop_line(const fs::path& file, mproc::FileLock& lock, std::string& line) {
  std::scoped_lock hold{lock};
  std::ifstream in(file);
  std::stringstream rest;
  if (!std::getline(in, line)) return false;
  rest << in.rdbuf();
  in.close();
  std::ofstream(file, std::ios::trunc) << rest.str();
  return true;
}

double with_locked_file(const fs::path& dir, int jobs_per_producer) {
  const fs::path file = dir / "jobs.txt";
  std::ofstream(file, std::ios::trunc).close();
  mproc::FileLock lock((dir / "jobs.txt.lock").string());
  mproc::Queue<long> results;  // only to bring back each consumer's tally
  const auto t0 = Clock::now();
  std::vector<mproc::Process> producers, consumers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back(
        [&](int id) {
          for (int n = 0; n < jobs_per_producer; ++n) append_line(file, lock, make_job(id, n));
        },
        p);
  }
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&] {
      long done = 0;
      std::string job;
      for (;;) {
        if (!pop_line(file, lock, job)) {
          // A file cannot wake anyone up: look again a little later.
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          continue;
        }
        if (job == "END") break;
        done += work(job);
      }
      results.put(done);
    });
  }
  for (auto& p : producers) p.start();
  for (auto& c : consumers) c.start();
  for (auto& p : producers) p.join();
  for (int c = 0; c < kConsumers; ++c) append_line(file, lock, "END");
  long total = 0;
  for (int c = 0; c < kConsumers; ++c) total += results.get().value_or(0);
  for (auto& c : consumers) c.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (total != expected_total(jobs_per_producer)) {
    std::printf("locked file: WRONG total %ld\n", total);
    return -1;
  }
  return seconds;
}

}  // namespace

int main() {
  std::string dir_template = (fs::temp_directory_path() / "mproc-jobs-XXXXXX").string();
  if (::mkdtemp(dir_template.data()) == nullptr) return 1;
  const fs::path dir = dir_template;

  constexpr int kQueueJobs = 100'000, kFileJobs = 500;  // per producer
  std::printf("%d producers and %d consumers pass jobs (short strings) to each other.\n", kProducers,
              kConsumers);
  const double q = with_queue(kQueueJobs);
  const double f = with_locked_file(dir, kFileJobs);
  fs::remove_all(dir);
  if (q < 0 || f < 0) return 1;

  const double q_us = q * 1e6 / (kProducers * kQueueJobs);
  const double f_us = f * 1e6 / (kProducers * kFileJobs);
  std::printf("through one mproc::Queue (no user lock): %7d jobs in %6.3f s = %8.2f us/job\n",
              kProducers * kQueueJobs, q, q_us);
  std::printf("through a file + FileLock:                %7d jobs in %6.3f s = %8.2f us/job\n",
              kProducers * kFileJobs, f, f_us);
  std::printf("the queue is %.0fx faster per job, and every job arrived exactly once in both.\n",
              f_us / q_us);
  return 0;
}
