// Queue under fire: producers and consumers are SIGKILLed at random points while messages flow,
// and afterwards every message is accounted for against the contract in queue.hpp ("If a peer
// dies") and the loss table in docs/design/queue.md:
//   - no message is torn (a consumer checks every byte; a torn one is CHILD_CHECK, exit 99);
//   - no message is delivered twice;
//   - every message whose put() returned is delivered, except at most one per consumer killed;
//   - a message whose put() was cut short by a kill is delivered once or not at all;
//   - nothing is delivered that was never put.
// MPROC_STRESS_KILLS sets the number of kills (default 300, about 2 s; a soak run uses
// thousands, about 130 kills a second on two cores, with MPROC_TEST_WATCHDOG_S raised past
// 60 s when it needs to). MPROC_STRESS_SEED replays a run's choice of victims and pauses; the
// verdict never depends on them, only the path taken does.
// The run is measured in work, never in time: it kills until it has made its kills and the
// queue has carried its messages (and the test's own events, such as a hand-over, were seen),
// however slow the machine; the kills wait for the queue to make progress, so that they cannot
// starve it. Only a queue that stops moving for kPatience fails on time: that is a hang.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <span>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "support/payload.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using mproc::Bytes;
using mproc::Process;
using mproc::Queue;
using mproc_test::fill_payload;
using mproc_test::fnv1a;
using mproc_test::kPatience;
using mproc_test::Shared;
using mproc_test::splitmix;
using mproc_test::start_child;

namespace {

constexpr std::uint32_t kProducers = 3;  // producer slots; a run uses some or all of them
constexpr std::size_t kMaxPayload = 2000;
constexpr std::size_t kCapacity = 64 * 1024;    // small: the ring wraps and producers block often
constexpr std::uint64_t kMinReceived = 5000;    // the queue must have been really exercised
constexpr std::uint64_t kReceivedPerKill = 20;  // kills never run ahead of the messages received

// What a producer has done with an id, in the order it happens.
enum : std::uint8_t { kNotAttempted = 0, kPutCalled = 1, kPutReturned = 2 };

struct Tally {
  std::atomic<std::uint32_t> next_seq[kProducers];  // per slot: the first seq never attempted
  std::atomic<std::uint64_t> received_total;        // approximate (a kill may fall before it): pacing
  std::atomic<std::uint64_t> duplicates;
  std::atomic<std::uint32_t> stop;  // producers: return after the current put
};

/// One byte per id in shared memory, zero at first, accessed atomically. Pages are touched
/// only as ids are used, so the id space can be sized generously for a long soak.
class SharedBytes {
 public:
  explicit SharedBytes(std::size_t n) : size_(n) {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    data_ = static_cast<std::uint8_t*>(p);
  }
  ~SharedBytes() { ::munmap(data_, size_); }
  SharedBytes(const SharedBytes&) = delete;
  SharedBytes& operator=(const SharedBytes&) = delete;
  std::atomic_ref<std::uint8_t> operator[](std::size_t i) const {
    return std::atomic_ref<std::uint8_t>(data_[i]);
  }

 private:
  std::uint8_t* data_;
  std::size_t size_;
};

/// What every process of the test shares (inherited through fork).
struct World {
  explicit World(std::uint32_t per_slot)
      : seqs_per_slot(per_slot),
        put_state(std::size_t{kProducers} * per_slot),
        received(std::size_t{kProducers} * per_slot) {}
  std::size_t index(std::uint32_t slot, std::uint32_t seq) const {
    return std::size_t{slot} * seqs_per_slot + seq;
  }

