#pragma once
// The team runner of mproc_compare: queue_bench's methodology, generalised to any number of
// processes. Every child is started with mproc::Process, announces "ready" and waits at a start
// line in shared memory; the parent releases them all at once and takes the time; each child
// stamps CLOCK_MONOTONIC when its work is done, so the measured time runs from the start signal
// to the last child's end of work (process exit and reaping are not counted). Each child also
// reports its peak RSS and how often it blocked in the kernel. A child that fails makes the
// whole run fail; a run that does not finish in time (a lost message leaves a consumer waiting
// forever) is killed and reported.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "mproc/process.hpp"

namespace bench::compare {

/// The most processes one run may start (--scale N starts 2N).
inline constexpr int kMaxProcs = 129;
/// Producers a consumer keeps tallies for.
inline constexpr int kMaxProducers = 64;

[[noreturn]] inline void fail(const std::string& what) {
  throw std::runtime_error(what);
}

/// A latency histogram that fits in a few KiB, so that recording every one of a million round
/// trips does not grow the recording process's RSS (which the table reports). Values below 64 ns
/// have a bucket each; above, each power of two is split into 64 buckets: within 1.6 %.
class LatencyHistogram {
 public:
  void add(std::int64_t ns) {
    const auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(ns, 0));
    ++counts_[bucket(v)];
    ++total_;
  }
  /// The value below which a fraction q of the samples lie (the middle of its bucket).
  double quantile_ns(double q) const {
    if (total_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_ - 1));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      seen += counts_[b];
      if (seen > rank) return middle(b);
    }
    return middle(kBuckets - 1);
  }

 private:
  static constexpr std::size_t kSub = 64;                    // buckets per power of two
  static constexpr std::size_t kBuckets = kSub + 58 * kSub;  // up to 2^64 ns
  static std::size_t bucket(std::uint64_t v) {
    if (v < kSub) return static_cast<std::size_t>(v);
    const int e = 63 - __builtin_clzll(v);  // >= 6
    const auto sub = static_cast<std::size_t>((v >> (e - 6)) & (kSub - 1));
    return kSub + static_cast<std::size_t>(e - 6) * kSub + sub;
  }
  static double middle(std::size_t b) {
    if (b < kSub) return static_cast<double>(b);
    const std::size_t e = (b - kSub) / kSub + 6;
    const std::size_t sub = (b - kSub) % kSub;
    const double width = static_cast<double>(std::uint64_t{1} << (e - 6));
    return static_cast<double>(std::uint64_t{1} << e) + (static_cast<double>(sub) + 0.5) * width;
  }
  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t total_ = 0;
};

/// What child i reports through shared memory.
struct alignas(64) ChildSlot {
  std::int64_t end_ns;  // CLOCK_MONOTONIC when its work was done
  long maxrss_kib;      // getrusage ru_maxrss at that moment
  long nvcsw;           // voluntary context switches: times it blocked in the kernel
  double lat_p50_ns;    // round trip: the median and 99th percentile of its trips
  double lat_p99_ns;
  std::uint64_t items;  // what it handled (lines written, messages received)
  char error[192];      // why it failed, for the parent's message
};

/// Per (consumer, producer): how many messages the consumer took from that producer, and the sum
/// of their sequence numbers; the parent checks the totals.
struct Tally {
  std::uint64_t count;
  std::uint64_t sum;
};

/// The block every child shares with the parent (MAP_SHARED|MAP_ANONYMOUS, mapped before the
/// children are forked). Only the pages a run touches count in a child's RSS.
struct Arena {
  std::atomic<int> ready;
  std::atomic<int> go;
  // The lock workloads' guarded state: written only under the lock being measured.
  alignas(64) std::uint64_t counter;
  std::uint64_t switches;  // critical sections whose owner differs from the previous one
  int last_owner;
  alignas(64) ChildSlot slot[kMaxProcs];
  Tally tally[kMaxProcs][kMaxProducers];
};

/// The arena in its own shared mapping.
class SharedArena {
 public:
  SharedArena() : map_(sizeof(Arena)) { arena_ = new (map_.data()) Arena{}; }
  Arena& operator*() const { return *arena_; }
  Arena* operator->() const { return arena_; }

 private:
  SharedMap map_;
  Arena* arena_;
};

struct TeamResult {
  double seconds = 0;    // start signal to the last child's end stamp
  long max_rss_kib = 0;  // the largest peak RSS among the children
  long nvcsw = 0;        // blocking waits of all children together
  std::vector<ChildSlot> slots;
};

/// How long one run may take before it is declared stuck.
inline std::chrono::seconds& run_timeout() {
  static std::chrono::seconds t{120};
  return t;
}

/// Starts one child per body (child i pinned to cpus[i % n] when `pin`), releases them
/// together, joins them, checks their exit codes. Throws with `name` in the message if a child
/// failed or the run timed out.
inline TeamResult run_team(Arena& a, const std::string& name, bool pin,
                           const std::vector<std::function<void(int)>>& bodies) {
  const int n = static_cast<int>(bodies.size());
  if (n > kMaxProcs) fail(name + ": too many processes");
  static const std::vector<std::size_t> cpus = allowed_cpus();
  a.ready.store(0);
  a.go.store(0);
  a.counter = 0;
  a.switches = 0;
  a.last_owner = -1;
  for (int i = 0; i < n; ++i) {
    a.slot[i] = ChildSlot{};
    for (auto& t : a.tally[i]) t = Tally{};
  }
  std::vector<mproc::Process> procs;
  procs.reserve(bodies.size());
  for (int id = 0; id < n; ++id) {
    const std::size_t cpu = pin && !cpus.empty() ? cpus[static_cast<std::size_t>(id) % cpus.size()] : kNoCpu;
    procs.emplace_back(
        [&a, &bodies](int me, std::size_t on_cpu) {
          pin_to_cpu(on_cpu);
          a.ready.fetch_add(1, std::memory_order_acq_rel);
          spin_until(a.go, 1);
          ChildSlot& s = a.slot[me];
          try {
            bodies[static_cast<std::size_t>(me)](me);
          } catch (const std::exception& e) {
            std::snprintf(s.error, sizeof s.error, "%s", e.what());
            throw;  // mproc::Process prints it and exits with 1
          }
          s.end_ns = now_ns();
          rusage usage{};
          ::getrusage(RUSAGE_SELF, &usage);
          s.maxrss_kib = usage.ru_maxrss;
          s.nvcsw = usage.ru_nvcsw;
        },
        id, cpu);
  }
  for (auto& p : procs) p.start();
  spin_until(a.ready, n);
  const std::int64_t t0 = now_ns();
  a.go.store(1, std::memory_order_release);
  const std::string failure =
      join_all(procs, name, run_timeout(), [&](std::size_t i) { return std::string(a.slot[i].error); });
  if (!failure.empty()) fail(failure);
  TeamResult r;
  std::int64_t t1 = t0;
  for (int i = 0; i < n; ++i) {
    const ChildSlot& s = a.slot[i];
    if (s.end_ns == 0) fail(name + ": child " + std::to_string(i) + " did not report");
    t1 = std::max(t1, s.end_ns);
    r.max_rss_kib = std::max(r.max_rss_kib, s.maxrss_kib);
    r.nvcsw += s.nvcsw;
    r.slots.push_back(s);
  }
  r.seconds = static_cast<double>(t1 - t0) / 1e9;
  return r;
}

}  // namespace bench::compare
