// mproc_compare — mproc next to what people use instead, every workload between separate
// processes, in one run: a table, a CSV file and a plot.
//
// Contenders (each where it applies and is available):
//   mproc         mproc::Queue<Msg> (default 1 MiB ring, put / get_into); mproc::Lock. The
//                 reference row: "mproc vs it" is how many times better it is than each row
//   mproc, batches of 64
//                 the same queue through put_many / get_many: a producer fills a local array of
//                 64 messages and puts it in one call (the last batch shorter), a consumer takes
//                 up to 64 waiting messages per call and checks each. tp64, tp4k, mpmc2, mpmc4.
//                 A second mproc row (bold in results.md), not the reference: its own ratios are
//                 the "batched vs it" column
//   pipe(2)       one write(2) + one read(2) per message
//   pipe(2), 64 messages per write
//                 the pipe's counterpart of batches: 64 x 64 B = 4096 B (PIPE_BUF, so atomic
//                 with several writers) per write(2) and per read(2), the last chunk padded with
//                 fillers (why a read takes one whole chunk: BatchedPipeChannel). tp64, mpmc2,
//                 mpmc4 (4 KiB messages are one per write already)
//   socketpair    AF_UNIX SOCK_SEQPACKET (keeps message boundaries, so it can be shared by many
//                 readers and writers as a pipe is): one send(2) + one recv(2) per message
//   POSIX mq      mq_open / mq_send / mq_receive, as deep as the kernel allows (see the notes)
//   Boost         boost::interprocess::message_queue (1 MiB of slots) and interprocess_mutex;
//                 only when Boost's headers were found at configure time ("not built" otherwise)
//   pthread       a robust, process-shared pthread_mutex (what mproc::Lock is built on)
//   raw ring      the hardware ceiling: a busy-spinning shared-memory ring with no locks, no
//                 system calls and no crash safety. 1 -> 1 and the round trip: an SPSC ring
//                 (Lamport, cached indices); k -> k: Vyukov's bounded MPMC ring; locks: a
//                 test-and-test-and-set spinlock. Spinners pause, then sched_yield().
//   Python        multiprocessing Queue, Pipe and Lock, run by bench/compare_python.py in the
//                 same run when python3 is present (not in --quick)
//
// Workloads (every one verifies its result and fails the program if anything was lost):
//   rt8     round trip of an 8-byte message: A sends i, B checks it and sends it back, A checks
//           it. A reads the clock once per trip; median and 99th percentile of the trips.
//           2 processes pinned to two CPUs.
//   tp64    1 producer -> 1 consumer, 64-byte messages (sequence number, producer id and check
//           words; the consumer checks each); M msg/s. Pinned.
//   tp4k    the same with 4096-byte messages (checked at both ends); MB/s (10^6 B/s). Pinned.
//   mpmc2   2 producers -> 2 consumers on one channel, 64-byte messages, not pinned. Each
//           producer ends with a sentinel, each consumer stops at its first; consumers check
//           that every producer's sequence numbers rise and count them; the parent checks that
//           each producer's messages arrived exactly once (count and sum). A batched consumer
//           finishes the batch holding its first sentinel and passes any further sentinel in it
//           back into the channel for another consumer (see stream()).
//   mpmc4   4 -> 4, the same: 8 processes, more than a small machine has cores.
//   rtpipe  the round trip of rt8 through mproc's other channel and other ring sizes: a duplex
//           mproc::Pipe as Pipe() makes it (1 MiB per direction; the reference row), the same
//           Pipe with a 4 KiB ring, two mproc::Queues of 4 KiB and two of the default 1 MiB, and
//           two pipe(2)s. Pinned. Figures only: how much the ring's size costs.
//   mpmc2small
//           2 -> 2, 64 B, not pinned, as mpmc2, through queues that hold about 64 messages (as
//           a Python Queue(maxsize=64) or a small Boost message_queue): an mproc::Queue whose
//           ring is 4 KiB (56 records of 72 bytes) or 8 KiB (113), one with the default 1 MiB
//           ring and max_messages = 64 (a count limit, not a small ring: a different
//           mechanism), the raw Vyukov ring of 64 slots, and, for scale, the default mproc::Queue
//           (the reference row) and the 1 MiB Vyukov ring of mpmc2. The notes give the ring's
//           own counters per 1000 messages (RingStats: hand-overs, revocations of a live
//           owner) and the blocking waits (ru_nvcsw) per 1000 messages.
//   lock2   2 processes, pinned, increment a shared counter under the lock, N times each; the
//           counter is checked; M acquisitions/s and the share of hand-offs (critical sections
//           whose owner differs from the previous one's).
//   lock4   4 processes, not pinned.
//   seed    the seed's question: 4 processes append lines to one file, either each under a
//           shared lock (one write(2) per line, as printing under a lock) or by sending them
//           through a queue (or a pipe) to one writer process (buffered writes). The file is
//           read back: every line whole, each writer's lines complete and in order.
//
// Method: each run starts its processes with mproc::Process; they wait at a start line in
// shared memory and are released together; the time runs from the release to the last child's
// end of work (compare/harness.hpp). The message count of each contender is calibrated first
// so that one run takes about --seconds (the calibration runs double as warm-up). Then every
// round runs every contender of the workload once, in turn; a figure is the median of the
// rounds, and mproc's ratio to a contender is taken within each round and its median printed
// (for Python, which runs in its own process afterwards, the ratio of the medians); the same
// for mproc's batched row where there is one ("batched vs it"). Peak RSS per process is the
// largest ru_maxrss among a run's processes (median of the rounds); a forked child's starts
// from the parent's RSS at the fork, and shared pages count in every process that touches them.
//
// Run (Release build):
//   mproc_compare [--out DIR]   the full suite, a few minutes; DIR gets results.md, .csv, .png
//   mproc_compare --quick       tiny counts, 3 rounds, no Python, no plot (a smoke test)
//   mproc_compare --scale N     1..N producers and as many consumers: mproc and pipe (each per
//                               message and in batches of 64), Boost
//   options: --rounds R, --seconds S (per run), --only rt8,tp64,..., --no-python, --no-plot
//   --contender TEXT: only the contenders whose name contains TEXT (and no Python)
//   --unpinned: the 1 -> 1 workloads without pinning (as a program that does not pin runs them)
//   --inject-fault (for the tests): each workload loses or corrupts one item; the run must fail
// Exit status: 0 on success (whether or not the targets are met), 1 on lost or wrong data, a
// failed child or any other error, 2 on a bad argument.
#include <fcntl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "bench_util.hpp"
#include "compare/contenders.hpp"
#include "compare/harness.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"

namespace {

using namespace bench;
using namespace bench::compare;

// ---- configuration ---------------------------------------------------------------------------

struct Config {
  bool quick = false;
  int scale = 0;    // --scale N: the sweep instead of the suite
  std::string out;  // directory for results.{md,csv,png} (or scale.*); empty: none
  int rounds = 5;
  double seconds = 0.25;  // target duration of one run
  std::set<std::string> only;
  std::string contender;  // --contender TEXT: only the contenders whose name contains it
  bool python = true;
  bool plot = true;
};

constexpr int kSeedWriters = 4;

/// --inject-fault, for the test suite: every run drops or corrupts one item, so that the test
/// can show that the workload's check catches it and the program fails.
bool g_inject_fault = false;

/// --unpinned: the 1 -> 1 workloads run without pinning their two processes to a CPU each, as
/// a program that does not pin runs them (the scheduler may move them, or put both on one CPU).
bool g_unpinned = false;

// ---- messages --------------------------------------------------------------------------------

constexpr std::uint64_t kMagic = 0x9e3779b97f4a7c15ULL;
constexpr std::uint64_t kSentinel = ~std::uint64_t{0};  // a producer's last message
constexpr std::uint64_t kFiller = kSentinel - 1;        // pads a pipe's last chunk: skipped

/// A Size-byte message: sequence number, producer, check words at both ends. Producers stamp
/// only these words (not the whole body), so that 4 KiB messages measure the transport rather
/// than memset.
template <std::size_t Size>
struct Msg {
  std::uint64_t seq;
  std::uint64_t producer;
  std::uint64_t fill[Size / 8 - 3];
  std::uint64_t check;
};
using Msg64 = Msg<64>;
using Msg4K = Msg<4096>;
static_assert(sizeof(Msg64) == 64 && sizeof(Msg4K) == 4096);
static_assert(std::is_trivially_copyable_v<Msg4K>);

template <class M>
void stamp(M& m, std::uint64_t seq, std::uint64_t producer) {
  m.seq = seq;
  m.producer = producer;
  m.fill[0] = seq + 1;
  m.fill[std::size(m.fill) - 1] = seq + 2;
  m.check = seq ^ kMagic ^ producer;
}

template <class M>
bool intact(const M& m) {
  return m.check == (m.seq ^ kMagic ^ m.producer) && m.fill[0] == m.seq + 1 &&
         m.fill[std::size(m.fill) - 1] == m.seq + 2;
}

// ---- one measured run ------------------------------------------------------------------------

struct Sample {
  double seconds = 0;
  double value = 0;    // in the workload's unit
  double p99 = NAN;    // round trip only
  double rss_kib = 0;  // largest peak RSS among the run's processes
  double extra = NAN;  // lock workloads: the share of hand-offs, %
  double waits = 0;    // times a process blocked in the kernel (ru_nvcsw), per unit of work
  // An mproc::Queue's RingStats over the run, per unit of work, both sides together: the
  // ring-size workloads show them (NAN: not an mproc queue).
  double handovers = NAN;    // a streaming owner handed its side to a thread that asked
  double revocations = NAN;  // a live owner's side taken back (idle or sparse when asked, ...)
};

/// The sample every workload starts from: time, RSS, and blocking waits per unit of work.
Sample sample_of(const TeamResult& r, double units) {
  Sample s;
  s.seconds = r.seconds;
  s.rss_kib = static_cast<double>(r.max_rss_kib);
  s.waits = static_cast<double>(r.nvcsw) / units;
  return s;
}

/// The round trip: A (child 0) sends i, B (child 1) checks it and echoes it, on a link
/// (contenders.hpp, "round-trip links"): two one-way channels, or one duplex mproc::Pipe.
template <class Link>
Sample round_trip_on(Arena& a, const std::string& name, std::int64_t n) {
  Link link;
  const auto trips = static_cast<std::uint64_t>(n);
  const std::vector<std::function<void(int)>> bodies{
      [&](int me) {
        LatencyHistogram h;
        std::uint64_t v = 0;
        std::int64_t t_prev = now_ns();
        for (std::uint64_t i = 0; i < trips; ++i) {
          link.a_send(i);
          link.a_recv(v);
          if (v != i) {
            fail(name + ": sent " + std::to_string(i) + ", got back " + std::to_string(v));
          }
          const std::int64_t t = now_ns();  // one clock read per trip: the next one starts here
          h.add(t - t_prev);
          t_prev = t;
        }
        a.slot[me].lat_p50_ns = h.quantile_ns(0.5);
        a.slot[me].lat_p99_ns = h.quantile_ns(0.99);
        a.slot[me].items = trips;
      },
      [&](int me) {
        std::uint64_t v = 0;
        for (std::uint64_t i = 0; i < trips; ++i) {
          link.b_recv(v);
          if (v != i) fail(name + ": expected " + std::to_string(i) + ", got " + std::to_string(v));
          link.b_send(g_inject_fault && i == trips / 2 ? v + 1 : v);
        }
        a.slot[me].items = trips;
      }};
  const TeamResult r = run_team(a, name, true, bodies);
  if (r.slots[0].items != trips || r.slots[1].items != trips) fail(name + ": trips lost");
  Sample s = sample_of(r, static_cast<double>(trips));
  s.value = r.slots[0].lat_p50_ns / 1e3;
  s.p99 = r.slots[0].lat_p99_ns / 1e3;
  return s;
}

/// The round trip on two one-way channels: `ping` carries A's message, `pong` B's echo.
template <class Chan>
Sample round_trip(Arena& a, const std::string& name, std::int64_t n) {
  return round_trip_on<ChannelPairLink<Chan>>(a, name, n);
}

template <class Chan>
concept BatchedChannel = requires {
  Chan::kBatch;
};

/// A batched channel's producer side: a local array of kBatch messages that goes out in one
/// send_many when full; flush() sends the rest (padded with fillers when the channel takes
/// whole batches only). Per-message channels keep their plain loop in stream(): the raw rings'
/// speed depends on how lean it is (wrapping their sends in this class cost the SPSC ring 5x).
template <class Chan, class M>
requires BatchedChannel<Chan>
class Outbox {
 public:
  explicit Outbox(Chan& chan) : chan_(chan), batch_(Chan::kBatch) {}  // heap: 4 KiB x 64 is big
  void send(std::uint64_t seq, std::uint64_t producer) {
    stamp(batch_[filled_++], seq, producer);
    if (filled_ == batch_.size()) flush();
  }
  void flush() {
    if (filled_ == 0) return;
    if constexpr (Chan::kWholeBatches) {
      const std::uint64_t producer = batch_[filled_ - 1].producer;
      while (filled_ < batch_.size()) stamp(batch_[filled_++], kFiller, producer);
    }
    chan_.send_many(std::span<const M>(batch_.data(), filled_));
    filled_ = 0;
  }