  Queue<Bytes> q{kCapacity};
  std::uint32_t seqs_per_slot;  // ids a producer slot may use
  Shared<Tally> tally;
  SharedBytes put_state;  // per id: kNotAttempted, kPutCalled, kPutReturned
  SharedBytes received;   // per id: deliveries, saturating at 2
};

// ---- messages: a 16-byte header, then a payload that is a function of (slot, seq) -------------

struct Header {
  std::uint32_t slot;
  std::uint32_t seq;
  std::uint32_t size;      // payload bytes
  std::uint32_t checksum;  // over slot, seq, size and the payload
};
static_assert(sizeof(Header) == 16);

// The largest payload of this run: kMaxPayload, or 0 for a run of bare 16-byte headers, whose
// producers and consumers make their calls back to back (set before the children are forked).
std::size_t g_max_payload = kMaxPayload;

// The payload of an id: its length (0..g_max_payload) and its bytes depend on the id alone.
void make_payload(std::uint32_t slot, std::uint32_t seq, Bytes& out) {
  std::uint64_t state = ((std::uint64_t{slot} << 32) | seq) * 0x2545f4914f6cdd1dULL + 1;
  const std::size_t size = static_cast<std::size_t>(splitmix(state) % (g_max_payload + 1));
  fill_payload(state, size, out);
}

std::uint32_t checksum_of(std::uint32_t slot, std::uint32_t seq, std::span<const std::byte> payload) {
  const auto size = static_cast<std::uint32_t>(payload.size());
  std::uint32_t h = 2166136261u;
  h = fnv1a(h, &slot, sizeof slot);
  h = fnv1a(h, &seq, sizeof seq);
  h = fnv1a(h, &size, sizeof size);
  return fnv1a(h, payload.data(), payload.size());
}

void encode(std::uint32_t slot, std::uint32_t seq, Bytes& payload, Bytes& out) {
  make_payload(slot, seq, payload);
  const Header h{slot, seq, static_cast<std::uint32_t>(payload.size()), checksum_of(slot, seq, payload)};
  out.resize(sizeof h + payload.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!payload.empty()) std::memcpy(out.data() + sizeof h, payload.data(), payload.size());
}

// ---- the children -----------------------------------------------------------------------------

// Continues `slot` after the highest seq any earlier incarnation of it attempted. The order of
// the records makes the accounting sound: next_seq before put (a replacement never reuses a
// seq that may be in the ring), kPutCalled before put (nothing unrecorded is ever put),
// kPutReturned right after put returns. Returns by itself only when told to stop, or when the
// slot runs out of ids (the killer then leaves the slot alone).
void producer(World& w, std::uint32_t slot) {
  Tally& t = *w.tally;
  Bytes payload, message;
  payload.reserve(kMaxPayload);
  message.reserve(sizeof(Header) + kMaxPayload);
  for (std::uint32_t seq = t.next_seq[slot].load(); seq < w.seqs_per_slot; ++seq) {
    if (t.stop.load(std::memory_order_relaxed) != 0) return;
    const std::size_t id = w.index(slot, seq);
    encode(slot, seq, payload, message);
    t.next_seq[slot].store(seq + 1);
    w.put_state[id].store(kPutCalled);
    w.q.put(std::span<const std::byte>(message));
    w.put_state[id].store(kPutReturned);
  }
}

// Records the delivery first, so that a kill during the checks cannot make a message look lost
// (a killed consumer's window for losing one stays as narrow as the library's own), then checks
// every byte and the per-producer order.
void consumer(World& w) {
  Tally& t = *w.tally;
  Bytes expected;
  expected.reserve(kMaxPayload);
  std::array<std::int64_t, kProducers> last_seq;  // one producer's messages arrive in order
  last_seq.fill(-1);
  while (std::optional<Bytes> m = w.q.get()) {
    CHILD_CHECK(m->size() >= sizeof(Header));
    Header h;
    std::memcpy(&h, m->data(), sizeof h);
    CHILD_CHECK(h.slot < kProducers);
    CHILD_CHECK(h.seq < t.next_seq[h.slot].load());  // an id nobody attempted: corrupt
    const std::size_t id = w.index(h.slot, h.seq);
    std::uint8_t seen = w.received[id].load();
    while (seen < 2 && !w.received[id].compare_exchange_weak(seen, static_cast<std::uint8_t>(seen + 1))) {}
    if (seen != 0) t.duplicates.fetch_add(1);
    t.received_total.fetch_add(1);

    CHILD_CHECK(m->size() == sizeof(Header) + h.size);
    const std::span<const std::byte> payload(m->data() + sizeof h, h.size);
    CHILD_CHECK(checksum_of(h.slot, h.seq, payload) == h.checksum);
    make_payload(h.slot, h.seq, expected);
    CHILD_CHECK(payload.size() == expected.size());
    CHILD_CHECK(std::memcmp(payload.data(), expected.data(), expected.size()) == 0);
    CHILD_CHECK(static_cast<std::int64_t>(h.seq) > last_seq[h.slot]);
    last_seq[h.slot] = h.seq;
  }
}

// ---- the parent -------------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == '\0') return fallback;
  return std::strtoull(s, nullptr, 10);
}

