#pragma once
// mproc_chaos: the supervisor, which starts, watches, kills and replaces the workers
// (supervisor.cpp), then checks what became of every message and lock (checks.cpp).
#include "chaos.hpp"

namespace mproc_chaos {

// ---- the supervisor ---------------------------------------------------------------------------

// Where the supervisor is, for its own watchdog's message.
inline volatile std::sig_atomic_t g_stage = 0;
inline constexpr std::array<const char*, 4> kStages = {"starting", "killing", "stopping", "checking"};
inline unsigned g_watchdog_s = 0;

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

// What the checks at the end found, for the summary line.
struct Findings {
  // The queue, id by id (account_queue).
  std::uint64_t queue_messages = 0, delivered = 0, returned_lost = 0, cut_short_lost = 0, duplicated = 0,
                phantoms = 0, holes = 0, stray = 0, stray_lost = 0;
  // What the allowances explain (check_queue).
  std::uint64_t consumer_lost = 0, queue_unexplained = 0, taken_by_killed = 0, cut_short_unexplained = 0;
  mproc::RingStats stats{};
  bool locks_usable = false;
  std::uint64_t owner_died = 0, torn = 0, dup = 0;
};

/// Reports each violation on stderr, and remembers that there was one.
class Violations {
 public:
  template <class... A>
  void operator()(bool bad, const char* fmt, A... args) {
    if (!bad) return;
    fail_ = true;
    std::fprintf(stderr, "mproc_chaos: VIOLATION: ");
    std::fprintf(stderr, fmt, args...);
    std::fputc('\n', stderr);
  }
  bool failed() const { return fail_; }

 private:
  bool fail_ = false;
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
  void account_queue(Findings& f);
  void check_queue(Findings& f, Violations& violation);
  void check_pipes_locks_semaphore(Findings& f, Violations& violation);
  void check_exercised_and_intact(Findings& f, Violations& violation);
  void print_summary(const Findings& f, double killing_s, bool fail);
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

}  // namespace mproc_chaos
