#pragma once
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
//
// The files: chaos.hpp (this: sizes, roles and phases, what the processes share, the messages,
// the configuration), workers.cpp (what each worker does), supervisor.hpp and supervisor.cpp (starting,
// watching, killing and replacing workers, and stopping them), checks.cpp (the checks at the end
// and the summary line), main.cpp (options, the watchdog, main).
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

namespace mproc_chaos {

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
inline constexpr std::array kRoles = {Role::producer, Role::consumer, Role::sender,
                                      Role::receiver, Role::locker,   Role::sem_user};

inline const char* role_name(Role r) {
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

inline const char* phase_name(std::uint32_t p) {
  static constexpr std::array<const char*, kPhases> names = {"starting",   "idle",    "put",  "get",
                                                             "processing", "send",    "recv", "acquire",
                                                             "holding",    "release", "done"};
  return p < kPhases ? names[p] : "?";
}

// ---- shared memory --------------------------------------------------------------------------

inline void* map_shared(std::size_t bytes) {
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

inline std::uint64_t guarded_word(std::uint64_t count, std::size_t i) {
  return (count + 1) * 0x9e3779b97f4a7c15ULL ^ i;
}

inline bool guarded_consistent(const Guarded& g) {
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
inline void make_payload(const Header& h, Bytes& out) {
  std::uint64_t state =
      (h.seq * 0x2545f4914f6cdd1dULL) ^ (std::uint64_t{h.stream} << 48) ^ (std::uint64_t{h.generation} << 32);
  const std::uint64_t r = splitmix(state);
  const std::size_t size =
      static_cast<std::size_t>(r % 4 == 0 ? (r >> 8) % (kMaxPayload + 1) : (r >> 8) % 64);
  fill_payload(state, size, out);
}

inline std::uint32_t checksum_of(const Header& h, std::span<const std::byte> payload) {
  std::uint32_t c = 2166136261u;
  c = fnv1a(c, &h.stream, sizeof h.stream);
  c = fnv1a(c, &h.generation, sizeof h.generation);
  c = fnv1a(c, &h.seq, sizeof h.seq);
  c = fnv1a(c, &h.size, sizeof h.size);
  return fnv1a(c, payload.data(), payload.size());
}

inline void encode(std::uint32_t stream, std::uint32_t generation, std::uint64_t seq, Bytes& payload,
                   Bytes& out) {
  Header h{stream, generation, seq, 0, 0};
  make_payload(h, payload);
  h.size = static_cast<std::uint32_t>(payload.size());
  h.checksum = checksum_of(h, payload);
  out.resize(sizeof h + payload.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!payload.empty()) std::memcpy(out.data() + sizeof h, payload.data(), payload.size());
}

// The header, if the message is at least that long.
inline std::optional<Header> header_of(const Bytes& m) {
  if (m.size() < sizeof(Header)) return std::nullopt;
  Header h;
  std::memcpy(&h, m.data(), sizeof h);
  return h;
}

// Whether every byte is what its sender sent.
inline bool intact(const Header& h, const Bytes& m, Bytes& expected) {
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

// ---- the workers (workers.cpp; each runs in its own process) ------------------------------------

void producer(World& w, std::uint32_t slot, std::uint64_t seed, WorkerBeat& me);
void consumer(World& w, std::uint64_t seed, WorkerBeat& me);
void sender(World& w, std::uint32_t pair, std::uint32_t generation, mproc::Connection& out, WorkerBeat& me);
void receiver(World& w, std::uint32_t pair, std::uint32_t generation, mproc::Connection& in, WorkerBeat& me);
void locker(World& w, std::uint64_t seed, WorkerBeat& me);
void sem_user(World& w, std::uint32_t slot, std::uint64_t seed, WorkerBeat& me);
// What a lock holder does with what it guards (also the supervisor's final check of the locks).
void update(Guarded& g);
void check_and_repair(Control& c, Guarded& g, mproc::detail::RobustLock& lock, bool owner_died,
                      const char* what);

}  // namespace mproc_chaos