struct Child {
  Process process;
  bool producer;
  std::uint32_t slot;
  bool finished = false;  // a producer whose slot ran out of ids and that returned
};

const char* role(const Child& c) {
  return c.producer ? "producer" : "consumer";
}

// Ids per producer slot. Two cores move about 1,000 messages per slot per kill (bare headers: ten
// times as many): leave room for several times that.
std::uint32_t ids_per_slot(std::uint64_t kills_wanted) {
  const std::uint64_t per_kill = g_max_payload == 0 ? 32768 : 4096;
  return static_cast<std::uint32_t>(
      std::clamp<std::uint64_t>(kills_wanted * per_kill, std::uint64_t{1} << 22, std::uint64_t{1} << 30));
}

/// The parent's side of a run: the world the children share, the children, and the killer's
/// choices and counts.
struct Fire {
  Fire(std::uint32_t per_slot, std::uint64_t seed, bool (*also_)(const mproc::RingStats&))
      : w(per_slot), rng(seed), also(also_) {}

  Process start_producer(std::uint32_t slot) {
    return start_child([this, slot] { producer(w, slot); });
  }
  Process start_consumer() {
    return start_child([this] { consumer(w); });
  }
  bool ran_out(const Child& c) const {
    return c.producer && c.process.exitcode() == 0 && w.tally->next_seq[c.slot].load() >= w.seqs_per_slot;
  }

  World w;
  std::mt19937_64 rng;
  bool (*also)(const mproc::RingStats&);  // the test's own condition for "exercised", if any
  std::vector<Child> children;
  std::uint64_t producer_kills = 0, consumer_kills = 0;
  bool child_failed = false;
};

// The hang check: when the consumers last received something.
struct Progress {
  std::uint64_t last_received = 0;
  Clock::time_point last_progress = Clock::now();
};

// Whether the killer is done: its kills made and the queue exercised (both roles killed,
// kMinReceived messages, and `also` if given). Ends it too, with a failure, when no producer is
// left or the queue hangs.
bool done_killing(Fire& f, std::uint64_t kills_wanted, Progress& p) {
  const std::uint64_t received_now = f.w.tally->received_total.load();
  const bool exercised = f.producer_kills > 0 && f.consumer_kills > 0 && received_now >= kMinReceived &&
                         (f.also == nullptr || f.also(f.w.q.stats()));
  if (f.producer_kills + f.consumer_kills >= kills_wanted && exercised) return true;
  const bool producing = std::any_of(f.children.begin(), f.children.end(),
                                     [](const Child& c) { return c.producer && !c.finished; });
  if (!producing) {
    ADD_FAILURE() << "every producer slot ran out of ids before the queue was exercised: " << f.producer_kills
                  << " producer kills, " << f.consumer_kills << " consumer kills, " << received_now
                  << " messages received (want >= " << kMinReceived << ")"
                  << (f.also != nullptr ? ", or the test's own condition not met" : "");
    return true;
  }
  if (received_now != p.last_received) {
    p.last_received = received_now;
    p.last_progress = Clock::now();
  } else if (Clock::now() - p.last_progress > kPatience) {
    ADD_FAILURE() << "the queue hangs: no message received in " << kPatience.count() << " s, after "
                  << f.producer_kills << " producer kills, " << f.consumer_kills << " consumer kills and "
                  << received_now << " messages received";
    return true;
  }
  return false;
}