 private:
  Chan& chan_;
  std::vector<M> batch_;
  std::size_t filled_ = 0;
};

/// A batched channel's consumer side: one recv_many into a local array of kBatch, then its
/// messages one by one.
template <class Chan, class M>
requires BatchedChannel<Chan>
class Inbox {
 public:
  explicit Inbox(Chan& chan) : chan_(chan), batch_(Chan::kBatch) {}
  const M& next() {
    if (pos_ == got_) {
      got_ = chan_.recv_many(batch_);
      pos_ = 0;
    }
    return batch_[pos_++];
  }
  /// Messages taken from the channel that next() has not returned yet.
  std::size_t held() const { return got_ - pos_; }

 private:
  Chan& chan_;
  std::vector<M> batch_;
  std::size_t got_ = 0;
  std::size_t pos_ = 0;
};

/// Producers (children 0..P-1) send n messages each and a sentinel; consumers (children P..)
/// take messages until their first sentinel. With one consumer every producer's messages must
/// arrive consecutively; with several, in rising order at each consumer; and in all, each
/// producer's n messages exactly once (count and sum of sequence numbers).
///
/// Batched channels (BatchedChannel): a producer sends through a local batch, a consumer takes a
/// batch at a time and checks its messages one by one as above. A batch may hold more than the
/// consumer's first sentinel, so the consumer finishes the batch (its messages are its own now)
/// and sends any further sentinel in it back into the channel for another consumer: there are
/// as many sentinels as consumers, each consumer keeps exactly one, and each comes after all of
/// its producer's messages, so when every consumer has stopped every message has been taken.
/// (A consumer passing one on holds at least two, so not every running consumer can be
/// blocked sending: someone is reading.) Fillers pad a pipe's last chunk; they are checked and
/// skipped.
template <class Chan, class M>
Sample stream(Arena& a, const std::string& name, int producers, int consumers, std::int64_t n, bool pin) {
  if (producers != consumers || producers > kMaxProducers) fail(name + ": bad shape");
  Chan chan;
  const auto per = static_cast<std::uint64_t>(n);
  std::vector<std::function<void(int)>> bodies;
  for (int p = 0; p < producers; ++p) {
    bodies.emplace_back([&](int me) {
      const auto id = static_cast<std::uint64_t>(me);
      if constexpr (!BatchedChannel<Chan>) {
        M m{};
        for (std::uint64_t i = 0; i < per; ++i) {
          if (g_inject_fault && id == 0 && i == per / 2) continue;
          stamp(m, i, id);
          chan.send(m);
        }
        stamp(m, kSentinel, id);
        chan.send(m);
      } else {
        Outbox<Chan, M> out(chan);
        for (std::uint64_t i = 0; i < per; ++i) {
          if (g_inject_fault && id == 0 && i == per / 2) continue;
          out.send(i, id);
        }
        out.send(kSentinel, id);
        out.flush();
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    bodies.emplace_back([&, producers, consumers](int me) {
      std::vector<std::uint64_t> expect(static_cast<std::size_t>(producers), 0);
      Tally* tally = a.tally[me];
      // Checks one message; false for a sentinel or a filler (nothing to count).
      auto take = [&](const M& m) {
        if (m.producer >= static_cast<std::uint64_t>(producers) || !intact(m)) {
          fail(name + ": a torn or corrupt message (producer " + std::to_string(m.producer) + ", seq " +
               std::to_string(m.seq) + ")");
        }
        if (m.seq == kFiller || m.seq == kSentinel) return false;
        std::uint64_t& want = expect[m.producer];
        if (consumers == 1 ? m.seq != want : m.seq < want) {
          fail(name + ": producer " + std::to_string(m.producer) + "'s message " + std::to_string(m.seq) +
               " arrived where " + std::to_string(want) +
               (consumers == 1 ? " was due" : " or later was due"));
        }
        want = m.seq + 1;
        ++tally[m.producer].count;
        tally[m.producer].sum += m.seq;
        return true;
      };
      if constexpr (!BatchedChannel<Chan>) {
        // One message per recv, into a local: the loop the per-message contenders always had
        // (the raw rings' speed depends on how lean it is).
        M m{};
        for (;;) {
          chan.recv(m);
          if (!take(m) && m.seq == kSentinel) break;
        }
      } else {
        Inbox<Chan, M> in(chan);
        bool stopped = false;  // has taken its sentinel
        while (!stopped || in.held() > 0) {
          const M& m = in.next();
          if (take(m) || m.seq != kSentinel) continue;
          if (stopped) {  // another consumer's sentinel, in the same batch: pass it on
            Outbox<Chan, M> back(chan);
            back.send(kSentinel, m.producer);
            back.flush();
          }
          stopped = true;
        }
      }
    });
  }
  const TeamResult r = run_team(a, name, pin, bodies);
  const std::uint64_t want_sum = per == 0 ? 0 : per * (per - 1) / 2;
  for (int p = 0; p < producers; ++p) {
    std::uint64_t count = 0;
    std::uint64_t sum = 0;
    for (int c = producers; c < producers + consumers; ++c) {
      count += a.tally[c][p].count;
      sum += a.tally[c][p].sum;
    }
    if (count != per || sum != want_sum) {
      fail(name + ": producer " + std::to_string(p) + " sent " + std::to_string(per) +
           " messages (sequence sum " + std::to_string(want_sum) + "), the consumers got " +
           std::to_string(count) + " (sum " + std::to_string(sum) + "): lost or duplicated");
    }
  }
  const double messages = static_cast<double>(per) * producers;
  Sample s = sample_of(r, messages);
  s.value = sizeof(M) >= 4096 ? messages * sizeof(M) / r.seconds / 1e6 : messages / r.seconds / 1e6;
  if constexpr (requires { chan.stats(); }) {
    const mproc::RingStats rs = chan.stats();  // the ring is shared: the children's counts
    s.handovers = static_cast<double>(rs.producer_bias_handovers + rs.consumer_bias_handovers) / messages;
    s.revocations =
        static_cast<double>(rs.producer_bias_revocations + rs.consumer_bias_revocations) / messages;
  }
  return s;
}

/// `procs` processes each increment the shared counter n times under the lock.
template <class L, class... Args>
Sample lock_handoff(Arena& a, const std::string& name, int procs, std::int64_t n, bool pin, Args... args) {
  L lock(args...);
  std::vector<std::function<void(int)>> bodies(static_cast<std::size_t>(procs), [&](int me) {
    for (std::int64_t i = 0; i < n; ++i) {
      lock.lock();
      if (!(g_inject_fault && me == 0 && i == n / 2)) ++a.counter;
      if (a.last_owner != me) {
        ++a.switches;
        a.last_owner = me;
      }
      lock.unlock();
    }
  });
  const TeamResult r = run_team(a, name, pin, bodies);
  const auto expected = static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(procs);
  if (a.counter != expected) {
    fail(name + ": the counter is " + std::to_string(a.counter) + ", expected " + std::to_string(expected) +
         ": mutual exclusion broken");
  }
  Sample s = sample_of(r, static_cast<double>(expected));
  s.value = static_cast<double>(expected) / r.seconds / 1e6;
  s.extra = 100.0 * static_cast<double>(a.switches) / static_cast<double>(expected);
  return s;
}

// ---- the seed workload -----------------------------------------------------------------------

std::size_t format_line(char* buf, std::size_t size, int writer, std::uint64_t seq) {
  if (g_inject_fault && writer == 0 && seq == 1) seq = 2;  // line 1 goes missing
  const int len =
      std::snprintf(buf, size, "writer %d line %09llu\n", writer, static_cast<unsigned long long>(seq));
  return static_cast<std::size_t>(len);
}

/// A descriptor opened for appending (truncated first), closed when it goes out of scope.
class AppendFile {
 public:
  explicit AppendFile(const std::string& path)
      : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600)) {
    if (fd_ < 0) fail_errno("open " + path);
  }
  ~AppendFile() { ::close(fd_); }
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

/// Reads the file back: every line whole and well formed, each writer's lines 0..n-1 in order,
/// nothing else but (for the pipe) one "#" end marker per writer.
void verify_seed_file(const std::string& path, const std::string& name, int writers, std::int64_t n) {
  std::ifstream f(path);
  if (!f) fail(name + ": cannot read " + path);
  std::vector<std::uint64_t> next(static_cast<std::size_t>(writers), 0);
  std::string line;
  int marks = 0;
  std::uint64_t lines = 0;
  while (std::getline(f, line)) {
    ++lines;
    if (line == "#") {
      ++marks;
      continue;
    }
    int w = -1;
    unsigned long long seq = 0;
    int used = 0;
    if (std::sscanf(line.c_str(), "writer %d line %llu%n", &w, &seq, &used) != 2 ||
        static_cast<std::size_t>(used) != line.size() || w < 0 || w >= writers) {
      fail(name + ": line " + std::to_string(lines) + " of the file is torn: \"" + line + "\"");
    }
    if (seq != next[static_cast<std::size_t>(w)]) {
      fail(name + ": writer " + std::to_string(w) + "'s line " + std::to_string(seq) + " is where line " +
           std::to_string(next[static_cast<std::size_t>(w)]) + " was due");
    }
    ++next[static_cast<std::size_t>(w)];
  }
  for (int w = 0; w < writers; ++w) {
    if (next[static_cast<std::size_t>(w)] != static_cast<std::uint64_t>(n)) {
      fail(name + ": writer " + std::to_string(w) + " wrote " + std::to_string(n) +
           " lines, the file holds " + std::to_string(next[static_cast<std::size_t>(w)]));
    }
  }
  if (marks != 0 && marks != writers) fail(name + ": stray end markers in the file");
}

Sample seed_sample(const TeamResult& r, int writers, std::int64_t n) {
  const double lines = static_cast<double>(n) * writers;
  Sample s = sample_of(r, lines);
  s.value = lines / r.seconds / 1e6;
  return s;
}

/// Each writer appends its lines itself, one write(2) per line under the shared lock.
template <class L, class... Args>
Sample seed_locked(Arena& a, const std::string& name, const std::string& path, std::int64_t n, Args... args) {
  L lock(args...);
  TeamResult r;
  {
    const AppendFile file(path);  // one open file description, shared by every writer
    std::vector<std::function<void(int)>> bodies(kSeedWriters, [&](int me) {
      char buf[64];
      for (std::int64_t i = 0; i < n; ++i) {
        const std::size_t len = format_line(buf, sizeof buf, me, static_cast<std::uint64_t>(i));
        lock.lock();
        write_full(file.fd(), buf, len, "the seed file");
        lock.unlock();
      }
    });
    r = run_team(a, name, false, bodies);
  }
  verify_seed_file(path, name, kSeedWriters, n);
  return seed_sample(r, kSeedWriters, n);
}

/// The writers put their lines into an mproc::Queue<std::string>; one more process takes them
/// and writes them to the file through a 64 KiB stdio buffer. An empty string ends a writer.
Sample seed_queue(Arena& a, const std::string& name, const std::string& path, std::int64_t n) {
  mproc::Queue<std::string> q;
  std::vector<std::function<void(int)>> bodies(kSeedWriters, [&](int me) {
    char buf[64];
    std::string line;
    for (std::int64_t i = 0; i < n; ++i) {
      line.assign(buf, format_line(buf, sizeof buf, me, static_cast<std::uint64_t>(i)));
      q.put(line);
    }
    q.put(std::string());
  });
  bodies.emplace_back([&](int me) {
    std::FILE* f = std::fopen(path.c_str(), "we");
    if (f == nullptr) fail_errno("fopen " + path);
    std::setvbuf(f, nullptr, _IOFBF, 64 * 1024);
    std::string line;
    std::uint64_t lines = 0;
    for (int ends = 0; ends < kSeedWriters;) {
      if (!q.get_into(line)) fail(name + ": queue closed");
      if (line.empty()) {
        ++ends;
        continue;
      }
      if (std::fwrite(line.data(), 1, line.size(), f) != line.size()) fail_errno("fwrite");
      ++lines;
    }
    if (std::fclose(f) != 0) fail_errno("fclose " + path);
    a.slot[me].items = lines;
  });
  const TeamResult r = run_team(a, name, false, bodies);
  verify_seed_file(path, name, kSeedWriters, n);
  return seed_sample(r, kSeedWriters, n);
}

/// The writers write their lines into one pipe (atomic below PIPE_BUF) and end with "#\n"; one
/// more process copies the pipe into the file in 64 KiB chunks until it has seen every "#".
Sample seed_pipe(Arena& a, const std::string& name, const std::string& path, std::int64_t n) {
  OsPipe p;
  std::vector<std::function<void(int)>> bodies(kSeedWriters, [&](int me) {
    char buf[64];
    for (std::int64_t i = 0; i < n; ++i) {
      write_full(p.write_end(), buf, format_line(buf, sizeof buf, me, static_cast<std::uint64_t>(i)), "pipe");
    }
    write_full(p.write_end(), "#\n", 2, "pipe");
  });
  bodies.emplace_back([&](int) {
    const AppendFile file(path);
    std::vector<char> buf(64 * 1024);
    int marks = 0;
    bool line_start = true;
    while (marks < kSeedWriters) {
      const ssize_t got = ::read(p.read_end(), buf.data(), buf.size());
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail_errno("read from pipe");
      if (got == 0) fail(name + ": unexpected end of file on the pipe");
      for (ssize_t i = 0; i < got; ++i) {
        if (line_start && buf[static_cast<std::size_t>(i)] == '#') ++marks;
        line_start = buf[static_cast<std::size_t>(i)] == '\n';
      }
      write_full(file.fd(), buf.data(), static_cast<std::size_t>(got), "the seed file");
    }
  });
  const TeamResult r = run_team(a, name, false, bodies);
  verify_seed_file(path, name, kSeedWriters, n);
  return seed_sample(r, kSeedWriters, n);
}

// ---- workloads and their rows ----------------------------------------------------------------

struct WorkloadInfo {
  std::string id;
  std::string title;
  std::string unit;
  bool lower_is_better;
  std::string setup;  // one line: what runs where
};

const std::vector<WorkloadInfo>& workloads() {
  static const std::vector<WorkloadInfo> w{
      {"rt8", "round trip, 8 B", "us", true,
       "A sends i, B checks and echoes it; 2 processes pinned to 2 CPUs; median of the trips "
       "(p99 beside it)"},
      {"tp64", "1->1, 64 B", "M msg/s", false,
       "1 producer, 1 consumer pinned to 2 CPUs; every message checked"},
      {"tp4k", "1->1, 4 KiB", "MB/s", false,
       "1 producer, 1 consumer pinned to 2 CPUs; every message checked at both ends"},
      {"mpmc2", "2->2, 64 B", "M msg/s", false,
       "2 producers, 2 consumers on one channel, not pinned; exactly-once checked per producer"},
      {"mpmc4", "4->4, 64 B", "M msg/s", false,
       "4 producers, 4 consumers on one channel, not pinned; exactly-once checked per producer"},
      {"lock2", "lock hand-off, 2 procs", "M acq/s", false,
       "2 processes pinned to 2 CPUs increment one counter under the lock; counter checked"},
      {"lock4", "lock hand-off, 4 procs", "M acq/s", false,
       "4 processes, not pinned, increment one counter under the lock; counter checked"},
      {"seed", "seed: 4 writers, 1 file", "M lines/s", false,
       "4 processes append lines to one file: each under a lock, or via a queue/pipe to 1 "
       "writer; file checked"},
      // The ring-size workloads: figures, no targets.
      {"rtpipe", "round trip 8 B, by channel and ring size", "us", true,
       "as rt8 (pinned): mproc::Pipe default (1 MiB/direction) vs a 4 KiB ring, Queue pairs "
       "of 4 KiB and 1 MiB, pipe(2) pair"},
      {"mpmc2small", "2->2, 64 B, queues of ~64 messages", "M msg/s", false,
       "as mpmc2 (not pinned), through rings of ~64 messages (or max_messages = 64) vs the "
       "default queue and the raw rings"},
  };
  return w;
}

struct Row {
  std::string name;              // in the table
  std::string label;             // in the plot
  std::string status;            // empty: measured; otherwise why not ("not built ...")
  bool reference = false;        // mproc's per-message row: "mproc vs it"
  bool batch_reference = false;  // mproc's batched row: "batched vs it"
  bool mproc = false;
  bool python = false;
  std::function<Sample(std::int64_t)> run;
  std::int64_t n = 0;  // units per process per run (trips, messages, acquisitions, lines)
  Series value, p99, rss_kib, extra, waits, handovers, revocations;
  std::vector<double> ratio;        // mproc's reference row vs this one, per round (>1: mproc faster)
  std::vector<double> batch_ratio;  // mproc's batched row vs this one, per round
  std::string note;
};

struct WorkloadResult {
  const WorkloadInfo* info;
  std::vector<Row> rows;
};

const Row* reference_row(const WorkloadResult& w) {
  for (const Row& r : w.rows) {
    if (r.reference && !r.value.values.empty()) return &r;
  }
  return nullptr;
}

/// mproc's batched row (put_many / get_many), where the workload has one and it was measured.
const Row* batch_row(const WorkloadResult& w) {
  for (const Row& r : w.rows) {
    if (r.batch_reference && !r.value.values.empty()) return &r;
  }
  return nullptr;
}

bool has_batch_row(const WorkloadResult& w) {
  return std::any_of(w.rows.begin(), w.rows.end(), [](const Row& r) { return r.batch_reference; });
}

/// How many times better `ref` is than `other` (both in the workload's unit).
double better_ratio(const WorkloadInfo& info, double ref, double other) {
  return info.lower_is_better ? other / ref : ref / other;
}

std::int64_t calibrate(const Config& cfg, Row& row, std::int64_t n0, std::int64_t n_max) {
  std::int64_t n = n0;
  for (;;) {
    const Sample s = row.run(n);  // a warm-up too, and verified like every run
    const double secs = std::max(s.seconds, 1e-6);
    if (secs >= cfg.seconds / 4 || n >= n_max) {
      const double scaled = static_cast<double>(n) * cfg.seconds / secs;
      return std::clamp(static_cast<std::int64_t>(scaled), std::min(n0, n), n_max);
    }
    const double grow = std::clamp(cfg.seconds / secs, 2.0, 100.0);
    n = std::min(n_max, static_cast<std::int64_t>(static_cast<double>(n) * grow));
  }
}

/// Calibrates every available row, then runs `rounds` rounds of all of them in turn.
void measure(const Config& cfg, WorkloadResult& w, std::int64_t n_quick, std::int64_t n_pilot,
             std::int64_t n_max) {
  std::erase_if(w.rows, [&](const Row& r) { return r.name.find(cfg.contender) == std::string::npos; });
  if (w.rows.empty()) return;
  std::fprintf(stderr, "mproc_compare: %s ...\n", w.info->title.c_str());
  for (Row& r : w.rows) {
    if (!r.run || !r.status.empty()) continue;
    r.n = cfg.quick ? n_quick : calibrate(cfg, r, n_pilot, n_max);
  }
  for (int round = 0; round < cfg.rounds; ++round) {
    for (Row& r : w.rows) {
      if (!r.run || !r.status.empty()) continue;
      const Sample s = r.run(r.n);
      r.value.values.push_back(s.value);
      r.p99.values.push_back(s.p99);
      r.rss_kib.values.push_back(s.rss_kib);
      r.extra.values.push_back(s.extra);
      r.waits.values.push_back(s.waits);
      r.handovers.values.push_back(s.handovers);
      r.revocations.values.push_back(s.revocations);
    }
  }
  // Within each round, for each of mproc's two rows.
  auto per_round = [&](const Row* ref, std::vector<double> Row::*ratio) {
    if (ref == nullptr) return;
    for (Row& r : w.rows) {
      if (r.python || r.value.values.empty()) continue;
      for (std::size_t i = 0; i < r.value.values.size(); ++i) {
        (r.*ratio).push_back(better_ratio(*w.info, ref->value.values[i], r.value.values[i]));
      }
    }
  };
  per_round(reference_row(w), &Row::ratio);
  per_round(batch_row(w), &Row::batch_ratio);
}

#if MPROC_HAVE_BOOST
constexpr bool kHaveBoost = true;
#else
constexpr bool kHaveBoost = false;
#endif
const char* const kNoBoost = "not built (no Boost headers at configure time)";

/// A row whose run is `fn`, or a "not built" row when the contender was compiled out.
template <class Fn>
Row make_row(std::string name, std::string label, Fn fn, bool built = true) {
  Row r;
  r.name = std::move(name);
  r.label = std::move(label);
  if (built) {
    r.run = std::move(fn);
  } else {
    r.status = kNoBoost;
  }
  return r;
}

#if MPROC_HAVE_BOOST
template <class M>
using BoostChan = BoostChannel<M>;
using BoostMutex = BoostLock;
#else
template <class M>
using BoostChan = PipeChannel<M>;  // never run: the row says "not built"
using BoostMutex = SpinLock;
#endif

std::string mq_note(std::size_t size) {
  return "depth " + std::to_string(mq_depth_for(size)) + " (msg_max " + std::to_string(mq_msg_max()) + ")";
}

WorkloadResult make_round_trip(Arena& a) {
  WorkloadResult w{&workloads()[0], {}};
  auto add = [&](std::string name, std::string label, auto tag, bool built = true) {
    using Chan = typename decltype(tag)::type;
    w.rows.push_back(make_row(
        name, std::move(label),
        [&a, name](std::int64_t n) { return round_trip<Chan>(a, "round trip (" + name + ")", n); }, built));
  };
  add("mproc::Queue x2", "mproc", std::type_identity<MprocChannel<std::uint64_t>>{});
  w.rows.back().reference = w.rows.back().mproc = true;
  add("pipe(2) x2", "pipe", std::type_identity<PipeChannel<std::uint64_t>>{});
  add("socketpair SEQPACKET x2", "socketpair", std::type_identity<SocketChannel<std::uint64_t>>{});
  add("POSIX mq x2", "POSIX mq", std::type_identity<MqChannel<std::uint64_t>>{});
  w.rows.back().note = mq_note(8);
  add("Boost message_queue x2", "Boost mq", std::type_identity<BoostChan<std::uint64_t>>{}, kHaveBoost);
  add("raw SPSC ring x2 (spinning)", "raw ring", std::type_identity<RawSpscRing<std::uint64_t>>{});
  return w;
}

/// 1 -> 1 (pinned, the raw ring is the SPSC one) or k -> k (not pinned, the MPMC one).
template <class M>
WorkloadResult make_stream(Arena& a, const WorkloadInfo& info, int k) {
  WorkloadResult w{&info, {}};
  const bool pin = k == 1 && !g_unpinned;
  auto add = [&](std::string name, std::string label, auto tag, bool built = true) {
    using Chan = typename decltype(tag)::type;
    const std::string run_name = info.title + " (" + name + ")";
    w.rows.push_back(make_row(
        name, std::move(label),
        [&a, run_name, k, pin](std::int64_t n) { return stream<Chan, M>(a, run_name, k, k, n, pin); },
        built));
  };
  add("mproc::Queue", "mproc", std::type_identity<MprocChannel<M>>{});
  w.rows.back().reference = w.rows.back().mproc = true;
  add("mproc::Queue, batches of 64", "mproc x64", std::type_identity<BatchedMprocChannel<M>>{});
  w.rows.back().batch_reference = w.rows.back().mproc = true;
  add("pipe(2)", "pipe", std::type_identity<PipeChannel<M>>{});
  if constexpr (sizeof(M) < 4096) {  // 4 KiB messages: the pipe already writes one at a time
    static_assert(BatchedPipeChannel<M>::kBatch == 64);
    add("pipe(2), 64 messages per write", "pipe x64", std::type_identity<BatchedPipeChannel<M>>{});
  }
  add("socketpair SEQPACKET", "socketpair", std::type_identity<SocketChannel<M>>{});
  add("POSIX mq", "POSIX mq", std::type_identity<MqChannel<M>>{});
  w.rows.back().note = mq_note(sizeof(M));
  add("Boost message_queue", "Boost mq", std::type_identity<BoostChan<M>>{}, kHaveBoost);
  if (k == 1) {
    add("raw SPSC ring (spinning)", "raw ring", std::type_identity<RawSpscRing<M>>{});
  } else {
    add("raw MPMC ring (Vyukov, spinning)", "raw ring", std::type_identity<RawMpmcRing<M>>{});
  }
  return w;
}

/// rtpipe: the 8-byte round trip through a duplex mproc::Pipe and pairs of queues, at their
/// default ring size and at 4 KiB, next to a pair of pipe(2)s.
WorkloadResult make_round_trip_sizes(Arena& a, const WorkloadInfo& info) {
  WorkloadResult w{&info, {}};
  auto add = [&](std::string name, std::string label, auto tag) {
    using Link = typename decltype(tag)::type;
    w.rows.push_back(make_row(name, std::move(label), [&a, name](std::int64_t n) {
      return round_trip_on<Link>(a, "round trip (" + name + ")", n);
    }));
  };
  constexpr std::size_t k4K = 4096;
  add("mproc::Pipe (default, 1 MiB)", "mproc Pipe 1M", std::type_identity<MprocPipeLink<>>{});
  w.rows.back().reference = w.rows.back().mproc = true;
  add("mproc::Pipe, 4 KiB ring", "mproc Pipe 4K", std::type_identity<MprocPipeLink<k4K>>{});
  w.rows.back().mproc = true;
  add("mproc::Queue x2, 4 KiB", "mproc Queue 4K",
      std::type_identity<ChannelPairLink<MprocChannel<std::uint64_t, k4K>>>{});
  w.rows.back().mproc = true;
  add("mproc::Queue x2 (default, 1 MiB)", "mproc Queue 1M",
      std::type_identity<ChannelPairLink<MprocChannel<std::uint64_t>>>{});
  w.rows.back().mproc = true;
  add("pipe(2) x2", "pipe", std::type_identity<ChannelPairLink<PipeChannel<std::uint64_t>>>{});
  return w;
}

/// mpmc2small: 2 -> 2 64-byte messages through queues that hold about 64 messages.
WorkloadResult make_small_mpmc(Arena& a, const WorkloadInfo& info) {
  using M = Msg64;
  WorkloadResult w{&info, {}};
  auto add = [&](std::string name, std::string label, auto tag) {
    using Chan = typename decltype(tag)::type;
    const std::string run_name = info.title + " (" + name + ")";
    w.rows.push_back(make_row(name, std::move(label), [&a, run_name](std::int64_t n) {
      return stream<Chan, M>(a, run_name, 2, 2, n, false);
    }));
  };
  // A 64-byte message is a 72-byte record (8-byte header): 64 of them need 4608 bytes, which
  // the queue rounds up to 8 KiB (113 records); 4 KiB holds 56.
  add("mproc::Queue (default, 1 MiB)", "mproc 1M", std::type_identity<MprocChannel<M>>{});
  w.rows.back().reference = w.rows.back().mproc = true;
  add("mproc::Queue, 4 KiB ring (56 msgs)", "mproc 4K", std::type_identity<MprocChannel<M, 4096>>{});
  w.rows.back().mproc = true;
  add("mproc::Queue, 8 KiB ring (113 msgs)", "mproc 8K", std::type_identity<MprocChannel<M, 8192>>{});
  w.rows.back().mproc = true;
  add("mproc::Queue, 1 MiB, max_messages 64", "mproc max64",
      std::type_identity<MprocChannel<M, std::size_t{1} << 20, 64>>{});
  w.rows.back().mproc = true;
  add("raw MPMC ring, 64 slots (Vyukov)", "raw ring 64", std::type_identity<RawMpmcRing<M, 64>>{});
  add("raw MPMC ring, 1 MiB (Vyukov)", "raw ring 1M", std::type_identity<RawMpmcRing<M>>{});
  return w;
}

WorkloadResult make_lock(Arena& a, const WorkloadInfo& info, int procs) {
  WorkloadResult w{&info, {}};
  const bool pin = procs == 2;
  const std::string t = info.title;
  w.rows.push_back(make_row("mproc::Lock", "mproc", [&a, t, procs, pin](std::int64_t n) {
    return lock_handoff<MprocLock>(a, t + " (mproc::Lock)", procs, n, pin);
  }));
  w.rows.back().reference = w.rows.back().mproc = true;
  w.rows.push_back(make_row("robust pthread_mutex", "robust pthread", [&a, t, procs, pin](std::int64_t n) {
    return lock_handoff<PthreadLock>(a, t + " (robust pthread)", procs, n, pin, true);
  }));
  w.rows.push_back(make_row(
      "Boost interprocess_mutex", "Boost mutex",
      [&a, t, procs, pin](std::int64_t n) {
        return lock_handoff<BoostMutex>(a, t + " (Boost mutex)", procs, n, pin);
      },
      kHaveBoost));
  w.rows.push_back(make_row("spinlock (raw, TTAS)", "spinlock", [&a, t, procs, pin](std::int64_t n) {
    return lock_handoff<SpinLock>(a, t + " (spinlock)", procs, n, pin);
  }));
  return w;
}

WorkloadResult make_seed(Arena& a, const TempDir& dir) {
  WorkloadResult w{&workloads()[7], {}};
  const std::string path = dir.file("seed.txt");
  w.rows.push_back(make_row("mproc::Queue -> 1 writer", "mproc Queue", [&a, path](std::int64_t n) {
    return seed_queue(a, "seed (mproc::Queue)", path, n);
  }));
  w.rows.back().reference = w.rows.back().mproc = true;
  w.rows.push_back(make_row("mproc::Lock, each appends", "mproc Lock", [&a, path](std::int64_t n) {
    return seed_locked<MprocLock>(a, "seed (mproc::Lock)", path, n);
  }));
  w.rows.back().mproc = true;
  w.rows.push_back(make_row("robust pthread_mutex, each appends", "pthread", [&a, path](std::int64_t n) {
    return seed_locked<PthreadLock>(a, "seed (robust pthread)", path, n, true);
  }));
  w.rows.push_back(make_row("pipe(2) -> 1 writer", "pipe",
                            [&a, path](std::int64_t n) { return seed_pipe(a, "seed (pipe)", path, n); }));
  return w;
}

// ---- Python ----------------------------------------------------------------------------------

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string python_command() {
  const char* env = std::getenv("MPROC_PYTHON");
  return env != nullptr && *env != 0 ? env : "python3";
}

/// Runs bench/compare_python.py and adds its rows. Returns why it did not run, or "".
/// A Python run that fails (lost data, a crashed child) fails the whole program.
std::string add_python_rows(const Config& cfg, std::vector<WorkloadResult>& results) {
  const std::string py = python_command();
  const std::string probe = shell_quote(py) + " -c 'import multiprocessing, resource' >/dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) return py + " with multiprocessing not found";
  std::string only;
  for (const WorkloadResult& w : results) only += (only.empty() ? "" : ",") + w.info->id;
  const std::string cmd =
      shell_quote(py) + " " + shell_quote(std::string(MPROC_SOURCE_DIR) + "/bench/compare_python.py") +
      " --rounds " + std::to_string(cfg.rounds) + " --seconds " + std::to_string(cfg.seconds) +
      " --writers " + std::to_string(kSeedWriters) + " --only " + only;
  std::fprintf(stderr, "mproc_compare: Python's multiprocessing ...\n");
  std::fflush(nullptr);
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) fail_errno("popen " + cmd);
  char buf[1024];
  std::vector<std::string> lines;
  while (std::fgets(buf, sizeof buf, p) != nullptr) lines.emplace_back(buf);
  const int status = ::pclose(p);
  if (status != 0) {
    fail("the Python benchmark failed (" +
         (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                            : "wait status " + std::to_string(status)) +
         ", its message is above): " + cmd);
  }
  int added = 0;
  for (const std::string& line : lines) {
    // RESULT <workload> <label> <median> <p99|nan> <rss_kib> <extra|nan> <n> <name...>
    std::istringstream in(line);
    std::string tag, id, label, f[4];
    std::int64_t n = 0;
    if (!(in >> tag) || tag != "RESULT") continue;
    if (!(in >> id >> label >> f[0] >> f[1] >> f[2] >> f[3] >> n)) fail("bad Python line: " + line);
    // strtod, not operator>>: the figures may be "nan", which streams do not read.
    const double median = std::strtod(f[0].c_str(), nullptr);
    const double p99 = std::strtod(f[1].c_str(), nullptr);
    const double rss = std::strtod(f[2].c_str(), nullptr);
    const double extra = std::strtod(f[3].c_str(), nullptr);
    std::string name;
    std::getline(in, name);
    name.erase(0, name.find_first_not_of(' '));
    name.erase(name.find_last_not_of("\r\n ") + 1);
    std::replace(label.begin(), label.end(), '_', ' ');
    for (WorkloadResult& w : results) {
      if (w.info->id != id) continue;
      Row r;
      r.name = name;
      r.label = label;
      r.python = true;
      r.n = n;
      r.value.values = {median};
      r.p99.values = {p99};
      r.rss_kib.values = {rss};
      r.extra.values = {extra};
      r.note = "ratio of medians";
      if (const Row* ref = reference_row(w)) {
        r.ratio = {better_ratio(*w.info, ref->value.med(), median)};
      }
      if (const Row* ref = batch_row(w)) {
        r.batch_ratio = {better_ratio(*w.info, ref->value.med(), median)};
      }
      w.rows.push_back(std::move(r));
      ++added;
    }
  }
  if (added == 0) fail("the Python benchmark printed no results: " + cmd);
  return "";
}

// ---- output ----------------------------------------------------------------------------------

std::string fmt(double v, int sig = 3) {
  if (std::isnan(v)) return "-";
  char b[32];
  const double a = std::fabs(v);
  if (a >= 1000) {
    std::snprintf(b, sizeof b, "%.0f", v);
  } else if (a >= 100) {
    std::snprintf(b, sizeof b, "%.*f", std::max(0, sig - 3), v);
  } else if (a >= 10) {
    std::snprintf(b, sizeof b, "%.*f", std::max(0, sig - 2), v);
  } else if (a >= 1) {
    std::snprintf(b, sizeof b, "%.*f", std::max(0, sig - 1), v);
  } else {
    std::snprintf(b, sizeof b, "%.*g", sig, v);
  }
  return b;
}

std::string ratio_text(const Row& r) {
  if (r.reference) return "reference";
  if (r.ratio.empty()) return "-";
  return fmt(median(r.ratio), 3) + "x";
}

std::string batch_ratio_text(const Row& r) {
  if (r.batch_reference) return "reference";
  if (r.batch_ratio.empty()) return "-";
  return fmt(median(r.batch_ratio), 3) + "x";
}

std::string notes_of(const WorkloadInfo& info, const Row& r) {
  std::string s = r.status.empty() ? r.note : r.status;
  if (!r.status.empty()) return s;
  if (!r.extra.values.empty() && !std::isnan(r.extra.med())) {
    s = (s.empty() ? "" : s + "; ") + fmt(r.extra.med(), 2) + "% hand-offs";
  }
  if (!r.python && r.ratio.size() > 1) {
    const auto [lo, hi] = std::minmax_element(r.ratio.begin(), r.ratio.end());
    if (!r.reference) s = (s.empty() ? "" : s + "; ") + "ratio " + fmt(*lo) + ".." + fmt(*hi);
  }
  if (!r.python && r.batch_ratio.size() > 1 && !r.batch_reference) {
    const auto [lo, hi] = std::minmax_element(r.batch_ratio.begin(), r.batch_ratio.end());
    s = (s.empty() ? "" : s + "; ") + "batched " + fmt(*lo) + ".." + fmt(*hi);
  }
  if (!r.handovers.values.empty() && !std::isnan(r.handovers.med())) {
    s = (s.empty() ? "" : s + "; ") + "per 1000 msgs: hand-overs " + fmt(1000 * r.handovers.med(), 2) +
        ", revocations " + fmt(1000 * r.revocations.med(), 2);
  }
  if ((info.id == "rtpipe" || info.id == "mpmc2small") && !r.waits.values.empty() && !r.python) {
    s = (s.empty() ? "" : s + "; ") + "blocking waits per 1000 " +
        (info.id == "rtpipe" ? "trips " : "msgs ") + fmt(1000 * r.waits.med(), 2);
  }
  return s;
}

struct MachineInfo {
  std::string date, cpu, kernel;
  int cpus;
};

MachineInfo machine_info() {
  MachineInfo m;
  char buf[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %Z", std::localtime(&now));
  m.date = buf;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      m.cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  if (m.cpu.empty()) m.cpu = "unknown CPU";
  utsname u{};
  ::uname(&u);
  m.kernel = std::string(u.sysname) + " " + u.release;
  m.cpus = mproc::cpu_count();
  return m;
}

struct Target {
  std::string what;
  std::string workload;
  std::string contender_label;
  double need;  // ratio (mproc vs it, >1: mproc better) at least
  std::string means;
  bool batched = false;  // the ratio of mproc's batched row, not of its per-message reference
};

const std::vector<Target>& targets() {
  static const std::vector<Target> t{
      {"1->1 64 B throughput >= 1/2 of the raw spinning ring", "tp64", "raw ring", 0.5, "mproc / raw ring"},
      {"8-byte round trip within 2x of the raw ring", "rt8", "raw ring", 0.5, "raw ring time / mproc time"},
      {"2->2 throughput >= 10x Boost's message_queue", "mpmc2", "Boost mq", 10.0, "mproc / Boost"},
      {"Lock hand-off (2 procs) no slower than a robust pthread_mutex", "lock2", "robust pthread", 1.0,
       "mproc::Lock / robust pthread"},
      {"Lock hand-off (4 procs) no slower than a robust pthread_mutex", "lock4", "robust pthread", 1.0,
       "mproc::Lock / robust pthread"},
      // Against a pipe: each message-size target three ways, so that batching on one side only
      // is never mistaken for the fair comparison.
      {"1->1 64 B throughput >= 10x pipe(2) [both per message]", "tp64", "pipe", 10.0, "mproc / pipe"},
      {"1->1 64 B throughput >= 10x pipe(2) [mproc batched, pipe per message]", "tp64", "pipe", 10.0,
       "mproc batches of 64 / pipe", true},
      {"1->1 64 B throughput >= 10x pipe(2) [both batched]", "tp64", "pipe x64", 10.0,
       "mproc batches of 64 / pipe 64 per write", true},
      {"2->2 64 B throughput >= 10x pipe(2) [both per message]", "mpmc2", "pipe", 10.0, "mproc / pipe"},
      {"2->2 64 B throughput >= 10x pipe(2) [mproc batched, pipe per message]", "mpmc2", "pipe", 10.0,
       "mproc batches of 64 / pipe", true},
      {"2->2 64 B throughput >= 10x pipe(2) [both batched]", "mpmc2", "pipe x64", 10.0,
       "mproc batches of 64 / pipe 64 per write", true},
      {"8-byte round trip >= 10x quicker than pipe(2)", "rt8", "pipe", 10.0, "pipe time / mproc time"},
      {"1->1 4 KiB throughput >= 3x pipe(2)", "tp4k", "pipe", 3.0, "mproc / pipe"},
  };
  return t;
}

/// The ring-size workloads (rtpipe, mpmc2small) in the targets section: figures, no target.
/// Ratios are per round (both rows measured in the same round), their median.
std::vector<std::string> figure_lines(const std::vector<WorkloadResult>& results) {
  std::vector<std::string> out;
  for (const WorkloadResult& w : results) {
    if (w.info->id != "rtpipe" && w.info->id != "mpmc2small") continue;
    auto find = [&](const std::string& label) -> const Row* {
      for (const Row& r : w.rows) {
        if (r.label == label && !r.value.values.empty()) return &r;
      }
      return nullptr;
    };
    // How many times better `a` is than `b`, round by round.
    auto vs = [&](const Row* x, const Row* y) {
      if (x == nullptr || y == nullptr || x->value.values.size() != y->value.values.size()) {
        return std::string("-");
      }
      std::vector<double> r;
      for (std::size_t i = 0; i < x->value.values.size(); ++i) {
        r.push_back(better_ratio(*w.info, x->value.values[i], y->value.values[i]));
      }
      return fmt(median(r), 3) + "x";
    };
    auto val = [&](const Row* x) { return x == nullptr ? std::string("-") : fmt(x->value.med()); };
    if (w.info->id == "rtpipe") {
      const Row* p1m = find("mproc Pipe 1M");
      const Row* p4k = find("mproc Pipe 4K");
      const Row* q4k = find("mproc Queue 4K");
      const Row* q1m = find("mproc Queue 1M");
      out.push_back("(figure, no target) 8-byte round trip by ring size, us: Pipe() default " + val(p1m) +
                    ", Pipe 4 KiB " + val(p4k) + " (" + vs(p4k, p1m) + " quicker), Queue x2 4 KiB " +
                    val(q4k) + ", Queue x2 1 MiB " + val(q1m) + " (Queue 4 KiB vs 1 MiB: " + vs(q4k, q1m) +
                    ")");
    } else {
      const Row* d = find("mproc 1M");
      const Row* q4k = find("mproc 4K");
      const Row* q8k = find("mproc 8K");
      const Row* m64 = find("mproc max64");
      const Row* raw64 = find("raw ring 64");
      out.push_back("(figure, no target) 2->2 64 B through queues of ~64 messages, M msg/s: Queue 4 KiB " +
                    val(q4k) + " (" + vs(q4k, raw64) + " the 64-slot raw ring, " + vs(q4k, d) +
                    " the default Queue), Queue 8 KiB " + val(q8k) + " (" + vs(q8k, raw64) + ", " +
                    vs(q8k, d) + "), max_messages 64 " + val(m64) + " (" + vs(m64, raw64) + ", " +
                    vs(m64, d) + "), raw ring 64 slots " + val(raw64) + ", default Queue " + val(d));
    }
  }
  return out;
}

std::vector<std::string> target_lines(const std::vector<WorkloadResult>& results) {
  std::vector<std::string> out;
  for (const Target& t : targets()) {
    const Row* row = nullptr;
    for (const WorkloadResult& w : results) {
      if (w.info->id != t.workload) continue;
      for (const Row& r : w.rows) {
        if (r.label == t.contender_label && !(t.batched ? r.batch_ratio : r.ratio).empty()) {
          row = &r;
        }
      }
    }
    std::string line = t.what + ": ";
    if (row == nullptr) {
      line += "not measured";
    } else {
      const double got = median(t.batched ? row->batch_ratio : row->ratio);
      line += t.means + " = " + fmt(got) + "x (target >= " + fmt(t.need) + "x): ";
      if (got >= t.need) {
        line += "MET";
      } else {
        line += "MISSED, at " + fmt(100.0 * got / t.need, 3) + "% of the target";
      }
    }
    out.push_back(line);
  }
  for (std::string& l : figure_lines(results)) out.push_back(std::move(l));
  return out;
}

/// Contenders that beat mproc's reference row, by workload, and how mproc's batched row (where
/// there is one) compares with each. The batched row itself is mproc, so it is not listed.
std::vector<std::string> slower_lines(const std::vector<WorkloadResult>& results) {
  std::vector<std::string> out;
  for (const WorkloadResult& w : results) {
    for (const Row& r : w.rows) {
      if (r.reference || r.batch_reference || r.ratio.empty()) continue;
      const double x = median(r.ratio);
      if (x < 1.0) {
        out.push_back(w.info->title + ": " + r.name + " is " + fmt(1.0 / x) + "x " +
                      (w.info->lower_is_better ? "quicker" : "faster") + " than " + reference_row(w)->name +
                      (r.batch_ratio.empty()
                           ? ""
                           : " (" + batch_row(w)->name + " vs it: " + batch_ratio_text(r) + ")"));
      }
    }
  }
  return out;
}

std::string rss_text(const Row& r) {
  if (r.rss_kib.values.empty()) return "-";
  return fmt(r.rss_kib.med() / 1024.0, 3) + " MiB";
}

void print_table(const Config& cfg, const MachineInfo& m, const std::vector<WorkloadResult>& results) {
  std::printf("mproc_compare%s%s: %s, %d CPUs, %s, %s\n", cfg.quick ? " --quick" : "",
              g_unpinned ? " --unpinned (1->1 not pinned)" : "", m.cpu.c_str(), m.cpus, m.kernel.c_str(),
              m.date.c_str());
  std::printf(
      "%d rounds; each figure the median of the rounds; \"mproc vs it\": how many times better "
      "mproc's reference row is\n(>1: mproc faster), the median of the per-round ratios "
      "(Python: ratio of the medians); \"batched vs it\": the same for mproc's batched row\n"
      "(put_many / get_many, up to 64 messages per call). RSS: peak per process.\n",
      cfg.rounds);
  for (const WorkloadResult& w : results) {
    std::printf("\n%s  [%s]: %s\n", w.info->title.c_str(), w.info->unit.c_str(), w.info->setup.c_str());
    // The "batched vs it" column only where mproc has a batched row.
    const bool batched = has_batch_row(w);
    auto line = [batched](const std::string& name, const std::string& median, const std::string& p99,
                          const std::string& rss, const std::string& ratio, const std::string& batch_ratio,
                          const std::string& notes) {
      std::printf("  %-36s %10s %9s %10s %11s", name.c_str(), median.c_str(), p99.c_str(), rss.c_str(),
                  ratio.c_str());
      if (batched) std::printf(" %13s", batch_ratio.c_str());
      std::printf("  %s\n", notes.c_str());
    };
    line("contender", "median", "p99", "RSS/proc", "mproc vs it", "batched vs it", "notes");
    for (const Row& r : w.rows) {
      if (!r.status.empty()) {
        line(r.name, "-", "-", "-", "-", "-", r.status);
        continue;
      }
      line(r.name, fmt(r.value.med()), r.p99.values.empty() ? "-" : fmt(r.p99.med()), rss_text(r),
           ratio_text(r), batch_ratio_text(r), notes_of(*w.info, r));
    }
  }
  std::printf("\nTargets (ratios from this run):\n");
  for (const std::string& l : target_lines(results)) std::printf("  %s\n", l.c_str());
  const auto slower = slower_lines(results);
  std::printf("\nWhere mproc is not the fastest:%s\n", slower.empty() ? " nowhere in this run" : "");
  for (const std::string& l : slower) std::printf("  %s\n", l.c_str());
  std::fflush(stdout);
}

void write_markdown(const std::string& path, const Config& cfg, const MachineInfo& m,
                    const std::vector<WorkloadResult>& results) {
  std::ofstream f(path);
  f << "Measured " << m.date << " on " << m.cpu << " (" << m.cpus << " CPUs, " << m.kernel
    << ") by `mproc_compare" << (cfg.quick ? " --quick" : "") << (g_unpinned ? " --unpinned" : "") << "`"
    << (g_unpinned ? " (the 1->1 workloads not pinned)" : "") << ": " << cfg.rounds
    << " rounds, each figure the median of the rounds. *mproc vs it*: how many times better "
       "mproc's reference row is (>1: mproc faster), the median of the per-round ratios "
       "(Python: ratio of the medians). *batched mproc vs it*: the same for mproc's batched row "
       "(put_many / get_many, up to 64 messages per call), where the workload has one.\n\n";
  f << "| workload | contender | median | unit | p99 | peak RSS/proc | mproc vs it | "
       "batched mproc vs it | notes |\n";
  f << "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | --- |\n";
  for (const WorkloadResult& w : results) {
    bool first = true;
    for (const Row& r : w.rows) {
      const std::string unit = w.info->unit == "us" ? "µs" : w.info->unit;
      f << "| " << (first ? w.info->title : "") << " | " << (r.mproc ? "**" + r.name + "**" : r.name)
        << " | ";
      if (!r.status.empty()) {
        f << "- | | - | - | - | - | " << r.status << " |\n";
      } else {
        f << fmt(r.value.med()) << " | " << unit << " | "
          << (r.p99.values.empty() || std::isnan(r.p99.med()) ? "-" : fmt(r.p99.med())) << " | "
          << rss_text(r) << " | " << ratio_text(r) << " | " << batch_ratio_text(r) << " | "
          << notes_of(*w.info, r) << " |\n";
      }
      first = false;
    }
  }
  f << "\nTargets:\n\n";
  for (const std::string& l : target_lines(results)) f << "- " << l << "\n";
  const auto slower = slower_lines(results);
  f << "\nWhere mproc is not the fastest in this run:" << (slower.empty() ? " nowhere." : "") << "\n\n";
  for (const std::string& l : slower) f << "- " << l << "\n";
  if (!f) fail("cannot write " + path);
}

void write_csv(const std::string& path, const std::vector<WorkloadResult>& results) {
  std::ofstream f(path);
  f << "workload,title,contender,status,median,min,max,unit,p99,rss_kib,mproc_vs_it,ratio_min,"
       "ratio_max,units_per_process,rounds,handoff_pct,waits_per_unit,note,batched_mproc_vs_it,"
       "batched_ratio_min,batched_ratio_max,handovers_per_unit,revocations_per_unit\n";
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
  };
  for (const WorkloadResult& w : results) {
    for (const Row& r : w.rows) {
      f << w.info->id << "," << q(w.info->title) << "," << q(r.name) << ","
        << q(r.status.empty() ? "measured" : r.status) << ",";
      if (r.value.values.empty()) {
        f << ",,," << q(w.info->unit) << ",,,,,,,0,,," << q(r.status) << ",,,,,\n";
        continue;
      }
      const bool has_ratio = !r.ratio.empty();
      const auto [rlo, rhi] = has_ratio ? std::minmax_element(r.ratio.begin(), r.ratio.end())
                                        : std::pair{r.ratio.end(), r.ratio.end()};
      auto num = [](double v) { return std::isnan(v) ? std::string() : std::to_string(v); };
      f << num(r.value.med()) << "," << num(r.value.min()) << "," << num(r.value.max()) << ","
        << q(w.info->unit) << "," << num(r.p99.med()) << "," << num(r.rss_kib.med()) << ","
        << (r.reference ? std::string("1")
            : has_ratio ? num(median(r.ratio))
                        : std::string())
        << "," << (has_ratio ? num(*rlo) : "") << "," << (has_ratio ? num(*rhi) : "") << "," << r.n << ","
        << r.value.values.size() << "," << num(r.extra.med()) << ","
        << (r.waits.values.empty() ? std::string() : num(r.waits.med())) << "," << q(r.note);
      // The batched row's columns, as the three above for the reference row.
      const bool has_batch_ratio = !r.batch_ratio.empty();
      const auto [blo, bhi] = has_batch_ratio
                                  ? std::minmax_element(r.batch_ratio.begin(), r.batch_ratio.end())
                                  : std::pair{r.batch_ratio.end(), r.batch_ratio.end()};
      f << ","
        << (r.batch_reference ? std::string("1")
            : has_batch_ratio ? num(median(r.batch_ratio))
                              : std::string())
        << "," << (has_batch_ratio ? num(*blo) : "") << "," << (has_batch_ratio ? num(*bhi) : "");
      // An mproc queue's RingStats per unit of work (the ring-size workloads); empty elsewhere.
      f << "," << (r.handovers.values.empty() ? std::string() : num(r.handovers.med())) << ","
        << (r.revocations.values.empty() ? std::string() : num(r.revocations.med())) << "\n";
    }
  }
  if (!f) fail("cannot write " + path);
}

bool have_gnuplot() {
  return std::system("command -v gnuplot >/dev/null 2>&1") == 0;
}

/// Feeds `script` to gnuplot. Returns false (and says why) when it is missing or fails.
bool run_gnuplot(const std::string& script, const std::string& png) {
  if (!have_gnuplot()) {
    std::fprintf(stderr, "mproc_compare: no plot: gnuplot not found (Debian: apt-get install gnuplot-nox)\n");
    return false;
  }
  std::fflush(nullptr);
  std::FILE* p = ::popen("gnuplot", "w");
  if (p == nullptr) fail_errno("popen gnuplot");
  std::fwrite(script.data(), 1, script.size(), p);
  if (::pclose(p) != 0) {
    std::fprintf(stderr, "mproc_compare: gnuplot failed; no plot\n");
    return false;
  }
  std::fprintf(stderr, "mproc_compare: wrote %s\n", png.c_str());
  return true;
}

std::string gp_quote(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}

std::string terminal_line(int width, int height) {
  // pngcairo draws better; plain png (libgd) is the fallback in builds without cairo. Text is
  // not "enhanced": an underscore in a name is an underscore, not a subscript.
  const std::string size = std::to_string(width) + "," + std::to_string(height);
  return "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo noenhanced "
         "size " +
         size + " font ',10' } else { set terminal png noenhanced size " + size + " }\n";
}

void write_plot(const std::string& png, const MachineInfo& m, const std::vector<WorkloadResult>& results) {
  std::ostringstream gp;
  gp << terminal_line(1800, 1000) << "set output " << gp_quote(png) << "\n";
  gp << "set multiplot layout 2," << (results.size() + 1) / 2 << " title "
     << gp_quote("mproc vs the alternatives, between processes: " + m.cpu + ", " + std::to_string(m.cpus) +
                 " CPUs, " + m.date + " (log scale; blue: mproc, green: raw ceiling, orange: Python)")
     << "\n";
  gp << "set style fill solid 0.85 border -1\nset boxwidth 0.7\nset logscale y\nunset key\n"
        "set grid ytics\nset xtics rotate by 35 right nomirror font ',9'\nset offsets "
        "0.5,0.5,0,0\n";
  int index = 0;
  for (const WorkloadResult& w : results) {
    double lo = INFINITY;
    double hi = 0;
    gp << "$d" << index << " << EOD\n";
    int points = 0;
    for (const Row& r : w.rows) {
      if (r.value.values.empty()) continue;
      const double v = r.value.med();
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      const bool ceiling = r.label.find("raw") != std::string::npos || r.label == "spinlock";
      const char* color = r.mproc ? "0x1f77b4" : r.python ? "0xff7f0e" : ceiling ? "0x2ca02c" : "0x8c8c8c";
      gp << gp_quote(r.label) << " " << v << " " << std::strtol(color, nullptr, 16) << "\n";
      ++points;
    }
    gp << "EOD\n";
    if (points == 0) continue;
    gp << "set title "
       << gp_quote(w.info->title + " (" + w.info->unit + ", " +
                   (w.info->lower_is_better ? "lower" : "higher") + " is better)")
       << "\n";
    gp << "set yrange [" << lo / 3 << ":" << hi * 3 << "]\n";
    gp << "plot $d" << index << " using 0:2:3:xtic(1) with boxes lc rgb variable, $d" << index
       << " using 0:2:($2 >= 1000 ? sprintf('%.0f', $2) : sprintf('%.3g', $2)) with labels "
          "offset 0,0.7 font ',8'\n";
    ++index;
  }
  gp << "unset multiplot\n";
  run_gnuplot(gp.str(), png);
}

// ---- the suite -------------------------------------------------------------------------------

bool wanted(const Config& cfg, const std::string& id) {
  return cfg.only.empty() || cfg.only.count(id) > 0;
}

int run_suite(const Config& cfg) {
  SharedArena arena;
  Arena& a = *arena;
  TempDir dir("mproc_compare");
  const MachineInfo m = machine_info();
  const auto& wl = workloads();
  std::vector<WorkloadResult> results;
  // n_quick, n_pilot, n_max per process and run.
  if (wanted(cfg, "rt8")) {
    results.push_back(make_round_trip(a));
    measure(cfg, results.back(), 1'000, 2'000, 2'000'000);
  }
  if (wanted(cfg, "rtpipe")) {
    results.push_back(make_round_trip_sizes(a, wl[8]));
    measure(cfg, results.back(), 1'000, 2'000, 2'000'000);
  }
  if (wanted(cfg, "tp64")) {
    results.push_back(make_stream<Msg64>(a, wl[1], 1));
    measure(cfg, results.back(), 10'000, 20'000, 50'000'000);
  }
  if (wanted(cfg, "tp4k")) {
    results.push_back(make_stream<Msg4K>(a, wl[2], 1));
    measure(cfg, results.back(), 2'000, 5'000, 5'000'000);
  }
  if (wanted(cfg, "mpmc2")) {
    results.push_back(make_stream<Msg64>(a, wl[3], 2));
    measure(cfg, results.back(), 5'000, 10'000, 20'000'000);
  }
  if (wanted(cfg, "mpmc2small")) {
    results.push_back(make_small_mpmc(a, wl[9]));
    measure(cfg, results.back(), 5'000, 10'000, 20'000'000);
  }
  if (wanted(cfg, "mpmc4")) {
    results.push_back(make_stream<Msg64>(a, wl[4], 4));
    measure(cfg, results.back(), 2'000, 5'000, 10'000'000);
  }
  if (wanted(cfg, "lock2")) {
    results.push_back(make_lock(a, wl[5], 2));
    measure(cfg, results.back(), 10'000, 20'000, 50'000'000);
  }
  if (wanted(cfg, "lock4")) {
    results.push_back(make_lock(a, wl[6], 4));
    measure(cfg, results.back(), 5'000, 10'000, 20'000'000);
  }
  if (wanted(cfg, "seed")) {
    results.push_back(make_seed(a, dir));
    measure(cfg, results.back(), 1'000, 2'000, 500'000);
  }
  if (results.empty()) fail("--only matched no workload");
  if (std::all_of(results.begin(), results.end(), [](const WorkloadResult& w) { return w.rows.empty(); })) {
    fail("--contender " + cfg.contender + " matched no contender");
  }

  std::string python_status;
  if (cfg.quick) {
    python_status = "skipped (--quick)";
  } else if (!cfg.python) {
    python_status = "skipped (--no-python)";
  } else if (!cfg.contender.empty()) {
    python_status = "skipped (--contender)";
  } else {
    python_status = add_python_rows(cfg, results);
  }
  if (!python_status.empty()) {
    for (WorkloadResult& w : results) {
      Row r;
      r.name = "Python multiprocessing";
      r.label = "Python";
      r.python = true;
      r.status = python_status;
      w.rows.push_back(std::move(r));
    }
  }

  print_table(cfg, m, results);
  if (!cfg.out.empty()) {
    std::filesystem::create_directories(cfg.out);
    write_markdown(cfg.out + "/results.md", cfg, m, results);
    write_csv(cfg.out + "/results.csv", results);
    std::fprintf(stderr, "mproc_compare: wrote %s/results.md and results.csv\n", cfg.out.c_str());
    if (cfg.plot && !cfg.quick) write_plot(cfg.out + "/results.png", m, results);
  }
  return 0;
}

// ---- --scale N -------------------------------------------------------------------------------

int run_scale(const Config& cfg) {
  SharedArena arena;
  Arena& a = *arena;
  const MachineInfo m = machine_info();
  struct Line {
    std::string label;
    bool built;
    std::function<Sample(int, std::int64_t)> run;
    std::vector<double> mmsgs;  // median per k
  };
  std::vector<Line> lines;
  auto add = [&](std::string label, bool built, auto tag) {
    using Chan = typename decltype(tag)::type;
    const std::string run_name = "scale (" + label + ")";
    lines.push_back(
        {std::move(label),
         built,
         [&a, run_name](int k, std::int64_t n) { return stream<Chan, Msg64>(a, run_name, k, k, n, false); },
         {}});
  };
  add("mproc::Queue", true, std::type_identity<MprocChannel<Msg64>>{});
  add("mproc::Queue x64", true, std::type_identity<BatchedMprocChannel<Msg64>>{});
  add("pipe(2)", true, std::type_identity<PipeChannel<Msg64>>{});
  add("pipe(2) x64", true, std::type_identity<BatchedPipeChannel<Msg64>>{});
  add("Boost message_queue", kHaveBoost, std::type_identity<BoostChan<Msg64>>{});
  std::printf(
      "mproc_compare --scale %d: k producers -> k consumers on one channel, 64-byte messages, "
      "not pinned; M msg/s, median of %d rounds\n%s, %d CPUs, %s, %s\n\n",
      cfg.scale, cfg.rounds, m.cpu.c_str(), m.cpus, m.kernel.c_str(), m.date.c_str());
  std::printf("  %4s", "k");
  for (const Line& l : lines) std::printf(" %22s", l.label.c_str());
  std::printf("\n");
  for (int k = 1; k <= cfg.scale; ++k) {
    std::fprintf(stderr, "mproc_compare: scale %d -> %d ...\n", k, k);
    std::vector<Row> rows(lines.size());
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (!lines[i].built) continue;
      rows[i].run = [&, i, k](std::int64_t n) { return lines[i].run(k, n); };
      rows[i].n = cfg.quick ? 2'000 : calibrate(cfg, rows[i], 5'000, 20'000'000);
    }
    for (int round = 0; round < cfg.rounds; ++round) {
      for (std::size_t i = 0; i < lines.size(); ++i) {
        if (lines[i].built) rows[i].value.values.push_back(rows[i].run(rows[i].n).value);
      }
    }
    std::printf("  %4d", k);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const double v = lines[i].built ? rows[i].value.med() : NAN;
      lines[i].mmsgs.push_back(v);
      std::printf(" %22s", lines[i].built ? fmt(v).c_str() : "not built");
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  if (!cfg.out.empty()) {
    std::filesystem::create_directories(cfg.out);
    std::ofstream csv(cfg.out + "/scale.csv");
    csv << "k";
    for (const Line& l : lines) csv << ",\"" << l.label << " (M msg/s)\"";
    csv << "\n";
    for (int k = 1; k <= cfg.scale; ++k) {
      csv << k;
      for (const Line& l : lines) {
        const double v = l.mmsgs[static_cast<std::size_t>(k - 1)];
        csv << "," << (std::isnan(v) ? std::string() : std::to_string(v));
      }
      csv << "\n";
    }
    csv.close();  // complete on disk before gnuplot reads it
    if (!csv) fail("cannot write " + cfg.out + "/scale.csv");
    std::fprintf(stderr, "mproc_compare: wrote %s/scale.csv\n", cfg.out.c_str());
    if (cfg.plot && !cfg.quick) {
      std::ostringstream gp;
      gp << terminal_line(1200, 700) << "set output " << gp_quote(cfg.out + "/scale.png") << "\n";
      gp << "set title "
         << gp_quote("k producers -> k consumers, 64-byte messages: " + m.cpu + ", " +
                     std::to_string(m.cpus) + " CPUs, " + m.date)
         << "\nset xlabel 'k (2k processes)'\nset ylabel 'M msg/s (log)'\nset logscale y\n"
            "set grid xtics ytics mytics\nset mytics 10\nset key top left\nset xtics 1\n";
      gp << "set datafile separator ','\nplot ";
      for (std::size_t i = 0; i < lines.size(); ++i) {
        if (!lines[i].built) continue;
        gp << (i == 0 ? "" : ", ") << gp_quote(cfg.out + "/scale.csv") << " skip 1 using 1:" << i + 2
           << " with linespoints lw 2 title " << gp_quote(lines[i].label);
      }
      gp << "\n";
      run_gnuplot(gp.str(), cfg.out + "/scale.png");
    }
  }
  return 0;
}

int usage(const char* argv0) {
  std::fprintf(
      stderr,
      "usage: %s [--quick] [--scale N] [--out DIR] [--rounds R] [--seconds S]\n"
      "          [--only rt8,rtpipe,tp64,tp4k,mpmc2,mpmc2small,mpmc4,lock2,lock4,seed] [--no-python] "
      "[--no-plot]\n          [--contender TEXT] [--unpinned] [--inject-fault]\n",
      argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  bool rounds_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return argv[++i];
    };
    try {
      if (arg == "--quick") {
        cfg.quick = true;
      } else if (arg == "--scale") {
        cfg.scale = std::stoi(value());
        if (cfg.scale < 1 || cfg.scale > kMaxProducers) {
          throw std::invalid_argument("--scale takes 1.." + std::to_string(kMaxProducers));
        }
      } else if (arg == "--out") {
        cfg.out = value();
      } else if (arg == "--rounds") {
        cfg.rounds = std::stoi(value());
        rounds_given = true;
        if (cfg.rounds < 1) throw std::invalid_argument("--rounds must be at least 1");
      } else if (arg == "--seconds") {
        cfg.seconds = std::stod(value());
        if (!(cfg.seconds > 0)) throw std::invalid_argument("--seconds must be positive");
      } else if (arg == "--only") {
        std::stringstream ss(value());
        for (std::string id; std::getline(ss, id, ',');) {
          const auto& w = workloads();
          if (std::none_of(w.begin(), w.end(), [&](const WorkloadInfo& x) { return x.id == id; })) {
            throw std::invalid_argument("unknown workload " + id);
          }
          cfg.only.insert(id);
        }
      } else if (arg == "--contender") {
        cfg.contender = value();
      } else if (arg == "--no-python") {
        cfg.python = false;
      } else if (arg == "--no-plot") {
        cfg.plot = false;
      } else if (arg == "--inject-fault") {
        g_inject_fault = true;
      } else if (arg == "--unpinned") {
        g_unpinned = true;
      } else if (arg == "--help" || arg == "-h") {
        usage(argv[0]);
        return 0;
      } else {
        throw std::invalid_argument("unknown argument " + std::string(arg));
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mproc_compare: %s\n", e.what());
      return usage(argv[0]);
    }
  }
  if (cfg.quick && !rounds_given) cfg.rounds = 3;
  try {
    return cfg.scale > 0 ? run_scale(cfg) : run_suite(cfg);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "mproc_compare: FAILED: %s\n", e.what());
    return 1;
  }
}
