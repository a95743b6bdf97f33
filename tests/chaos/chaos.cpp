// mproc_chaos: mproc's promise — a process may die at any instruction and the rest go on —
// measured. A supervisor runs producers, consumers, pipe senders and receivers, lock holders
// and semaphore users as real processes, SIGKILLs random ones at random moments (half of the
// kills aimed at a victim seen inside put, get, send, recv, acquire or while holding a lock),
// starts replacements, and after a bounded time stops everyone, drains, and accounts for every
// message id against the loss rules in the headers:
//   queue.hpp  a message whose put() returned is delivered exactly once, except those taken by a
//              consumer killed inside get(): one for get_into(), at most the out size for
//              get_many(); a producer killed inside put() loses only that message, one killed
//              inside put_many() only messages of that batch (a prefix of it is delivered);
//   pipe.hpp   a message whose send() returned is delivered exactly once, in order; a sender
//              killed inside send() loses only that message; the survivor of a pair sees end of
//              stream (receiver) or EPIPE (sender) instead of blocking; what is still in the
//              pipe when its only receiver dies is undeliverable;
//   lock.hpp   a holder's death is reported to the next acquirer (owner_died) until
//              mark_consistent(); an acquire that reports ok finds the guarded state intact;
//   semaphore.hpp  a count held by a process that dies is lost, nothing more; the count never
//              admits more holders than it has.
// Producers and consumers use both APIs, chosen per operation from their seeded generator: a
// producer puts one message or a put_many() batch of 2-32, a consumer takes one by get_into()
// or up to 2-32 by get_many(); each publishes, beside its phase, how many messages its current
// operation may cover, and the loss allowances are the sums of those over the workers killed
// inside the operation. An id whose put never returned must lie in the batch of a producer
// killed inside put; one of those that comes before a delivered id of its batch was committed,
// so counts against the consumers' allowance (a batch is committed as a prefix).
// It also watches every worker's heartbeat (a survivor that stops making progress is a hang),
// checks at the end that every lock can still be acquired and released, and prints one summary
// line. Exit status: 0 when every check held, 1 on any violation, 2 on a usage error.
// Usage and the long run: tests/chaos/README.md.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/semaphore.hpp"
#include "support/payload.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using mproc::Bytes;
using mproc_test::fill_payload;
using mproc_test::fnv1a;
using mproc_test::splitmix;

namespace {

// ---- sizes --------------------------------------------------------------------------------------

constexpr std::uint32_t kMaxPerRole = 8;
constexpr std::size_t kMaxWorkers = 6 * (kMaxPerRole + 1);  // lockers and semaphore users: one more
constexpr std::size_t kQueueCapacity = 64 * 1024;           // small: the ring wraps and producers block
constexpr std::size_t kPipeCapacity = 16 * 1024;            // small: senders block, so kills land there
constexpr std::size_t kMaxPayload = 3000;
constexpr std::uint32_t kMaxBatch = 32;     // put_many and get_many: 2 to 32 messages
constexpr std::size_t kGuardedWords = 256;  // a lock holder's update takes a while
constexpr std::uint32_t kSemaphoreCount = 2;
constexpr int kWorkerFailed = 3;  // a worker's exit code for a broken contract
// The least a run does, however slow the machine: past --duration it goes on until it has (see
// Supervisor::work_done()). Time never decides a verdict; only a hang is judged by the clock.
constexpr std::uint64_t kMinKills = 20;
constexpr std::uint64_t kMinMessages = 200;  // through the queue, and through the pipes
constexpr std::uint64_t kMinAcquires = 20;   // of the locks, and of the semaphore
constexpr std::uint64_t kMinPlanted = 3;     // --sabotage tear, duplicate, pipe-gap

// ---- what each worker does, and where it is ---------------------------------------------------

enum class Role : std::uint8_t { producer, consumer, sender, receiver, locker, sem_user };
constexpr std::array kRoles = {Role::producer, Role::consumer, Role::sender,
                               Role::receiver, Role::locker,   Role::sem_user};

const char* role_name(Role r) {
  switch (r) {
    case Role::producer: return "producer";
    case Role::consumer: return "consumer";
    case Role::sender: return "sender";
    case Role::receiver: return "receiver";
    case Role::locker: return "lock holder";
    case Role::sem_user: return "semaphore user";
  }
  return "?";
}

// A worker's phase, written by the worker, read by the supervisor. Read after the worker was
// reaped it is exact: the phase the worker was in when it died.
enum Phase : std::uint32_t {
  kStarting,    // forked, not yet in its loop
  kIdle,        // between operations
  kInPut,       // inside Queue::put or put_many (from before "called" until "returned" is recorded)
  kInGet,       // inside Queue::get_into or get_many, or after it returned and before every
                // delivery was recorded
  kProcessing,  // a consumer or receiver checking what it got (delivery already recorded)
  kInSend,      // inside Connection::send_bytes
  kInRecv,      // inside Connection::recv_bytes_into, or before the delivery was recorded
  kInAcquire,   // inside acquire() of a Lock, RLock or Semaphore
  kHolding,     // holding a lock (or a semaphore count) and updating what it guards
  kInRelease,   // inside release()
  kDone,        // returned from its loop
  kPhases
};

const char* phase_name(std::uint32_t p) {
  static constexpr std::array<const char*, kPhases> names = {"starting",   "idle",    "put",  "get",
                                                             "processing", "send",    "recv", "acquire",
                                                             "holding",    "release", "done"};
  return p < kPhases ? names[p] : "?";
}

// ---- shared memory --------------------------------------------------------------------------

void* map_shared(std::size_t bytes) {
  // NORESERVE: the id table is sized for the longest run and touched only as ids are used.
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  return p;
}

/// A T in anonymous shared memory, inherited by every worker forked afterwards.
template <class T>
class SharedObject {
 public:
  SharedObject() : value_(new (map_shared(sizeof(T))) T{}) {}
  ~SharedObject() { ::munmap(value_, sizeof(T)); }
  SharedObject(const SharedObject&) = delete;
  SharedObject& operator=(const SharedObject&) = delete;
  T& operator*() const noexcept { return *value_; }
  T* operator->() const noexcept { return value_; }

 private:
  T* value_;
};

/// One byte per queue message id, accessed atomically:
///   bit 0  its producer called put()      bit 1  that put() returned
///   bits 2-7  how many times consumers received it (+4 per delivery)
class IdTable {
 public:
  static constexpr std::uint8_t kPutCalled = 1, kPutReturned = 2, kOneDelivery = 4;
  explicit IdTable(std::size_t n) : data_(static_cast<std::uint8_t*>(map_shared(n))), size_(n) {}
  ~IdTable() { ::munmap(data_, size_); }
  IdTable(const IdTable&) = delete;
  IdTable& operator=(const IdTable&) = delete;
  std::atomic_ref<std::uint8_t> operator[](std::size_t i) const {
    return std::atomic_ref<std::uint8_t>(data_[i]);
  }

 private:
  std::uint8_t* data_;
  std::size_t size_;
};

struct WorkerBeat {
  std::atomic<std::uint32_t> phase;
  std::atomic<std::uint64_t> beats;  // one per completed operation (or timed-out attempt)
  // Queue workers: how many messages the current operation may cover, stored before its phase.
  // A producer: the ids of its put (1) or put_many (the batch). A consumer: 1 for get_into, the
  // out size for get_many, lowered to the n it returned once it returned. Read after reaping.
  std::atomic<std::uint32_t> covers;
  std::atomic<std::uint32_t> many;  // 1: the current operation is put_many or get_many
};

// How a pipe's end finished, as told by its worker before it returned.
enum : std::uint32_t { kRunning = 0, kStopped = 1, kSawEpipe = 2, kSawEof = 3 };

/// One Pipe pair's accounting, reset by the supervisor before each generation.
struct PipeSlot {
  std::atomic<std::uint64_t> attempted;  // sender: seq + 1 of the message it is sending
  std::atomic<std::uint64_t> returned;   // sender: sends that returned
  std::atomic<std::uint64_t> received;   // receiver: the next seq it expects
  std::atomic<std::uint64_t> delivered;  // receiver: messages it received (of its pair)
  std::atomic<std::uint32_t> sender_end;
  std::atomic<std::uint32_t> receiver_end;
};

/// The state a lock guards. Written only by the lock's holder; volatile so that every step of
/// the update reaches memory in program order, where a kill can interrupt it at any point.
struct Guarded {
  volatile std::uint64_t count;
  volatile std::uint64_t in_progress;           // 1 while an update is under way
  volatile pid_t holder;                        // the holder's pid, 0 when released
  volatile std::uint64_t words[kGuardedWords];  // each a function of count: the checksum
  volatile std::uint64_t acquires;
  volatile std::uint64_t owner_died;     // acquires that reported owner_died
  volatile std::uint64_t repaired_torn;  // ... and found an update cut short
};

std::uint64_t guarded_word(std::uint64_t count, std::size_t i) {
  return (count + 1) * 0x9e3779b97f4a7c15ULL ^ i;
}

bool guarded_consistent(const Guarded& g) {
  if (g.in_progress != 0) return false;
  const std::uint64_t c = g.count;
  for (std::size_t i = 0; i < kGuardedWords; ++i) {
    if (g.words[i] != guarded_word(c, i)) return false;
  }
  return true;
}

/// Everything the processes share besides the mproc objects themselves.
struct Control {
  std::atomic<std::uint32_t> stop;  // workers: return after the current operation
  WorkerBeat workers[kMaxWorkers];

  // Queue.
  std::atomic<std::uint64_t> next_seq[kMaxPerRole];              // per producer slot: first seq not attempted
  std::atomic<std::uint64_t> put_many_calls, put_many_messages;  // batches that returned
  std::atomic<std::uint64_t> get_many_calls, get_many_messages;  // ... and what they carried

  // Pipes.
  PipeSlot pipes[kMaxPerRole];