// A child that ended by itself has failed (a CHILD_CHECK, an exception), unless it is a
// producer whose slot ran out of ids. Returns whether one failed.
bool a_child_failed(Fire& f) {
  for (Child& c : f.children) {
    if (c.finished || c.process.is_alive()) continue;
    if (f.ran_out(c)) {
      c.finished = true;
      continue;
    }
    const int code = c.process.exitcode().value_or(-1000);
    ADD_FAILURE() << role(c) << " " << c.slot << " ended by itself with exit code " << code
                  << (code == mproc_test::kChildCheckFailed ? " (a torn, misordered or unknown message)"
                                                            : "");
    f.child_failed = true;
  }
  return f.child_failed;
}

// SIGKILLs a random live child and starts its replacement.
void kill_one(Fire& f) {
  std::vector<Child*> live;
  for (Child& c : f.children) {
    if (!c.finished) live.push_back(&c);
  }
  Child& victim = *live[f.rng() % live.size()];
  victim.process.kill();
  ASSERT_TRUE(victim.process.join(kPatience)) << "a SIGKILLed " << role(victim) << " did not end";
  if (victim.process.exitcode() != -SIGKILL) return;  // it ended first: judged next round
  (victim.producer ? f.producer_kills : f.consumer_kills) += 1;
  victim.process = victim.producer ? f.start_producer(victim.slot) : f.start_consumer();
}

// The killer: a random victim at a random moment, until done_killing. A kill waits until the
// consumers have received kReceivedPerKill messages for every kill so far (a quick one may go
// first once, to catch replacements while they start up), so that on a slow machine the work
// paces the kills instead of starving.
void kill_until_exercised(Fire& f, std::uint64_t kills_wanted) {
  Progress progress;
  bool ran_ahead = false;  // the last kill did not wait for the consumers to catch up
  while (!done_killing(f, kills_wanted, progress)) {
    // Load shaping, not synchronisation: the kill lands wherever the victim happens to be.
    // One pause in four is short, to catch replacements while they start up.
    const bool quick = f.rng() % 4 == 0;
    const std::uint64_t pause_us = quick ? f.rng() % 200 : f.rng() % 8000;
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<long>(pause_us)));

    if (a_child_failed(f)) break;
    // Paced by the work: no kill until the consumers have caught up with the kills so far (a
    // poll of a count, with the hang check as its deadline) — except that a quick one may go
    // first once, to catch the last victim's replacement while it starts up.
    const bool caught_up =
        f.w.tally->received_total.load() >= (f.producer_kills + f.consumer_kills) * kReceivedPerKill;
    if (!caught_up && (!quick || ran_ahead)) continue;
    ran_ahead = !caught_up;
    kill_one(f);
    if (testing::Test::HasFatalFailure()) return;
  }
}

// Stops the run: producers return after their current put, then close, then consumers drain.
void stop_children(Fire& f) {
  f.w.tally->stop.store(1);
  for (Child& c : f.children) {
    if (!c.producer || c.finished) continue;
    ASSERT_TRUE(c.process.join(kPatience))
        << "producer " << c.slot << " (pid " << c.process.pid().value_or(0)
        << ") did not stop: a survivor is blocked in put() although no peer is alive to block it";
    EXPECT_EQ(c.process.exitcode(), 0) << "producer " << c.slot;
  }
  f.w.q.close();
  for (Child& c : f.children) {
    if (c.producer) continue;
    ASSERT_TRUE(c.process.join(kPatience))
        << "consumer " << c.slot << " (pid " << c.process.pid().value_or(0)
        << ") did not drain and end: a survivor is blocked in get() after close()";
    EXPECT_EQ(c.process.exitcode(), 0) << "consumer " << c.slot;
  }
  EXPECT_EQ(f.w.q.qsize(), 0u);
}

// What became of every id attempted.
struct Account {
  std::uint64_t returned = 0, cut_short = 0, cut_short_received = 0, received = 0, missing = 0, phantoms = 0,
                multiple = 0;
  std::optional<std::pair<std::uint32_t, std::uint32_t>> first_missing, first_phantom;
};