  // Violations seen by workers (each is also printed, with details, on stderr).
  std::atomic<std::uint64_t> torn;               // a message whose bytes are not what was sent
  std::atomic<std::uint64_t> duplicated;         // a queue message delivered a second time
  std::atomic<std::uint64_t> pipe_duplicated;    // ... a pipe message
  std::atomic<std::uint64_t> misordered;         // one sender's messages out of order, or a gap
  std::atomic<std::uint64_t> lock_torn;          // an ok acquire found the guarded state torn
  std::atomic<std::uint64_t> lock_missed_death;  // an ok acquire found a dead holder's pid
  std::atomic<std::uint64_t> lock_shared;        // two holders at once
  std::atomic<std::uint64_t> sem_overadmitted;
  std::atomic<std::uint64_t> reports;  // how many details were printed (to bound them)

  // Locks: [0] guarded by the Lock, [1] by the RLock.
  Guarded guarded[2];

  // Semaphore: bit i set while semaphore user i holds a count; the supervisor returns the
  // count of a user killed with its bit set.
  std::atomic<std::uint64_t> sem_holders;
  std::atomic<std::uint64_t> sem_acquires;

  // The work done so far, which the supervisor waits for past --duration (see work_done()).
  std::atomic<std::uint64_t> queue_received;  // messages consumers took and recorded
  std::atomic<std::uint64_t> pipe_received;   // messages receivers took in order
  std::atomic<std::uint64_t> planted;         // --sabotage: times the fault was planted (not kill-made)
};

// Prints a violation's details on stderr, at most a screenful per run.
template <class... A>
void report(Control& c, const char* fmt, A... args) {
  if (c.reports.fetch_add(1) >= 40) return;
  std::fprintf(stderr, "mproc_chaos: pid %d: ", static_cast<int>(::getpid()));
  std::fprintf(stderr, fmt, args...);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

// ---- messages: a header, then a payload that is a function of (stream, generation, seq) --------

struct Header {
  std::uint32_t stream;      // queue: the producer slot; pipe: the pair
  std::uint32_t generation;  // pipe: the pair's generation; queue: 0
  std::uint64_t seq;
  std::uint32_t size;      // payload bytes
  std::uint32_t checksum;  // over the fields above and the payload
};
static_assert(sizeof(Header) == 24);

// Mostly small messages (many of them), one in four up to kMaxPayload (wraps, blocking).
void make_payload(const Header& h, Bytes& out) {
  std::uint64_t state =
      (h.seq * 0x2545f4914f6cdd1dULL) ^ (std::uint64_t{h.stream} << 48) ^ (std::uint64_t{h.generation} << 32);
  const std::uint64_t r = splitmix(state);
  const std::size_t size =
      static_cast<std::size_t>(r % 4 == 0 ? (r >> 8) % (kMaxPayload + 1) : (r >> 8) % 64);
  fill_payload(state, size, out);
}

std::uint32_t checksum_of(const Header& h, std::span<const std::byte> payload) {
  std::uint32_t c = 2166136261u;
  c = fnv1a(c, &h.stream, sizeof h.stream);
  c = fnv1a(c, &h.generation, sizeof h.generation);
  c = fnv1a(c, &h.seq, sizeof h.seq);
  c = fnv1a(c, &h.size, sizeof h.size);
  return fnv1a(c, payload.data(), payload.size());
}

void encode(std::uint32_t stream, std::uint32_t generation, std::uint64_t seq, Bytes& payload, Bytes& out) {
  Header h{stream, generation, seq, 0, 0};
  make_payload(h, payload);
  h.size = static_cast<std::uint32_t>(payload.size());
  h.checksum = checksum_of(h, payload);
  out.resize(sizeof h + payload.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!payload.empty()) std::memcpy(out.data() + sizeof h, payload.data(), payload.size());
}

// The header, if the message is at least that long.
std::optional<Header> header_of(const Bytes& m) {
  if (m.size() < sizeof(Header)) return std::nullopt;
  Header h;
  std::memcpy(&h, m.data(), sizeof h);
  return h;
}

// Whether every byte is what its sender sent.
bool intact(const Header& h, const Bytes& m, Bytes& expected) {
  if (m.size() != sizeof(Header) + h.size) return false;
  const std::span<const std::byte> payload(m.data() + sizeof h, h.size);
  if (checksum_of(h, payload) != h.checksum) return false;
  make_payload(h, expected);
  return expected.size() == payload.size() &&
         std::memcmp(expected.data(), payload.data(), payload.size()) == 0;
}

// ---- the shared world -------------------------------------------------------------------------

// Faults planted in the workers on request, to show that the harness sees each kind of failure
// it claims to see (the CTest tests chaos.detects.*). Never set in a real run.
enum class Sabotage : std::uint8_t { none, lose, duplicate, tear, hide_owner_death, hang, pipe_gap };
constexpr std::array<std::pair<Sabotage, std::string_view>, 6> kSabotages = {{
    {Sabotage::lose, "lose"},                          // a consumer drops every 10th message unrecorded
    {Sabotage::duplicate, "duplicate"},                // ... or records it twice
    {Sabotage::tear, "tear"},                          // ... or flips one of its bytes
    {Sabotage::hide_owner_death, "hide-owner-death"},  // lock holders ignore owner_died
    {Sabotage::hang, "hang"},          // a lock holder stops forever while holding, once in a while
    {Sabotage::pipe_gap, "pipe-gap"},  // a sender counts every 100th message as sent, unsent
}};

struct Config {
  Sabotage sabotage = Sabotage::none;
  double duration_s = 6;
  std::uint64_t seed = 0;
  std::uint32_t per_role = 2;  // producers, consumers, pipe pairs, semaphore users
  double hang_s = 10;
  std::uint32_t calm_every = 0;  // kills between calm checks; 0: 20 to 79, at random
  std::uint64_t ids_per_producer = 0;
};

/// Created by the supervisor before it forks anyone, so every worker shares the same objects.
struct World {
  explicit World(const Config& cfg) : config(cfg), ids(std::size_t{cfg.per_role} * cfg.ids_per_producer) {}
  std::size_t id(std::uint32_t slot, std::uint64_t seq) const {
    return std::size_t{slot} * config.ids_per_producer + seq;
  }

  Config config;
  mproc::JoinableQueue<Bytes> queue{kQueueCapacity};
  mproc::Lock lock;
  mproc::RLock rlock;
  mproc::Semaphore semaphore{kSemaphoreCount};
  SharedObject<Control> control;
  IdTable ids;
};

// ---- the workers (each runs in its own process) ------------------------------------------------

// Continues `slot` after the highest seq any earlier incarnation attempted. Each operation is,
// by a coin from the worker's seeded generator, one put() or a put_many() of 2-32 messages. The
// order of the records makes the accounting sound: next_seq past the whole batch before the put
// (a replacement never reuses a seq that may be in the ring), "called" for every id of it before
// the put (nothing unrecorded is ever put), "returned" for every id after it returned; `covers`
// (the batch's size) is published before the phase says kInPut, and the phase says it from
// before the first "called" until the last "returned" is recorded. So an id put but not recorded
// returned belongs to a producer killed in that phase, with at most `covers` such ids for each
// death — whatever prefix of a batch was committed. Returns when told to stop, or when the slot
// runs out of ids.
void producer(World& w, std::uint32_t slot, std::uint64_t seed, WorkerBeat& me) {
  Control& c = *w.control;
  std::mt19937_64 rng(seed);
  Bytes payload;
  payload.reserve(kMaxPayload);
  std::vector<Bytes> batch(kMaxBatch);
  for (Bytes& m : batch) m.reserve(sizeof(Header) + kMaxPayload);
  const std::uint64_t ids = w.config.ids_per_producer;
  for (std::uint64_t seq = c.next_seq[slot].load(); seq < ids;) {
    if (c.stop.load(std::memory_order_relaxed) != 0) break;
    const bool many = rng() % 2 == 0;
    const std::uint64_t want = many ? 2 + rng() % (kMaxBatch - 1) : 1;
    const auto n = static_cast<std::uint32_t>(std::min(want, ids - seq));
    for (std::uint32_t i = 0; i < n; ++i) encode(slot, 0, seq + i, payload, batch[i]);
    c.next_seq[slot].store(seq + n);
    me.covers.store(n);
    me.many.store(many ? 1 : 0);
    me.phase.store(kInPut);
    for (std::uint32_t i = 0; i < n; ++i) w.ids[w.id(slot, seq + i)].fetch_or(IdTable::kPutCalled);
    if (many) {
      w.queue.put_many(std::span<const Bytes>(batch.data(), n));
    } else {
      w.queue.put(std::span<const std::byte>(batch[0]));
    }
    for (std::uint32_t i = 0; i < n; ++i) w.ids[w.id(slot, seq + i)].fetch_or(IdTable::kPutReturned);
    me.phase.store(kIdle);
    if (many) {
      c.put_many_calls.fetch_add(1, std::memory_order_relaxed);
      c.put_many_messages.fetch_add(n, std::memory_order_relaxed);
    }
    seq += n;
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Each operation is, by a coin from the worker's seeded generator, one get_into() or a
// get_many() into 2-32 messages. `covers` — 1, or the out size — is published before the phase
// says kInGet, and lowered to the n taken once get_many returned. Every delivery of the batch is
// recorded before the phase leaves kInGet, so only a kill in that phase can make a taken message
// look lost, at most `covers` of them; then every byte and each producer's order is checked,
// and the tasks are marked done, one per message (a kill before the last leaves at most `covers`
// unfinished).
void consumer(World& w, std::uint64_t seed, WorkerBeat& me) {
  Control& c = *w.control;
  std::mt19937_64 rng(seed);
  const std::uint32_t producers = w.config.per_role;
  std::vector<Bytes> got(kMaxBatch);
  for (Bytes& m : got) m.reserve(sizeof(Header) + kMaxPayload);
  Bytes expected;
  expected.reserve(kMaxPayload);
  std::array<std::optional<Header>, kMaxBatch> headers{};
  std::array<std::uint8_t, kMaxBatch> before{};  // its delivery count before this one
  std::array<bool, kMaxBatch> known{}, dropped{};
  std::array<std::uint64_t, kMaxPerRole> next{};  // per producer: lowest seq still acceptable
  for (;;) {
    const bool many = rng() % 2 == 0;
    const auto out = static_cast<std::uint32_t>(many ? 2 + rng() % (kMaxBatch - 1) : 1);
    me.covers.store(out);
    me.many.store(many ? 1 : 0);
    me.phase.store(kInGet);
    std::size_t n = 0;
    if (many) {
      n = w.queue.get_many(std::span<Bytes>(got.data(), out));
    } else {
      n = w.queue.get_into(got[0]) ? 1 : 0;
    }
    if (n == 0) break;  // closed and drained
    me.covers.store(static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) {
      Bytes& m = got[i];
      const std::optional<Header> h = headers[i] = header_of(m);
      // Lost messages are told from allowed losses only in sum, and a short sanitizer run can
      // allow several hundred (consumers killed inside a get_many): drop every 10th, not 100th.
      const std::uint64_t every = w.config.sabotage == Sabotage::lose ? 10 : 100;
      const bool sabotaged = w.config.sabotage != Sabotage::none && h && h->seq % every == every - 1;
      dropped[i] = sabotaged && w.config.sabotage == Sabotage::lose;
      if (sabotaged) c.planted.fetch_add(1, std::memory_order_relaxed);
      known[i] = false;
      if (dropped[i]) continue;
      if (sabotaged && w.config.sabotage == Sabotage::tear) m.back() ^= std::byte{1};
      if (sabotaged && w.config.sabotage == Sabotage::duplicate) {
        w.ids[w.id(h->stream, h->seq)].fetch_add(IdTable::kOneDelivery);
      }
      known[i] = h && h->stream < producers && h->generation == 0 && h->seq < c.next_seq[h->stream].load();
      before[i] = known[i] ? w.ids[w.id(h->stream, h->seq)].fetch_add(IdTable::kOneDelivery) : 0;
      if (known[i]) c.queue_received.fetch_add(1, std::memory_order_relaxed);
    }
    me.phase.store(kProcessing);
    if (many) {
      c.get_many_calls.fetch_add(1, std::memory_order_relaxed);
      c.get_many_messages.fetch_add(n, std::memory_order_relaxed);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (dropped[i]) continue;  // --sabotage lose: as if never received
      const Bytes& m = got[i];
      const std::optional<Header>& h = headers[i];
      if (!known[i]) {
        c.torn.fetch_add(1);
        report(c, "queue: a message of %zu bytes that no producer attempted (stream %u, seq %llu)", m.size(),
               h ? h->stream : 0u, h ? static_cast<unsigned long long>(h->seq) : 0ULL);
        continue;
      }
      if ((before[i] >> 2) != 0) {
        c.duplicated.fetch_add(1);
        report(c, "queue: producer %u's message %llu delivered again", h->stream,
               static_cast<unsigned long long>(h->seq));
      }
      if (!intact(*h, m, expected)) {
        c.torn.fetch_add(1);
        report(c, "queue: producer %u's message %llu is torn (%zu bytes)", h->stream,
               static_cast<unsigned long long>(h->seq), m.size());
      }
      if (h->seq < next[h->stream]) {
        c.misordered.fetch_add(1);
        report(c, "queue: producer %u's message %llu arrived after a later one", h->stream,
               static_cast<unsigned long long>(h->seq));
      }
      next[h->stream] = h->seq + 1;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!dropped[i]) w.queue.task_done();
    }
    me.phase.store(kIdle);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Sends seq 0, 1, 2, ... on this generation's pipe until told to stop, or until the receiver is
// gone (EPIPE), which is how the survivor of a killed receiver ends.
void sender(World& w, std::uint32_t pair, std::uint32_t generation, mproc::Connection& out, WorkerBeat& me) {
  Control& c = *w.control;
  PipeSlot& s = c.pipes[pair];
  Bytes payload, message;
  payload.reserve(kMaxPayload);
  message.reserve(sizeof(Header) + kMaxPayload);
  for (std::uint64_t seq = 0;; ++seq) {
    if (c.stop.load(std::memory_order_relaxed) != 0) {
      s.sender_end.store(kStopped);
      break;
    }
    if (w.config.sabotage == Sabotage::pipe_gap && seq % 100 == 99) {
      c.planted.fetch_add(1, std::memory_order_relaxed);
      s.attempted.store(seq + 1);  // counted as sent, never sent
      s.returned.store(seq + 1);
      continue;
    }
    encode(pair, generation, seq, payload, message);
    s.attempted.store(seq + 1);
    me.phase.store(kInSend);
    try {
      out.send_bytes(message);
    } catch (const mproc::Error& e) {
      if (e.code().value() != EPIPE) throw;
      s.sender_end.store(kSawEpipe);
      break;
    }
    me.phase.store(kIdle);
    s.returned.store(seq + 1);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Receives until end of stream, which comes when the sender stopped or was killed. A
// point-to-point pipe is FIFO, so every message must be exactly the next seq: anything else is a
// duplicate or a gap.
void receiver(World& w, std::uint32_t pair, std::uint32_t generation, mproc::Connection& in, WorkerBeat& me) {
  Control& c = *w.control;
  PipeSlot& s = c.pipes[pair];
  Bytes m, expected;
  m.reserve(sizeof(Header) + kMaxPayload);
  expected.reserve(kMaxPayload);
  for (;;) {
    me.phase.store(kInRecv);
    if (!in.recv_bytes_into(m)) {
      s.receiver_end.store(kSawEof);
      break;
    }
    const std::optional<Header> h = header_of(m);
    const std::uint64_t want = s.received.load();
    const bool ours = h && h->stream == pair && h->generation == generation;
    if (ours && h->seq >= want) {
      s.delivered.store(s.delivered.load() + 1);
      s.received.store(h->seq + 1);
      c.pipe_received.fetch_add(1, std::memory_order_relaxed);
    }
    me.phase.store(kProcessing);
    if (!ours) {
      c.torn.fetch_add(1);
      report(c, "pipe %u generation %u: a message of %zu bytes that its sender never sent", pair, generation,
             m.size());
    } else {
      if (!intact(*h, m, expected)) {
        c.torn.fetch_add(1);
        report(c, "pipe %u: message %llu is torn (%zu bytes)", pair, static_cast<unsigned long long>(h->seq),
               m.size());
      }
      if (h->seq < want) {
        c.pipe_duplicated.fetch_add(1);
        report(c, "pipe %u: message %llu delivered again (expected %llu)", pair,
               static_cast<unsigned long long>(h->seq), static_cast<unsigned long long>(want));
      } else if (h->seq > want) {
        c.misordered.fetch_add(1);
        report(c, "pipe %u: messages %llu to %llu skipped", pair, static_cast<unsigned long long>(want),
               static_cast<unsigned long long>(h->seq - 1));
      }
    }
    me.phase.store(kIdle);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Checks the guarded state just after acquiring, and repairs it after an owner's death.
void check_and_repair(Control& c, Guarded& g, mproc::detail::RobustLock& lock, bool owner_died,
                      const char* what) {
  const bool consistent = guarded_consistent(g);
  if (!owner_died) {
    if (g.holder != 0) {
      c.lock_missed_death.fetch_add(1);
      report(c,
             "%s: acquire() said ok, but holder %d never released it (died unreported, or "
             "holds it still)",
             what, static_cast<int>(g.holder));
    }
    if (!consistent) {
      c.lock_torn.fetch_add(1);
      report(c, "%s: acquire() said ok, but the guarded state is torn (count %llu)", what,
             static_cast<unsigned long long>(g.count));
    }
  }
  g.holder = ::getpid();
  if (owner_died) {
    g.owner_died = g.owner_died + 1;
    if (!consistent) {
      // Repair: keep the count the dead holder got to, rewrite its checksum.
      g.repaired_torn = g.repaired_torn + 1;
      g.in_progress = 1;
      for (std::size_t i = 0; i < kGuardedWords; ++i) g.words[i] = guarded_word(g.count, i);
      g.in_progress = 0;
    }
    lock.mark_consistent();
  }
}

// The update in two non-atomic steps: the counter, then its checksum, with a marker in between.
void update(Guarded& g) {
  g.in_progress = 1;
  g.count = g.count + 1;
  for (std::size_t i = 0; i < kGuardedWords; ++i) g.words[i] = guarded_word(g.count, i);
  g.in_progress = 0;
  g.acquires = g.acquires + 1;
}

// Takes the Lock or the RLock (the RLock twice, nested), updates what it guards, releases.
void locker(World& w, std::uint64_t seed, WorkerBeat& me) {
  Control& c = *w.control;
  std::mt19937_64 rng(seed);
  const pid_t self = ::getpid();
  while (c.stop.load(std::memory_order_relaxed) == 0) {
    const bool recursive = rng() % 2 == 1;
    mproc::detail::RobustLock& lock = recursive ? static_cast<mproc::detail::RobustLock&>(w.rlock)
                                                : static_cast<mproc::detail::RobustLock&>(w.lock);
    Guarded& g = c.guarded[recursive ? 1 : 0];
    const char* what = recursive ? "RLock" : "Lock";
    me.phase.store(kInAcquire);
    const bool timed = rng() % 4 == 0;
    const mproc::Acquired got =
        timed ? lock.acquire(std::chrono::microseconds(static_cast<long>(rng() % 20000))) : lock.acquire();
    if (!got) {  // a timed attempt that timed out: fine, try again
      me.phase.store(kIdle);
      me.beats.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    me.phase.store(kHolding);
    if (w.config.sabotage == Sabotage::hang && rng() % 1000 == 0) {
      c.planted.fetch_add(1, std::memory_order_relaxed);
      for (;;) ::pause();  // stuck while holding: everyone else waits on it
    }
    check_and_repair(c, g, lock, got.owner_died() && w.config.sabotage != Sabotage::hide_owner_death, what);
    update(g);
    if (recursive) {
      const mproc::Acquired again = lock.acquire();
      if (again != mproc::Acquired::Status::ok) {
        c.lock_missed_death.fetch_add(1);
        report(c, "%s", "RLock: a nested acquire by the holder did not say ok");
      }
      update(g);
      lock.release();
    }
    if (g.holder != self) {
      c.lock_shared.fetch_add(1);
      report(c, "%s: held by %d and %d at once", what, static_cast<int>(self), static_cast<int>(g.holder));
    }
    g.holder = 0;
    me.phase.store(kInRelease);
    lock.release();
    me.phase.store(kIdle);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// Takes a count (timed: counts lost with killed holders may leave none), marks itself a holder,
// checks that no more processes hold counts than there are, and gives it back.
void sem_user(World& w, std::uint32_t slot, std::uint64_t seed, WorkerBeat& me) {
  Control& c = *w.control;
  std::mt19937_64 rng(seed);
  const std::uint64_t bit = std::uint64_t{1} << slot;
  while (c.stop.load(std::memory_order_relaxed) == 0) {
    me.phase.store(kInAcquire);
    if (w.semaphore.acquire(std::chrono::microseconds(static_cast<long>(1000 + rng() % 20000)))) {
      const std::uint64_t holders = c.sem_holders.fetch_or(bit) | bit;
      me.phase.store(kHolding);
      c.sem_acquires.fetch_add(1, std::memory_order_relaxed);
      if (std::popcount(holders) > static_cast<int>(kSemaphoreCount)) {
        c.sem_overadmitted.fetch_add(1);
        report(c, "Semaphore(%u): %d holders at once", kSemaphoreCount, std::popcount(holders));
      }
      c.sem_holders.fetch_and(~bit);
      me.phase.store(kInRelease);
      w.semaphore.release();
    }
    me.phase.store(kIdle);
    me.beats.fetch_add(1, std::memory_order_relaxed);
  }
  me.phase.store(kDone);
}

// ---- the supervisor ---------------------------------------------------------------------------

// Where the supervisor is, for its own watchdog's message.
volatile std::sig_atomic_t g_stage = 0;
constexpr std::array<const char*, 4> kStages = {"starting", "killing", "stopping", "checking"};
unsigned g_watchdog_s = 0;

extern "C" void on_watchdog(int) {
  char msg[300];
  const int n = std::snprintf(msg, sizeof msg,
                              "mproc_chaos: WATCHDOG: the supervisor did not finish within %u s "
                              "(stuck while %s); hangs>=1 verdict=FAIL\n",
                              g_watchdog_s, kStages[static_cast<std::size_t>(g_stage)]);
  (void)!::write(STDERR_FILENO, msg, static_cast<std::size_t>(n));
  ::_exit(1);  // the workers are daemons: the kernel kills them with us
}

struct Worker {
  Role role;
  std::uint32_t slot;
  std::size_t beat;  // index into Control::workers
  std::optional<mproc::Process> process;
  bool running = false;   // started, and not yet seen to end
  bool killed = false;    // ended by our SIGKILL (for pairs: in this generation)
  bool finished = false;  // a producer whose slot ran out of ids
  std::uint32_t death_phase = kStarting;
  std::uint64_t seen_beats = 0;
  Clock::time_point beat_at;
  std::uint32_t incarnation = 0;
};

struct Pair {
  std::uint32_t generation = 0;
  Worker* sender = nullptr;
  Worker* receiver = nullptr;
  std::optional<Clock::time_point> peer_died_at;  // the first side was killed (or hung)
  mproc::Connection reader, writer;               // the supervisor's copies, closed once both sides started
};

struct Totals {
  std::uint64_t kills = 0;
  std::array<std::uint64_t, kPhases> kills_in{};  // by phase at death
  std::array<std::uint64_t, 6> kills_of{};        // by role
  // Queue loss bounds: the kills, and the sums of what each victim's operation covered.
  std::uint64_t consumer_kills_in_get = 0, consumer_kills_taking = 0, producer_kills_in_put = 0;
  std::uint64_t get_allowance = 0;     // consumers killed in get: messages they may have taken
  std::uint64_t taking_allowance = 0;  // ... in get or processing: tasks they may leave undone
  std::uint64_t put_allowance = 0;     // producers killed in put: ids they may have cut short
  std::uint64_t kills_in_put_many = 0, kills_in_get_many = 0;
  std::uint64_t locker_kills_holding = 0, locker_kills_in_lock = 0;  // owner_died bounds
  std::uint64_t sem_ambiguous_kills = 0;                             // since the last audit
  std::uint64_t sem_returned = 0, sem_lost = 0, sem_audits = 0, sem_overlost = 0;
  std::uint64_t hangs = 0, crashes = 0, spurious_ends = 0, calm_checks = 0;
  // Pipes.
  std::uint64_t pipe_messages = 0, pipe_delivered = 0, pipe_cut_short_lost = 0, pipe_receiver_killed_lost = 0,
                pipe_unexplained = 0, pipe_generations = 0;
  std::uint64_t receiver_kills = 0, sender_kills = 0;
};

class Supervisor {
 public:
  explicit Supervisor(const Config& cfg) : cfg_(cfg), world_(cfg), rng_(cfg.seed) {
    for (Guarded& g : ctl().guarded) {  // consistent from the start: count 0 and its checksum
      for (std::size_t i = 0; i < kGuardedWords; ++i) g.words[i] = guarded_word(0, i);
    }
  }
  int run();

 private:
  Control& ctl() { return *world_.control; }
  void add_workers();
  void start(Worker& w);
  void start_pair(Pair& p);
  void kill(Worker& w);
  bool slay(Worker& w);
  void after_death(Worker& w);
  void on_end(Worker& w);
  void watch();
  void revive();
  void calm_check();
  void settle_pair(Pair& p);
  void stop_all();
  bool wait_end(Worker& w, const char* doing);
  void hang(Worker& w, const char* doing);
  Worker* pick_victim();
  void aim(Worker& w);
  void audit_semaphore();
  int check_and_report(double killing_s);
  bool final_locks();
  bool work_done();
  std::uint64_t lock_acquires() { return ctl().guarded[0].acquires + ctl().guarded[1].acquires; }

  bool planting_owner_death() const {
    return cfg_.sabotage == Sabotage::hide_owner_death && t_.locker_kills_holding == 0;
  }
  Pair* pair_of(const Worker& w) {
    return (w.role == Role::sender || w.role == Role::receiver) ? &pairs_[w.slot] : nullptr;
  }

  Config cfg_;
  World world_;
  std::mt19937_64 rng_;
  std::vector<Worker> workers_;  // never resized after add_workers(): Pair points into it
  std::array<Pair, kMaxPerRole> pairs_;
  Totals t_;
  std::uint64_t acquires_at_plant_ = 0;  // --sabotage hide-owner-death: when a holder died holding
  bool stopping_ = false;
  // Per producer slot, in seq order: the ids of each put or put_many a producer was killed
  // inside (first seq, count), read from its next_seq and `covers` after reaping it.
  struct CutPut {
    std::uint64_t first;
    std::uint64_t count;
  };
  std::array<std::vector<CutPut>, kMaxPerRole> cut_puts_;
};

void Supervisor::add_workers() {
  workers_.reserve(kMaxWorkers);
  for (Role r : kRoles) {
    // One more lock holder and semaphore user than there are slots: they contend and wait.
    const std::uint32_t n = r == Role::locker || r == Role::sem_user ? cfg_.per_role + 1 : cfg_.per_role;
    for (std::uint32_t i = 0; i < n; ++i) {
      Worker w;
      w.role = r;
      w.slot = i;
      w.beat = workers_.size();
      workers_.push_back(std::move(w));
    }
  }
  for (Worker& w : workers_) {
    if (w.role == Role::sender) pairs_[w.slot].sender = &w;
    if (w.role == Role::receiver) pairs_[w.slot].receiver = &w;
  }
}

void Supervisor::start(Worker& w) {
  WorkerBeat& beat = ctl().workers[w.beat];
  beat.phase.store(kStarting);
  beat.beats.store(0);
  beat.covers.store(0);
  beat.many.store(0);
  w.seen_beats = 0;
  w.beat_at = Clock::now();
  w.killed = false;
  w.death_phase = kStarting;
  ++w.incarnation;
  World& world = world_;
  const std::uint32_t slot = w.slot;
  const std::uint64_t seed = cfg_.seed ^ (std::uint64_t{w.incarnation} << 20) ^ (w.beat << 8);
  Pair* pair = pair_of(w);
  const std::uint32_t generation = pair != nullptr ? pair->generation : 0;
  auto body = [&world, &beat, slot, seed, pair, generation, role = w.role] {
    switch (role) {
      case Role::producer: producer(world, slot, seed, beat); break;
      case Role::consumer: consumer(world, seed, beat); break;
      case Role::sender:
        pair->reader.close();  // as in Python: close the end this process does not use
        sender(world, slot, generation, pair->writer, beat);
        break;
      case Role::receiver:
        pair->writer.close();
        receiver(world, slot, generation, pair->reader, beat);
        break;
      case Role::locker: locker(world, seed, beat); break;
      case Role::sem_user: sem_user(world, slot, seed, beat); break;
    }
  };
  w.process.reset();
  w.process.emplace(body);
  w.process->set_name(std::string(role_name(w.role)) + "-" + std::to_string(w.slot));
  w.process->set_daemon(true);  // dies with the supervisor, however the supervisor ends
  w.process->start();
  w.running = true;
}

// A fresh Pipe per generation: a pipe is point-to-point, and its survivor has just seen the
// end of it. Both sides are forked before the supervisor drops its own copies of the ends, so
// that no other worker ever holds one (it would keep the pipe open past a death).
void Supervisor::start_pair(Pair& p) {
  ++p.generation;
  ++t_.pipe_generations;
  PipeSlot& s = ctl().pipes[p.sender->slot];
  s.attempted.store(0);
  s.returned.store(0);
  s.received.store(0);
  s.delivered.store(0);
  s.sender_end.store(kRunning);
  s.receiver_end.store(kRunning);
  p.peer_died_at.reset();
  auto [reader, writer] = mproc::Pipe(false, kPipeCapacity);
  p.reader = std::move(reader);
  p.writer = std::move(writer);
  start(*p.receiver);
  start(*p.sender);
  p.reader.close();
  p.writer.close();
}

// Records how a worker ended (after it was reaped: its phase is final).
void Supervisor::on_end(Worker& w) {
  w.running = false;
  w.death_phase = ctl().workers[w.beat].phase.load();
  const int code = w.process->exitcode().value_or(-1000);
  if (w.killed) return;
  if (code == -SIGKILL) {  // not by us: the OOM killer, say
    std::fprintf(stderr, "mproc_chaos: %s %u (pid %d) was SIGKILLed by someone else\n", role_name(w.role),
                 w.slot, w.process->pid().value_or(0));
    ++t_.crashes;
    w.killed = true;
    return;
  }
  const bool expected_end =
      code == 0 && (stopping_ || w.role == Role::sender || w.role == Role::receiver ||
                    (w.role == Role::producer && ctl().next_seq[w.slot].load() >= cfg_.ids_per_producer));
  if (expected_end) {
    if (w.role == Role::producer && !stopping_) w.finished = true;
    return;
  }
  ++t_.crashes;
  std::fprintf(stderr, "mproc_chaos: %s %u (pid %d) ended by itself with exit code %d in phase %s%s\n",
               role_name(w.role), w.slot, w.process->pid().value_or(0), code, phase_name(w.death_phase),
               code == kWorkerFailed ? "" : " (an uncaught exception or a crash: see above)");
}

void Supervisor::hang(Worker& w, const char* doing) {
  ++t_.hangs;
  const std::uint32_t phase = ctl().workers[w.beat].phase.load();
  std::fprintf(stderr,
               "mproc_chaos: HANG: %s %u (pid %d) made no progress for %.0f s while %s, in "
               "phase %s; killing it\n",
               role_name(w.role), w.slot, w.process->pid().value_or(0), cfg_.hang_s, doing,
               phase_name(phase));
  // Its death is booked like a kill's, so that what it may have taken with it is allowed for:
  // the hang is the failure, not what follows from ending it.
  if (slay(w)) after_death(w);
}

// The supervisor's side of the watchdog: every running worker's heartbeat must move within
// hang_s, and the survivor of a pipe pair must see its peer's death within hang_s.
void Supervisor::watch() {
  const Clock::time_point now = Clock::now();
  const auto patience = std::chrono::duration<double>(cfg_.hang_s);
  for (Worker& w : workers_) {
    if (!w.running) continue;
    if (!w.process->is_alive()) {
      on_end(w);
      continue;
    }
    const std::uint64_t beats = ctl().workers[w.beat].beats.load(std::memory_order_relaxed);
    if (beats != w.seen_beats) {
      w.seen_beats = beats;
      w.beat_at = now;
    } else if (now - w.beat_at > patience) {
      hang(w, "running");
    }
  }
  for (std::uint32_t i = 0; i < cfg_.per_role; ++i) {
    Pair& p = pairs_[i];
    if (!p.peer_died_at || now - *p.peer_died_at <= patience) continue;
    for (Worker* w : {p.sender, p.receiver}) {
      if (w->running) {
        hang(*w, w->role == Role::sender ? "its receiver was dead (no EPIPE)"
                                         : "its sender was dead (no end of stream)");
      }
    }
  }
}

// Replaces every worker that has ended (killed, hung, or crashed, which was reported), and
// starts the next generation of every pipe pair whose both sides have ended.
void Supervisor::revive() {
  for (Worker& w : workers_) {
    if (!w.running && !w.finished && pair_of(w) == nullptr) start(w);
  }
  for (std::uint32_t i = 0; i < cfg_.per_role; ++i) {
    Pair& p = pairs_[i];
    if (!p.sender->running && !p.receiver->running) settle_pair(p);
  }
}

// Kills mask hangs: a worker stuck for good is killed and replaced within a fraction of a
// second anyway. So now and then nobody is killed until every running worker has made progress
// (or ended, as the survivor of a pipe pair does); one that makes none within hang_s is hung.
// This is a poll with a deadline, not a pause: it ends as soon as everyone has moved.
void Supervisor::calm_check() {
  ++t_.calm_checks;
  std::vector<std::pair<Worker*, std::uint64_t>> waiting;
  for (Worker& w : workers_) {
    if (w.running) waiting.emplace_back(&w, ctl().workers[w.beat].beats.load());
  }
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg_.hang_s));
  while (!waiting.empty()) {
    std::erase_if(waiting, [this](const std::pair<Worker*, std::uint64_t>& e) {
      Worker& w = *e.first;
      if (!w.running) return true;
      if (!w.process->is_alive()) {
        on_end(w);
        return true;
      }
      return ctl().workers[w.beat].beats.load() != e.second;
    });
    if (Clock::now() > deadline) {
      for (auto& [w, beats] : waiting) hang(*w, "nobody was being killed");
      break;
    }
    std::this_thread::sleep_for(200us);
  }
}

// Kills a worker and records where it died.
void Supervisor::kill(Worker& w) {
  if (!slay(w)) return;
  ++t_.kills;
  ++t_.kills_in[w.death_phase];
  ++t_.kills_of[static_cast<std::size_t>(w.role)];
  after_death(w);
}

// SIGKILLs a worker and reaps it; true when it died of that signal (not when it had ended by
// itself first, which on_end() judged).
bool Supervisor::slay(Worker& w) {
  w.process->kill();
  if (!w.process->join(std::chrono::duration<double>(cfg_.hang_s))) {
    std::fprintf(stderr, "mproc_chaos: %s %u (pid %d) did not die of SIGKILL within %.0f s\n",
                 role_name(w.role), w.slot, w.process->pid().value_or(0), cfg_.hang_s);
    ++t_.hangs;
    return false;
  }
  w.killed = w.process->exitcode() == -SIGKILL;
  on_end(w);
  return w.killed;
}

// Books what a worker killed in its phase may have cost, by the headers' rules.
void Supervisor::after_death(Worker& w) {
  if (Pair* p = pair_of(w); p != nullptr && !p->peer_died_at) p->peer_died_at = Clock::now();
  // What its queue operation covered (published before the phase, so final like it).
  const std::uint64_t covers = ctl().workers[w.beat].covers.load();
  const bool many = ctl().workers[w.beat].many.load() != 0;
  if (w.role == Role::producer && w.death_phase == kInPut) {
    ++t_.producer_kills_in_put;
    t_.put_allowance += covers;
    t_.kills_in_put_many += many;
    // next_seq was advanced past this operation's ids before `covers` and the phase were stored,
    // and no other process moves it while this slot's producer is dead.
    const std::uint64_t end = ctl().next_seq[w.slot].load();
    cut_puts_[w.slot].push_back({end - std::min(end, covers), covers});
  }
  if (w.role == Role::consumer) {
    if (w.death_phase == kInGet) {
      ++t_.consumer_kills_in_get;
      t_.get_allowance += covers;
      t_.kills_in_get_many += many;
    }
    if (w.death_phase == kInGet || w.death_phase == kProcessing) {
      ++t_.consumer_kills_taking;
      t_.taking_allowance += covers;
    }
  }
  const bool in_lock_op =
      w.death_phase == kInAcquire || w.death_phase == kHolding || w.death_phase == kInRelease;
  if (w.role == Role::locker) {
    if (w.death_phase == kHolding && ++t_.locker_kills_holding == 1) {  // held it for sure
      acquires_at_plant_ = lock_acquires();
    }
    if (in_lock_op) ++t_.locker_kills_in_lock;  // may have held it
  }
  if (w.role == Role::sem_user) {
    // Its bit says it held a count: give the count back, as a handler would. Without the bit,
    // between acquire() and release() the count may or may not have been held (the bit is set
    // just after acquire() returns and cleared just before release()): that count may be lost,
    // as semaphore.hpp says.
    const std::uint64_t bit = std::uint64_t{1} << w.slot;
    if ((ctl().sem_holders.fetch_and(~bit) & bit) != 0) {
      world_.semaphore.release();
      ++t_.sem_returned;
    } else if (in_lock_op) {
      ++t_.sem_ambiguous_kills;
    }
  }
}

// With every semaphore user dead, nobody holds a count: the count must be its initial value,
// less what died with users killed inside acquire() or release() since the last audit (a count
// held for sure was given back by after_death()). Checks that, refills the lost counts and
// restarts the users.
void Supervisor::audit_semaphore() {
  for (Worker& w : workers_) {
    if (w.role == Role::sem_user && w.running) kill(w);
  }
  for (const Worker& w : workers_) {
    if (w.role == Role::sem_user && w.running) return;  // survived SIGKILL: reported already
  }
  ++t_.sem_audits;
  const std::uint32_t value = world_.semaphore.get_value();
  if (value > kSemaphoreCount) {
    ++t_.sem_overlost;
    std::fprintf(stderr, "mproc_chaos: Semaphore: count %u above its initial %u\n", value, kSemaphoreCount);
  } else {
    const std::uint64_t lost = kSemaphoreCount - value;
    if (lost > t_.sem_ambiguous_kills) {
      ++t_.sem_overlost;
      std::fprintf(stderr,
                   "mproc_chaos: Semaphore: %llu counts lost, but only %llu users died inside "
                   "acquire or release\n",
                   static_cast<unsigned long long>(lost),
                   static_cast<unsigned long long>(t_.sem_ambiguous_kills));
    }
    t_.sem_lost += lost;
    if (lost != 0) world_.semaphore.release(static_cast<std::uint32_t>(lost));
  }
  t_.sem_ambiguous_kills = 0;
  if (stopping_) return;
  for (Worker& w : workers_) {
    if (w.role == Role::sem_user) start(w);
  }
}

// Half the kills are aimed: wait (briefly) until the victim is inside the operation of interest.
void Supervisor::aim(Worker& w) {
  std::uint32_t want = kIdle;
  Clock::duration patience = 2ms;
  switch (w.role) {
    case Role::producer: want = kInPut; break;
    case Role::consumer: want = kInGet; break;
    case Role::sender: want = kInSend; break;
    case Role::receiver: want = kInRecv; break;
    case Role::locker:
    case Role::sem_user: want = rng_() % 2 == 0 ? kInAcquire : kHolding; break;
  }
  // --sabotage hide-owner-death (see pick_victim()): holding, with its pid in the guarded state.
  const bool planting = planting_owner_death();
  if (planting) {
    want = kHolding;
    patience = 1s;
  }
  const std::atomic<std::uint32_t>& phase = ctl().workers[w.beat].phase;
  const pid_t pid = w.process->pid().value_or(0);
  auto there = [&] {
    return phase.load(std::memory_order_relaxed) == want &&
           (!planting || ctl().guarded[0].holder == pid || ctl().guarded[1].holder == pid);
  };
  const Clock::time_point give_up = Clock::now() + patience;
  for (std::uint32_t spins = 0; !there(); ++spins) {
    if (spins % 64 == 0 && Clock::now() > give_up) return;
  }
}

Worker* Supervisor::pick_victim() {
  std::vector<Worker*> live;
  for (Worker& w : workers_) {
    if (!w.running) continue;
    // The survivor of a pair is left alone: its test is to notice the death by itself.
    if (const Pair* p = pair_of(w); p != nullptr && p->peer_died_at) continue;
    // --sabotage hide-owner-death shows something only once a holder died holding a lock: make
    // sure of one, so that a short run cannot miss it.
    if (planting_owner_death() && w.role != Role::locker) continue;
    live.push_back(&w);
  }
  if (live.empty()) return nullptr;
  return live[rng_() % live.size()];
}

// Both sides of a generation have ended: account for its messages, then start the next one.
void Supervisor::settle_pair(Pair& p) {
  const PipeSlot& s = ctl().pipes[p.sender->slot];
  // A receiver counts only messages of its pair that are not duplicates, so "received" is at
  // most "attempted" unless something was delivered that was never sent.
  const std::uint64_t attempted = s.attempted.load(), returned = s.returned.load(),
                      received = s.delivered.load();
  const bool receiver_killed = p.receiver->killed, sender_killed = p.sender->killed;
  t_.pipe_messages += attempted;
  t_.pipe_delivered += std::min(received, attempted);
  if (sender_killed) ++t_.sender_kills;
  if (receiver_killed) ++t_.receiver_kills;
  const auto gen = static_cast<unsigned>(p.generation);
  if (received > attempted) {
    ++t_.pipe_unexplained;
    std::fprintf(stderr, "mproc_chaos: pipe %u generation %u: %llu received, only %llu sent\n",
                 p.sender->slot, gen, static_cast<unsigned long long>(received),
                 static_cast<unsigned long long>(attempted));
  }
  if (receiver_killed) {
    // What the receiver had not taken is undeliverable; a send cut short by a kill is lost too.
    t_.pipe_receiver_killed_lost += returned > received ? returned - received : 0;
    t_.pipe_cut_short_lost +=
        attempted > std::max(returned, received) ? attempted - std::max(returned, received) : 0;
  } else {
    if (s.receiver_end.load() != kSawEof) {
      ++t_.spurious_ends;
      std::fprintf(stderr,
                   "mproc_chaos: pipe %u generation %u: the receiver ended without end "
                   "of stream\n",
                   p.sender->slot, gen);
    }
    if (received < returned) {
      t_.pipe_unexplained += returned - received;
      std::fprintf(stderr,
                   "mproc_chaos: pipe %u generation %u: %llu sends returned, only %llu received "
                   "by a receiver that lived (sender %s)\n",
                   p.sender->slot, gen, static_cast<unsigned long long>(returned),
                   static_cast<unsigned long long>(received), sender_killed ? "killed" : "stopped");
    } else if (attempted > received) {
      t_.pipe_cut_short_lost += attempted - received;  // a send that never returned
    }
  }
  if (!sender_killed) {
    const std::uint32_t end = s.sender_end.load();
    if (end == kSawEpipe && !receiver_killed) {
      ++t_.spurious_ends;
      std::fprintf(stderr,
                   "mproc_chaos: pipe %u generation %u: EPIPE although the receiver "
                   "lived\n",
                   p.sender->slot, gen);
    }
    if (end == kStopped && !stopping_) {
      ++t_.spurious_ends;
      std::fprintf(stderr,
                   "mproc_chaos: pipe %u generation %u: the sender stopped before the "
                   "run ended\n",
                   p.sender->slot, gen);
    }
  }
  if (!stopping_) start_pair(p);
}

// Waits for a worker that was told to finish; a hang if it does not.
bool Supervisor::wait_end(Worker& w, const char* doing) {
  if (!w.running) return true;
  if (!w.process->join(std::chrono::duration<double>(cfg_.hang_s))) {
    hang(w, doing);
    return false;
  }
  on_end(w);
  return true;
}

void Supervisor::stop_all() {
  stopping_ = true;
  ctl().stop.store(1);
  for (Worker& w : workers_) {
    if (w.role == Role::locker) wait_end(w, "stopping (it should return after its lock update)");
    if (w.role == Role::sem_user) wait_end(w, "stopping");
  }
  // Senders return and their end closes; receivers drain and see end of stream.
  for (std::uint32_t i = 0; i < cfg_.per_role; ++i) {
    Pair& p = pairs_[i];
    wait_end(*p.sender, "stopping (a sender returns after its current send)");
    wait_end(*p.receiver, "draining its pipe after its sender stopped");
    settle_pair(p);
  }
  for (Worker& w : workers_) {
    if (w.role == Role::producer) wait_end(w, "stopping (a producer returns after its current put)");
  }
  world_.queue.close();
  for (Worker& w : workers_) {
    if (w.role == Role::consumer) wait_end(w, "draining the closed queue");
  }
}

// Every lock must still be usable: acquire (repairing after a death), check, release — here and
// from a fresh process.
bool Supervisor::final_locks() {
  bool ok = true;
  const auto patience = std::chrono::duration<double>(cfg_.hang_s);
  for (int i = 0; i < 2; ++i) {
    mproc::detail::RobustLock& lock = i == 0 ? static_cast<mproc::detail::RobustLock&>(world_.lock)
                                             : static_cast<mproc::detail::RobustLock&>(world_.rlock);
    Guarded& g = ctl().guarded[i];
    const mproc::Acquired got = lock.acquire(patience);
    if (!got) {
      std::fprintf(stderr, "mproc_chaos: the %s cannot be acquired at the end\n", lock.kind_name());
      ++t_.hangs;
      ok = false;
      continue;
    }
    check_and_repair(ctl(), g, lock, got.owner_died(), lock.kind_name());
    update(g);
    g.holder = 0;
    lock.release();
    if (!guarded_consistent(g)) {
      std::fprintf(stderr, "mproc_chaos: the %s's state is torn after repair\n", lock.kind_name());
      ok = false;
    }
  }
  World& world = world_;
  mproc::Process fresh([&world, patience] {
    for (mproc::detail::RobustLock* lock : {static_cast<mproc::detail::RobustLock*>(&world.lock),
                                            static_cast<mproc::detail::RobustLock*>(&world.rlock)}) {
      const mproc::Acquired got = lock->acquire(patience);
      if (got != mproc::Acquired::Status::ok) {
        std::fprintf(stderr, "mproc_chaos: a fresh process's acquire of the %s: %s\n", lock->kind_name(),
                     got ? "owner_died after repair" : "timed out");
        mproc::exit(kWorkerFailed);
      }
      lock->release();
    }
  });
  fresh.set_daemon(true);
  fresh.start();
  if (!fresh.join(patience)) {
    std::fprintf(stderr, "mproc_chaos: a fresh process could not take and release the locks\n");
    ++t_.hangs;
    fresh.kill();
    fresh.join();
    return false;
  }
  return ok && fresh.exitcode() == 0;
}

int Supervisor::run() {
  add_workers();
  g_stage = 0;
  for (Worker& w : workers_) {
    if (w.role != Role::sender && w.role != Role::receiver) start(w);
  }
  for (std::uint32_t i = 0; i < cfg_.per_role; ++i) start_pair(pairs_[i]);

  g_stage = 1;
  std::uint64_t kills_to_calm = cfg_.calm_every != 0 ? cfg_.calm_every : 20;
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point end =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg_.duration_s));
  for (;;) {
    // Past --duration, the run goes on until the work is done, killing only as far as the
    // kills still wanted (a slow machine must not make a short run look unexercised, nor a
    // sabotage look undetected); a hang or a crash meanwhile ends it, failed.
    const bool overtime = Clock::now() >= end;
    if (overtime && (work_done() || t_.hangs + t_.crashes != 0)) break;
    // Load shaping, not synchronisation: the kill lands wherever the victim happens to be. One
    // pause in four is short, to catch replacements while they start up.
    const std::uint64_t pause_us = rng_() % 4 == 0 ? rng_() % 200 : rng_() % 8000;
    std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
    watch();
    revive();
    if (overtime && t_.kills >= kMinKills && !planting_owner_death()) continue;
    Worker* victim = pick_victim();
    if (victim == nullptr) continue;
    if (rng_() % 2 == 0 || planting_owner_death()) aim(*victim);
    kill(*victim);
    // Counts lost inside acquire/release would starve the semaphore users in a long run: now
    // and then, audit and refill.
    if (victim->role == Role::sem_user && t_.sem_ambiguous_kills != 0 && rng_() % 4 == 0) {
      audit_semaphore();
    }
    revive();
    if (--kills_to_calm == 0) {
      calm_check();
      kills_to_calm = cfg_.calm_every != 0 ? cfg_.calm_every : 20 + rng_() % 60;
    }
  }
  const double killing_s = std::chrono::duration<double>(Clock::now() - t0).count();

  g_stage = 2;
  stop_all();
  g_stage = 3;
  return check_and_report(killing_s);
}

// Whether the run did the least it must, in work: kills, messages through the queue and the
// pipes, acquires of the locks and the semaphore; and with --sabotage, enough of the planted
// fault for the checks to be bound to see it: more dropped messages than every allowance for
// loss together (lose), the fault planted kMinPlanted times (tear, duplicate, pipe-gap), a
// holder killed holding and locks acquired since (hide-owner-death), a hang seen (hang: only a
// check that finds the hung worker alive sees it, and a kill may get there first).
bool Supervisor::work_done() {
  Control& c = ctl();
  if (t_.kills < kMinKills || c.queue_received.load() < kMinMessages ||
      c.pipe_received.load() < kMinMessages || lock_acquires() < kMinAcquires ||
      c.sem_acquires.load() < kMinAcquires) {
    return false;
  }
  switch (cfg_.sabotage) {
    case Sabotage::none: return true;
    case Sabotage::lose: return c.planted.load() > t_.get_allowance + t_.put_allowance;
    case Sabotage::duplicate:
    case Sabotage::tear:
    case Sabotage::pipe_gap: return c.planted.load() >= kMinPlanted;
    case Sabotage::hide_owner_death:
      return t_.locker_kills_holding != 0 && lock_acquires() >= acquires_at_plant_ + kMinAcquires;
    case Sabotage::hang: return t_.hangs != 0;
  }
  return true;
}

int Supervisor::check_and_report(double killing_s) {
  Control& c = ctl();
  bool fail = false;
  auto violation = [&fail](bool bad, const char* fmt, auto... args) {
    if (!bad) return;
    fail = true;
    std::fprintf(stderr, "mproc_chaos: VIOLATION: ");
    std::fprintf(stderr, fmt, args...);
    std::fputc('\n', stderr);
  };

  // ---- the queue: every id a producer attempted ------------------------------------------------
  // An id "called" but never "returned" must lie in a put or put_many its producer was killed
  // inside (else: stray). Such a batch was committed as a prefix, and what was committed is
  // delivered or was taken by a killed consumer: so an undelivered id of it that comes before a
  // delivered one (a hole) was committed and counts against the consumers' allowance, with the
  // ids whose put returned; only the undelivered rest of the batch is "cut short".
  std::uint64_t queue_messages = 0, delivered = 0, returned_lost = 0, cut_short_lost = 0, duplicated = 0,
                phantoms = 0, holes = 0, stray = 0, stray_lost = 0;
  for (std::uint32_t slot = 0; slot < cfg_.per_role; ++slot) {
    const std::uint64_t end = c.next_seq[slot].load();
    const std::vector<CutPut>& cuts = cut_puts_[slot];
    std::size_t cut = 0;  // the first of `cuts` that does not end at or before seq
    for (std::uint64_t seq = 0; seq < end; ++seq) {
      const std::uint8_t b = world_.ids[world_.id(slot, seq)].load(std::memory_order_relaxed);
      const unsigned put = b & 3u, got = b >> 2;
      if (put == 0) {  // killed after reserving the seq, before put(): never attempted
        phantoms += got != 0;
        continue;
      }
      ++queue_messages;
      delivered += got != 0;
      duplicated += got > 1 ? got - 1 : 0;
      if (put != 3) {
        while (cut < cuts.size() && cuts[cut].first + cuts[cut].count <= seq) ++cut;
        if (cut == cuts.size() || cuts[cut].first > seq) {
          ++stray;
          stray_lost += got == 0;
          if (stray <= 5) {
            std::fprintf(stderr,
                         "mproc_chaos: queue: producer %u's message %llu: put() called, "
                         "never returned, yet its producer was not killed inside it\n",
                         slot, static_cast<unsigned long long>(seq));
          }
        }
      }
      if (got == 0) (put == 3 ? returned_lost : cut_short_lost) += 1;
    }
    for (const CutPut& k : cuts) {
      std::uint64_t last = k.count;  // the last delivered id of the batch (count: none)
      for (std::uint64_t i = 0; i < k.count; ++i) {
        if ((world_.ids[world_.id(slot, k.first + i)].load() >> 2) != 0) last = i;
      }
      for (std::uint64_t i = 0; last != k.count && i < last; ++i) {
        const std::uint8_t b = world_.ids[world_.id(slot, k.first + i)].load();
        holes += (b & 3u) == IdTable::kPutCalled && (b >> 2) == 0;
      }
    }
  }
  cut_short_lost -= holes;
  const mproc::RingStats stats = world_.queue.stats();
  const std::size_t unfinished = world_.queue.unfinished_tasks();
  // A consumer killed inside get may have taken what its call covered: 1 for get_into, the out
  // size for get_many (the n it returned, once it had returned). A producer killed inside put
  // may have cut short the ids of its put or put_many, "called" but never "returned". The
  // allowances are those sums over the victims.
  const std::uint64_t queue_allowed = t_.get_allowance;
  const std::uint64_t consumer_lost = returned_lost + holes;
  const std::uint64_t queue_unexplained = consumer_lost > queue_allowed ? consumer_lost - queue_allowed : 0;
  const std::uint64_t taken_by_killed = consumer_lost - queue_unexplained;
  // Every cut-short id lies in a batch of a producer killed inside put (else it is stray), so
  // there are at most put_allowance of them; the count is checked too, as a cross-check.
  const std::uint64_t cut_short_unexplained =
      std::max(stray_lost, cut_short_lost > t_.put_allowance ? cut_short_lost - t_.put_allowance : 0);

  violation(queue_unexplained != 0,
            "queue: %llu messages whose put() returned, and %llu of a put_many cut short that were "
            "committed (a later one of the batch was delivered), were never delivered; the %llu "
            "consumers killed inside get() or get_many() could have taken only %llu",
            static_cast<unsigned long long>(returned_lost), static_cast<unsigned long long>(holes),
            static_cast<unsigned long long>(t_.consumer_kills_in_get),
            static_cast<unsigned long long>(queue_allowed));
  violation(stray != 0,
            "queue: %llu messages whose put() was called and never returned, outside the put or "
            "put_many of any producer killed inside it",
            static_cast<unsigned long long>(stray));
  violation(cut_short_lost > t_.put_allowance,
            "queue: %llu messages lost whose put() never returned, but the %llu producers killed "
            "inside put() or put_many() were putting only %llu",
            static_cast<unsigned long long>(cut_short_lost),
            static_cast<unsigned long long>(t_.producer_kills_in_put),
            static_cast<unsigned long long>(t_.put_allowance));
  violation(phantoms != 0, "queue: %llu messages delivered that were never put",
            static_cast<unsigned long long>(phantoms));
  violation(world_.queue.qsize() != 0, "queue: %zu messages left after draining", world_.queue.qsize());
  violation(stats.abandoned_puts > t_.kills_of[0],
            "queue: %llu abandoned puts repaired, but only %llu producers were killed",
            static_cast<unsigned long long>(stats.abandoned_puts),
            static_cast<unsigned long long>(t_.kills_of[0]));
  violation(stats.abandoned_gets > t_.kills_of[1],
            "queue: %llu abandoned gets repaired, but only %llu consumers were killed",
            static_cast<unsigned long long>(stats.abandoned_gets),
            static_cast<unsigned long long>(t_.kills_of[1]));
  // JoinableQueue: a task stays unfinished only where its consumer died between taking it and
  // its task_done() — at most what the victim's get covered; every message taken by a killed
  // consumer is such a task.
  violation(unfinished > t_.taking_allowance || unfinished < taken_by_killed,
            "JoinableQueue: %zu unfinished tasks after draining; expected between %llu (messages "
            "taken by killed consumers) and %llu (what the %llu consumers killed in get or before "
            "task_done could have taken)",
            unfinished, static_cast<unsigned long long>(taken_by_killed),
            static_cast<unsigned long long>(t_.taking_allowance),
            static_cast<unsigned long long>(t_.consumer_kills_taking));

  // ---- pipes, locks, semaphore ------------------------------------------------------------------
  violation(t_.pipe_unexplained != 0, "pipes: %llu messages lost that no rule allows",
            static_cast<unsigned long long>(t_.pipe_unexplained));
  violation(t_.spurious_ends != 0, "pipes: %llu ends reported while the peer lived",
            static_cast<unsigned long long>(t_.spurious_ends));
  const bool locks_usable = final_locks();
  violation(!locks_usable, "%s", "a lock is not usable at the end");
  violation(c.lock_torn.load() != 0, "locks: %llu ok acquires found the guarded state torn",
            static_cast<unsigned long long>(c.lock_torn.load()));
  violation(c.lock_missed_death.load() != 0,
            "locks: %llu acquires were not told that the previous holder died",
            static_cast<unsigned long long>(c.lock_missed_death.load()));
  violation(c.lock_shared.load() != 0, "locks: held by two processes at once %llu times",
            static_cast<unsigned long long>(c.lock_shared.load()));
  // Each owner_died an acquirer recorded follows a death of a holder since the previous one was
  // recorded (the repair marks the lock consistent right after recording it), so there can be
  // no more of them than lock holders killed where they may have held the lock. And a holder
  // killed while certainly holding it must have been reported to somebody.
  const std::uint64_t owner_died = c.guarded[0].owner_died + c.guarded[1].owner_died;
  violation(owner_died > t_.locker_kills_in_lock,
            "locks: %llu acquires reported owner_died, but only %llu holders were killed in or "
            "around a critical section",
            static_cast<unsigned long long>(owner_died),
            static_cast<unsigned long long>(t_.locker_kills_in_lock));
  violation(t_.locker_kills_holding != 0 && owner_died == 0,
            "locks: %llu holders were killed holding a lock, yet no acquire reported owner_died",
            static_cast<unsigned long long>(t_.locker_kills_holding));
  audit_semaphore();  // every user has stopped: the last audit
  violation(t_.sem_overlost != 0, "Semaphore: %llu audits found the count wrong",
            static_cast<unsigned long long>(t_.sem_overlost));
  violation(c.sem_overadmitted.load() != 0, "Semaphore: admitted too many holders %llu times",
            static_cast<unsigned long long>(c.sem_overadmitted.load()));

  // ---- the run must have exercised what it claims to -------------------------------------------
  violation(t_.kills == 0 || delivered == 0 || t_.pipe_delivered == 0 ||
                c.guarded[0].acquires + c.guarded[1].acquires == 0 || c.sem_acquires.load() == 0,
            "not exercised: %llu kills, %llu queue and %llu pipe messages delivered",
            static_cast<unsigned long long>(t_.kills), static_cast<unsigned long long>(delivered),
            static_cast<unsigned long long>(t_.pipe_delivered));

  const std::uint64_t torn = c.torn.load() + c.lock_torn.load();
  // The id table counts queue duplicates exactly; consumers also saw them as they came.
  const std::uint64_t dup =
      std::max<std::uint64_t>(duplicated, c.duplicated.load()) + c.pipe_duplicated.load();
  violation(torn != 0, "%llu torn messages or lock states", static_cast<unsigned long long>(torn));
  violation(dup != 0, "%llu duplicated messages", static_cast<unsigned long long>(dup));
  violation(c.misordered.load() != 0, "%llu messages out of order or skipped",
            static_cast<unsigned long long>(c.misordered.load()));
  violation(t_.hangs != 0, "%llu hangs", static_cast<unsigned long long>(t_.hangs));
  violation(t_.crashes != 0, "%llu workers ended unexpectedly", static_cast<unsigned long long>(t_.crashes));

  // ---- the summary line -------------------------------------------------------------------------
  const std::uint64_t messages = queue_messages + t_.pipe_messages;
  const std::uint64_t lost = consumer_lost + cut_short_lost + t_.pipe_cut_short_lost +
                             t_.pipe_receiver_killed_lost + t_.pipe_unexplained;
  const std::uint64_t unexplained = queue_unexplained + cut_short_unexplained + t_.pipe_unexplained;
  const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf(
      "kills=%llu messages=%llu lost=%llu (allowed: %llu taken by a killed consumer, %llu puts "
      "or sends that never returned, %llu left in a pipe whose receiver was killed; "
      "unexplained: %llu) duplicated=%llu torn=%llu hangs=%llu | killed in put=%llu get=%llu "
      "send=%llu recv=%llu acquire=%llu holding=%llu release=%llu elsewhere=%llu | "
      "queue=%llu pipe=%llu (%llu pipes; %llu senders, %llu receivers killed) | batches: put_many=%llu "
      "(%llu messages, %llu killed inside) get_many=%llu (%llu messages, %llu killed inside) | "
      "queue sides: abandoned puts=%llu gets=%llu, bias grants=%llu/%llu revocations=%llu/%llu "
      "handovers=%llu/%llu | "
      "locks: updates=%llu owner_died=%llu "
      "repaired_torn=%llu usable=%s | semaphore: acquires=%llu counts_returned=%llu lost=%llu audits=%llu | "
      "misordered=%llu crashes=%llu calm_checks=%llu | seed=%llu %.1fs %s\n",
      u(t_.kills), u(messages), u(lost), u(taken_by_killed),
      u(cut_short_lost - cut_short_unexplained + t_.pipe_cut_short_lost), u(t_.pipe_receiver_killed_lost),
      u(unexplained), u(dup), u(torn), u(t_.hangs), u(t_.kills_in[kInPut]), u(t_.kills_in[kInGet]),
      u(t_.kills_in[kInSend]), u(t_.kills_in[kInRecv]), u(t_.kills_in[kInAcquire]), u(t_.kills_in[kHolding]),
      u(t_.kills_in[kInRelease]),
      u(t_.kills - t_.kills_in[kInPut] - t_.kills_in[kInGet] - t_.kills_in[kInSend] - t_.kills_in[kInRecv] -
        t_.kills_in[kInAcquire] - t_.kills_in[kHolding] - t_.kills_in[kInRelease]),
      u(queue_messages), u(t_.pipe_messages), u(t_.pipe_generations), u(t_.sender_kills),
      u(t_.receiver_kills), u(c.put_many_calls.load()), u(c.put_many_messages.load()),
      u(t_.kills_in_put_many), u(c.get_many_calls.load()), u(c.get_many_messages.load()),
      u(t_.kills_in_get_many), u(stats.abandoned_puts), u(stats.abandoned_gets),
      u(stats.producer_bias_grants), u(stats.consumer_bias_grants), u(stats.producer_bias_revocations),
      u(stats.consumer_bias_revocations), u(stats.producer_bias_handovers), u(stats.consumer_bias_handovers),
      u(c.guarded[0].acquires + c.guarded[1].acquires), u(owner_died),
      u(c.guarded[0].repaired_torn + c.guarded[1].repaired_torn), locks_usable ? "yes" : "NO",
      u(c.sem_acquires.load()), u(t_.sem_returned), u(t_.sem_lost), u(t_.sem_audits), u(c.misordered.load()),
      u(t_.crashes), u(t_.calm_checks), u(cfg_.seed), killing_s, fail ? "FAIL" : "PASS");
  std::fflush(stdout);
  return fail ? 1 : 0;
}

// ---- options --------------------------------------------------------------------------------------

[[noreturn]] void usage(const char* why) {
  if (why != nullptr) std::fprintf(stderr, "mproc_chaos: %s\n", why);
  std::fprintf(stderr,
               "usage: mproc_chaos [--duration SECONDS] [--seed N] [--workers N] [--hang-seconds S]\n"
               "                   [--calm-every K] [--sabotage KIND]\n"
               "  --duration      seconds of killing (default 6, or $MPROC_CHAOS_SECONDS)\n"
               "  --seed          replays a run's choice of victims and pauses (default: random)\n"
               "  --workers       producers, consumers, pipe pairs and semaphore users each\n"
               "                  (default 2, at most %u; lock holders: one more)\n"
               "  --hang-seconds  how long a worker may go without progress (default 10)\n"
               "  --calm-every    kills between two checks that every worker still makes progress\n"
               "                  (default 20 to 79, at random; a kill can hide a hang until then)\n"
               "  --sabotage      plant a fault, to check that the harness catches it: lose,\n"
               "                  duplicate, tear, hide-owner-death, hang or pipe-gap\n",
               kMaxPerRole);
  std::exit(2);
}

double parse_number(const char* s, const char* what) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !std::isfinite(v) || v < 0) {
    usage((std::string("not a number of ") + what + ": " + s).c_str());
  }
  return v;
}

Config parse(int argc, char** argv) {
  Config cfg;
  if (const char* s = std::getenv("MPROC_CHAOS_SECONDS"); s != nullptr && *s != '\0') {
    cfg.duration_s = parse_number(s, "seconds in MPROC_CHAOS_SECONDS");
  }
  cfg.seed = std::random_device{}();
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") usage(nullptr);
    if (i + 1 >= argc) usage((std::string("missing value after ") + argv[i]).c_str());
    const char* value = argv[++i];
    if (arg == "--duration") {
      cfg.duration_s = parse_number(value, "seconds");
    } else if (arg == "--seed") {
      cfg.seed = static_cast<std::uint64_t>(parse_number(value, "the seed"));
    } else if (arg == "--workers") {
      cfg.per_role = static_cast<std::uint32_t>(parse_number(value, "workers"));
      if (cfg.per_role < 1 || cfg.per_role > kMaxPerRole) usage("--workers: 1 to 8");
    } else if (arg == "--sabotage") {
      const auto* k = std::find_if(kSabotages.begin(), kSabotages.end(),
                                   [&](const auto& e) { return e.second == value; });
      if (k == kSabotages.end()) usage((std::string("unknown sabotage ") + value).c_str());
      cfg.sabotage = k->first;
    } else if (arg == "--calm-every") {
      cfg.calm_every = static_cast<std::uint32_t>(parse_number(value, "kills"));
      if (cfg.calm_every < 1) usage("--calm-every: at least 1");
    } else if (arg == "--hang-seconds") {
      cfg.hang_s = parse_number(value, "seconds");
      if (cfg.hang_s < 1) usage("--hang-seconds: at least 1");
    } else {
      usage((std::string("unknown option ") + argv[i - 1]).c_str());
    }
  }
  // Ids per producer: far more than two cores move in the run (a few hundred thousand messages
  // a second in all). Only the pages of ids actually used are ever touched.
  cfg.ids_per_producer = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(cfg.duration_s * 4e6),
                                                   std::uint64_t{1} << 22, std::uint64_t{1} << 31);
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  const Config cfg = parse(argc, argv);
  std::printf("mproc_chaos: seed=%llu duration=%.1fs workers=%u (replay: --seed %llu)\n",
              static_cast<unsigned long long>(cfg.seed), cfg.duration_s, cfg.per_role,
              static_cast<unsigned long long>(cfg.seed));
  std::fflush(stdout);

  // The supervisor's own watchdog: the run, then every worker's stop and the final checks, each
  // bounded by hang_s, with room to spare. Its workers are daemons and die with it.
  g_watchdog_s = static_cast<unsigned>(cfg.duration_s + cfg.hang_s * (6 * cfg.per_role + 6) + 60);
  struct sigaction sa {};
  sa.sa_handler = on_watchdog;
  ::sigaction(SIGALRM, &sa, nullptr);
  ::alarm(g_watchdog_s);

  try {
    Supervisor supervisor(cfg);
    const int rc = supervisor.run();
    ::alarm(0);
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mproc_chaos: the supervisor failed: %s\n", e.what());
    return 1;
  }
}