// Ids at or past a slot's next_seq were never attempted, and consumers reject them.
Account account_for_ids(const World& w) {
  Account a;
  for (std::uint32_t slot = 0; slot < kProducers; ++slot) {
    const std::uint32_t end = w.tally->next_seq[slot].load();
    for (std::uint32_t seq = 0; seq < end; ++seq) {
      const std::size_t id = w.index(slot, seq);
      const std::uint8_t state = w.put_state[id].load();
      const std::uint8_t got = w.received[id].load();
      a.received += got != 0;
      a.multiple += got > 1;
      if (state == kPutReturned) {
        ++a.returned;
        if (got == 0 && ++a.missing == 1) a.first_missing.emplace(slot, seq);
      } else if (state == kPutCalled) {
        ++a.cut_short;
        a.cut_short_received += got != 0;
      } else if (got != 0 && ++a.phantoms == 1) {
        a.first_phantom.emplace(slot, seq);  // delivered, but its producer died before put()
      }
    }
  }
  return a;
}

void print_report(const Fire& f, const Account& a, const mproc::RingStats& stats, double kill_s,
                  double total_s) {
  int ran_out_of_ids = 0;
  for (const Child& c : f.children) ran_out_of_ids += c.finished;
  std::printf(
      "queue stress: kills: %llu producers, %llu consumers | puts returned %llu, cut short %llu "
      "(%llu of them delivered) | received %llu, missing %llu (allowed %llu), duplicates %llu, "
      "phantoms %llu | abandoned_puts %llu, abandoned_gets %llu | bias grants %llu/%llu, "
      "revocations %llu/%llu, handovers %llu/%llu | %.1f s killing, %.1f s in all%s%s\n",
      static_cast<unsigned long long>(f.producer_kills), static_cast<unsigned long long>(f.consumer_kills),
      static_cast<unsigned long long>(a.returned), static_cast<unsigned long long>(a.cut_short),
      static_cast<unsigned long long>(a.cut_short_received), static_cast<unsigned long long>(a.received),
      static_cast<unsigned long long>(a.missing), static_cast<unsigned long long>(f.consumer_kills),
      static_cast<unsigned long long>(f.w.tally->duplicates.load()),
      static_cast<unsigned long long>(a.phantoms), static_cast<unsigned long long>(stats.abandoned_puts),
      static_cast<unsigned long long>(stats.abandoned_gets),
      static_cast<unsigned long long>(stats.producer_bias_grants),
      static_cast<unsigned long long>(stats.consumer_bias_grants),
      static_cast<unsigned long long>(stats.producer_bias_revocations),
      static_cast<unsigned long long>(stats.consumer_bias_revocations),
      static_cast<unsigned long long>(stats.producer_bias_handovers),
      static_cast<unsigned long long>(stats.consumer_bias_handovers), kill_s, total_s,
      ran_out_of_ids != 0 ? " | a producer slot ran out of ids" : "",
      f.child_failed ? " | a child failed" : "");
  std::fflush(stdout);
}

// The contract (queue.hpp, "If a peer dies"), against the account.
void check_account(const Fire& f, const Account& a, const mproc::RingStats& stats) {
  EXPECT_FALSE(f.child_failed);
  EXPECT_EQ(f.w.tally->duplicates.load(), 0u) << "messages delivered more than once";
  EXPECT_EQ(a.multiple, 0u) << "ids delivered more than once";
  EXPECT_EQ(a.phantoms, 0u) << "delivered although never put; the first: slot "
                            << a.first_phantom.value_or(std::pair{0u, 0u}).first << " seq "
                            << a.first_phantom.value_or(std::pair{0u, 0u}).second;
  EXPECT_LE(a.missing, f.consumer_kills)
      << "returned puts lost beyond one per killed consumer; the first: slot "
      << a.first_missing.value_or(std::pair{0u, 0u}).first << " seq "
      << a.first_missing.value_or(std::pair{0u, 0u}).second;
  EXPECT_GT(f.producer_kills, 0u);
  EXPECT_GT(f.consumer_kills, 0u);
  EXPECT_GE(a.received, kMinReceived);
  // A repair happens only where a process died inside an operation, and nobody died after close().
  EXPECT_LE(stats.abandoned_puts, f.producer_kills);
  EXPECT_LE(stats.abandoned_gets, f.consumer_kills);
}

// `producers` of the kProducers slots, `consumers` consumers, killed at random until the queue
// was exercised (kill_until_exercised); then every id is accounted for.
void run_under_fire(std::uint32_t producers, std::uint32_t consumers, mproc::RingStats& stats,
                    bool (*also)(const mproc::RingStats&) = nullptr) {
  const std::uint64_t kills_wanted = env_or("MPROC_STRESS_KILLS", 300);
  const std::uint64_t seed = env_or("MPROC_STRESS_SEED", std::random_device{}());
  std::printf("queue stress: %llu kills, seed %llu (MPROC_STRESS_KILLS, MPROC_STRESS_SEED)\n",
              static_cast<unsigned long long>(kills_wanted), static_cast<unsigned long long>(seed));
  const auto t0 = Clock::now();
  Fire f(ids_per_slot(kills_wanted), seed, also);
  for (std::uint32_t c = 0; c < consumers; ++c) f.children.push_back({f.start_consumer(), false, c});
  for (std::uint32_t p = 0; p < producers; ++p) f.children.push_back({f.start_producer(p), true, p});

  kill_until_exercised(f, kills_wanted);
  if (testing::Test::HasFatalFailure()) return;
  const double kill_s = std::chrono::duration<double>(Clock::now() - t0).count();
  stop_children(f);
  if (testing::Test::HasFatalFailure()) return;

  const Account a = account_for_ids(f.w);
  stats = f.w.q.stats();
  const double total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  print_report(f, a, stats, kill_s, total_s);
  check_account(f, a, stats);
}

}  // namespace

TEST(QueueStress, random_kills_lose_only_what_the_contract_allows) {
  mproc::RingStats stats{};
  run_under_fire(kProducers, 3, stats);
}

// One producer and one consumer: each side spends most of its time biased to the thread that
// uses it (no lock per message), so most kills land in a put or a get made without the lock, and
// every replacement first takes the side back from a dead owner (queue.md, "Biased sides").
TEST(QueueStress, random_kills_of_biased_sides_lose_only_what_the_contract_allows) {
  mproc::RingStats stats{};
  run_under_fire(1, 1, stats, [](const mproc::RingStats& s) {
    return s.producer_bias_grants > 0 && s.consumer_bias_grants > 0 &&
           s.producer_bias_revocations + s.consumer_bias_revocations > 0;
  });
  EXPECT_GT(stats.producer_bias_grants, 0u) << "the producer side was never biased";
  EXPECT_GT(stats.consumer_bias_grants, 0u) << "the consumer side was never biased";
  EXPECT_GT(stats.producer_bias_revocations + stats.consumer_bias_revocations, 0u)
      << "no replacement ever took a side back from a killed owner";
}

// Two producers and two consumers of bare headers, all streaming: the sides pass between them
// by hand-over (queue.md, "Contention: hand-over instead of revocation"), so kills land on
// owners in a lease, on askers asleep while holding the side's mutex, and between the two.
TEST(QueueStress, random_kills_of_sides_handed_over_lose_only_what_the_contract_allows) {
  mproc::RingStats stats{};
  struct BareHeaders {  // restored however the run ends (a failed ASSERT returns early)
    BareHeaders() { g_max_payload = 0; }
    ~BareHeaders() { g_max_payload = kMaxPayload; }
  } bare;
  run_under_fire(2, 2, stats, [](const mproc::RingStats& s) {
    return s.producer_bias_handovers + s.consumer_bias_handovers > 0;
  });
  EXPECT_GT(stats.producer_bias_handovers + stats.consumer_bias_handovers, 0u)
      << "no side was ever handed over";
}
