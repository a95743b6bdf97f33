// Pool: a dispatcher thread that hands chunks to specific workers, so that a dead worker's
// chunks are known and failed, never lost. Read docs/design/pool.md first.
#include "mproc/pool.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <deque>
#include <exception>
#include <thread>

#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "os/sys.hpp"
#include "os/wait.hpp"
#include "pool/worker.hpp"

namespace mproc {

RemoteError::RemoteError(std::string type, std::string message, std::size_t index)
    : std::runtime_error(type + ": " + message + " (task " + std::to_string(index) + ")"),
      type_(std::move(type)),
      message_(std::move(message)),
      index_(index) {}

namespace {
std::string describe_exit(int exitcode, pid_t pid) {
  std::string s = "worker pid " + std::to_string(pid) + " died ";
  if (exitcode < 0) {
    const char* name = ::sigabbrev_np(-exitcode);
    s += "from signal " + std::to_string(-exitcode) + (name ? std::string(" (SIG") + name + ")" : "");
  } else {
    s += "with exit code " + std::to_string(exitcode);
  }
  return s + " while running this task";
}
}  // namespace

WorkerDied::WorkerDied(int exitcode, pid_t pid, std::size_t index)
    : RemoteError("mproc::WorkerDied", describe_exit(exitcode, pid), index), exitcode_(exitcode) {}

namespace detail {

void Failure::raise() const {
  switch (kind) {
    case task: throw RemoteError(type, message, index);
    case worker_died: throw WorkerDied(exitcode, pid, index);
    case terminated: break;
  }
  if (!message.empty()) {
    // The pool stopped itself (its dispatcher failed): say why, since nobody called terminate().
    throw PoolTerminated("the pool stopped before this task finished: " + message);
  }
  throw PoolTerminated("the pool was terminated before this task finished");
}

namespace {

// What a worker sends back for one chunk: this header, then the exception's type and message
// (if it failed), then the encoded results.
struct ResultHeader {
  std::uint64_t job;
  std::uint64_t first;
  std::uint32_t count;
  std::uint32_t slot;
  std::uint32_t ok;
  std::uint32_t failed;
  std::uint32_t type_size;
  std::uint32_t message_size;
};

constexpr std::size_t kMaxAssigned = 2;  // one running, one queued: a worker never idles
constexpr std::size_t kMinResultsQueue = std::size_t{1} << 20;
constexpr std::size_t kMaxQueueBytes = std::size_t{1} << 34;  // Queue's largest, 16 GiB

// Python raises ValueError for these; mproc's misuse is mproc::UsageError.
PoolOptions checked(PoolOptions o) {
  if (o.processes < 0) {
    throw UsageError("mproc::Pool: the number of processes must be at least 1 (or 0 for cpu_count()), not " +
                     std::to_string(o.processes));
  }
  if (o.maxtasksperchild < 0) {
    throw UsageError(
        "mproc::Pool: PoolOptions::maxtasksperchild must be at least 1 (or 0 for no limit), not " +
        std::to_string(o.maxtasksperchild));
  }
  if (o.queue_bytes == 0 || o.queue_bytes > kMaxQueueBytes) {
    throw UsageError("mproc::Pool: PoolOptions::queue_bytes must be from 1 to " +
                     std::to_string(kMaxQueueBytes) + " (16 GiB), not " + std::to_string(o.queue_bytes));
  }
  if (o.processes == 0) o.processes = cpu_count();
  return o;
}

// Fits a failed chunk's exception into a reply of at most `room` bytes for type and message
// together: the message loses its end (at a UTF-8 character boundary) and says so.
void fit_failure(std::string& type, std::string& message, std::size_t room) {
  if (type.size() + message.size() <= room) return;
  if (type.size() > room / 2) type.resize(room / 2);  // a type name this long is pathological
  if (type.size() + message.size() <= room) return;
  const std::string note = "... [message truncated from " + std::to_string(message.size()) + " bytes]";
  std::size_t keep = room - type.size() >= note.size() ? room - type.size() - note.size() : 0;
  while (keep > 0 && (static_cast<unsigned char>(message[keep]) & 0xC0) == 0x80) --keep;
  message.resize(keep);
  message += note;
}

// Why a chunk's results could not be sent back (run_chunk stopped at the item that went over).
std::string describe_oversized(const ChunkOutcome& o, std::size_t limit) {
  const std::string carries =
      "the pool's results queue carries at most " + std::to_string(limit) + " bytes of results per chunk";
  if (o.oversized_item == o.oversized_total) {
    return "the task's result is " + std::to_string(o.oversized_item) + " bytes encoded; " + carries +
           " (raise PoolOptions::queue_bytes, which also sizes the results queue)";
  }
  return "the task's result (" + std::to_string(o.oversized_item) +
         " bytes encoded) brings its chunk's results to " + std::to_string(o.oversized_total) + " bytes; " +
         carries +
         " (pass a smaller chunksize, or raise PoolOptions::queue_bytes, which also sizes the results queue)";
}

}  // namespace

// It returns (never std::exit): the Process machinery then leaves with _exit, so the parent's
// static destructors and atexit handlers do not run in workers.
void worker_main(Queue<Bytes>& tasks, Queue<Bytes>& results, const PoolOptions& options, std::uint32_t slot,
                 int wake_fd) {
  if (options.initializer != nullptr) options.initializer();
  Bytes task, reply;
  int done = 0;
  // Every reply is made to fit the results queue: a put that could never succeed would leave
  // the chunk's tasks with the wrong failure, or none.
  const std::size_t room = results.max_message_bytes() - sizeof(ResultHeader);
  while (tasks.get_into(task)) {
    ChunkHeader h;
    std::memcpy(&h, task.data(), sizeof h);
    h.runner = relocate(h.runner);
    const std::byte* callable = task.data() + sizeof h;
    const RecordView args{callable + h.callable_size, task.size() - sizeof h - h.callable_size, nullptr, 0,
                          0};
    ChunkOutcome outcome;
    outcome.results_limit = room;
    h.runner(callable, args, h.count, outcome);
    if (!outcome.ok) {
      outcome.results.clear();  // a failed chunk delivers no results
      if (outcome.oversized_total != 0) {
        outcome.type = "mproc::Error";
        outcome.message = describe_oversized(outcome, room);
      }
      fit_failure(outcome.type, outcome.message, room);
    }
    const ResultHeader rh{h.job,
                          h.first,
                          h.count,
                          slot,
                          outcome.ok ? 1u : 0u,
                          outcome.failed,
                          static_cast<std::uint32_t>(outcome.type.size()),
                          static_cast<std::uint32_t>(outcome.message.size())};
    reply.resize(sizeof rh + outcome.type.size() + outcome.message.size() + outcome.results.size());
    std::byte* p = reply.data();
    std::memcpy(p, &rh, sizeof rh);
    std::memcpy(p += sizeof rh, outcome.type.data(), outcome.type.size());
    std::memcpy(p += outcome.type.size(), outcome.message.data(), outcome.message.size());
    std::memcpy(p + outcome.message.size(), outcome.results.data(), outcome.results.size());
    results.put(std::span<const std::byte>(reply));
    if (wake_fd >= 0) (void)::eventfd_write(wake_fd, 1);  // after the put: the dispatcher then finds it
    if (options.maxtasksperchild > 0 && ++done >= options.maxtasksperchild) break;
  }
}

struct PoolCore::State {
  struct Chunk {
    std::shared_ptr<JobBase> job;
    std::size_t first;
    std::uint32_t count;
    std::string bytes;
  };
  struct Worker {
    std::unique_ptr<Queue<Bytes>> tasks;
    std::string tasks_name;  // empty for a fork worker's anonymous queue
    std::optional<Process> process;
    std::deque<Chunk> assigned;  // sent and not yet answered, oldest first
    int sent = 0;
  };
  enum class Phase { running, closing, terminating };

  State(const PoolOptions& o, StartMethod m)
      : options(checked(o)),
        method(m),
        names(pool_queue_prefix(method)),
        results(make_pool_queue(names.empty() ? names : names + "-results",
                                std::max(options.queue_bytes, kMinResultsQueue))) {
    check_worker_setup(method, options.initializer);
    wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) sys::throw_errno("cannot create the wake-up descriptor of a", "Pool");
    sys::close_in_children(wake_fd);
    workers.resize(static_cast<std::size_t>(options.processes));
  }
  ~State() {
    for (const Worker& w : workers) unlink_pool_queue(w.tasks_name);
    unlink_pool_queue(names.empty() ? names : names + "-results");
    sys::stop_closing_in_children(wake_fd);
    sys::close_fd(wake_fd);
  }

  void wake() noexcept { (void)::eventfd_write(wake_fd, 1); }

  // ---- dispatcher thread only ----------------------------------------------------------------

  // Called without `mutex`: a worker forked while this thread held it would inherit it locked.
  void start_worker(std::size_t slot) {
    Worker& w = workers[slot];
    unlink_pool_queue(w.tasks_name);  // the replaced worker's
    w.tasks_name = names.empty() ? names : names + "-tasks-" + std::to_string(++queues_made);
    w.tasks =
        std::unique_ptr<Queue<Bytes>>(new Queue<Bytes>(make_pool_queue(w.tasks_name, options.queue_bytes)));
    {
      std::scoped_lock hold{mutex};
      w.assigned.clear();
      w.sent = 0;
    }
    Queue<Bytes>* tasks = w.tasks.get();
    Queue<Bytes>* res = &results;
    const PoolOptions* opts = &options;
    if (method == StartMethod::fork) {
      w.process.emplace(
          [tasks, res, opts, slot] { worker_main(*tasks, *res, *opts, static_cast<std::uint32_t>(slot)); });
    } else {
      const SpawnedWorkerConfig config{code_anchor(), reinterpret_cast<std::uintptr_t>(options.initializer),
                                       options.maxtasksperchild, static_cast<std::uint32_t>(slot)};
      w.process.emplace(spawned_worker, w.tasks_name, names + "-results", config, WakeFd{wake_fd});
    }
    w.process->set_name("PoolWorker-" + std::to_string(slot + 1));
    w.process->set_daemon(true);  // never outlives the pool's process
    w.process->set_start_method(method);
    try {
      w.process->start();
    } catch (...) {
      w.process.reset();  // never started: nothing for stop_workers() to kill or join
      throw;
    }
  }

  // Hands pending chunks to workers with room. Called with `mutex` held.
  void assign() {
    for (std::size_t n = 0; n < workers.size() && !pending.empty(); ++n) {
      Worker& w = workers[(next_worker + n) % workers.size()];
      if (!w.process) continue;
      while (!pending.empty() && w.assigned.size() < kMaxAssigned &&
             (options.maxtasksperchild <= 0 || w.sent < options.maxtasksperchild)) {
        Chunk& c = pending.front();
        const auto* p = reinterpret_cast<const std::byte*>(c.bytes.data());
        // Recorded as assigned before anything can happen to it (docs/design/pool.md).
        if (!w.tasks->put_for(Bytes(p, p + c.bytes.size()), std::chrono::seconds(0))) break;
        w.assigned.push_back(std::move(c));
        ++w.sent;
        pending.pop_front();
      }
    }
    next_worker = (next_worker + 1) % workers.size();
  }

  void handle_result(const Bytes& reply) {
    ResultHeader rh;
    std::memcpy(&rh, reply.data(), sizeof rh);
    const char* p = reinterpret_cast<const char*>(reply.data()) + sizeof rh;
    std::string type(p, rh.type_size);
    std::string message(p + rh.type_size, rh.message_size);
    const char* body = p + rh.type_size + rh.message_size;
    std::string encoded(body, reply.size() - sizeof rh - rh.type_size - rh.message_size);

    std::shared_ptr<JobBase> job;
    {
      std::scoped_lock hold{mutex};
      Worker& w = workers[rh.slot];
      for (auto it = w.assigned.begin(); it != w.assigned.end(); ++it) {
        if (it->first == rh.first && job_id_of(*it) == rh.job) {
          job = std::move(it->job);
          w.assigned.erase(it);
          break;
        }
      }
    }
    if (!job) return;  // already failed (terminate raced with the result)
    if (rh.ok != 0) {
      job->deliver(rh.first, rh.count, encoded);
    } else {
      Failure f{Failure::task, rh.first + rh.failed, std::move(type), std::move(message), 0, 0};
      job->fail(rh.first, rh.count, f);
    }
  }

  static std::uint64_t job_id_of(const Chunk& c) {
    std::uint64_t id;
    std::memcpy(&id, c.bytes.data() + offsetof(ChunkHeader, job), sizeof id);
    return id;
  }

  void drain_results() {
    while (auto r = results.try_get()) handle_result(*r);
  }

  void handle_death(std::size_t slot, bool replace) {
    Worker& w = workers[slot];
    w.process->join();
    const int code = w.process->exitcode().value_or(0);
    const pid_t pid = *w.process->pid();
    std::deque<Chunk> lost;
    {
      std::scoped_lock hold{mutex};
      lost.swap(w.assigned);
    }
    for (Chunk& c : lost) {
      c.job->fail(c.first, c.count, Failure{Failure::worker_died, c.first, {}, {}, code, pid});
    }
    w.process.reset();
    if (replace) start_worker(slot);
  }

  void run() {
    // This thread forks the workers: the fork warning counts the other threads, not this one.
    detail::count_internal_thread(1);
    struct Uncount {
      ~Uncount() { detail::count_internal_thread(-1); }
    } uncount;
    try {
      try {
        for (std::size_t i = 0; i < workers.size(); ++i) start_worker(i);
      } catch (...) {
        announce_started();
        throw;
      }
      announce_started();
      loop();
    } catch (const std::exception& e) {
      // Fork, mmap or a decode failed in here. Do not take the user's process down with an
      // escaped exception: fail every unfinished task and stop the pool.
      std::fprintf(stderr, "mproc: the Pool's dispatcher failed (%s); terminating the pool\n", e.what());
      std::scoped_lock hold{mutex};
      phase = Phase::terminating;
      stopped_because = std::string("its dispatcher failed: ") + e.what();
    }
    try {
      stop_workers();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mproc: while shutting the Pool down: %s\n", e.what());
    }
    fail_unfinished();  // whatever failed above: no task may be left waiting forever
  }

  // The constructor waits for this: it returns once the first workers are forked (or failed to
  // be), so that the caller's thread is not allocating while this thread forks. Forking is safe
  // next to glibc's malloc, which takes its locks around fork, but not next to GCC 12's
  // AddressSanitizer allocator: a worker forked while another thread held its lock hangs in its
  // first allocation.
  void announce_started() {
    {
      std::scoped_lock hold{mutex};
      started = true;
    }
    started_cv.notify_all();
  }

  // One round of the dispatcher: assign pending chunks; false once there is nothing left to do.
  bool assign_or_finish() {
    std::scoped_lock hold{mutex};
    if (phase == Phase::terminating) return false;
    assign();
    if (phase != Phase::closing || !pending.empty()) return true;
    for (auto& w : workers)
      if (!w.assigned.empty()) return true;
    return false;  // closed, and every chunk done
  }

  // Sleeps until a result, a wake-up or a worker's death (at most a heartbeat). A named results
  // queue (spawned workers) has no descriptor to watch: its workers write wake_fd after each
  // reply instead (docs/design/start-methods.md, "Pool").
  void wait_for_events(std::vector<pollfd>& fds) {
    fds.clear();
    fds.push_back(pollfd{names.empty() ? results.fileno() : -1, POLLIN, 0});
    fds.push_back(pollfd{wake_fd, POLLIN, 0});
    for (auto& w : workers) fds.push_back(pollfd{w.process ? w.process->sentinel() : -1, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), static_cast<int>(sys::kHeartbeat.count())) < 0 && errno != EINTR) {
      std::fprintf(stderr, "mproc: Pool dispatcher: poll failed: %s\n", std::strerror(errno));
    }
    eventfd_t ignored;
    (void)::eventfd_read(wake_fd, &ignored);
  }

  void handle_deaths(const std::vector<pollfd>& fds) {
    for (std::size_t i = 0; i < workers.size(); ++i) {
      if (fds[i + 2].fd < 0 || (fds[i + 2].revents & POLLIN) == 0) continue;
      drain_results();  // what it sent before dying counts
      bool replace;
      {
        std::scoped_lock hold{mutex};
        replace = phase == Phase::running || (phase == Phase::closing && !pending.empty());
      }
      handle_death(i, replace);
    }
  }

  void loop() {
    std::vector<pollfd> fds;
    while (assign_or_finish()) {
      wait_for_events(fds);
      drain_results();
      handle_deaths(fds);
    }
  }

  void stop_workers() {
    Phase now;
    {
      std::scoped_lock hold{mutex};
      now = phase;
    }
    if (now == Phase::terminating) {
      for (auto& w : workers)
        if (w.process) w.process->kill();
    } else {
      for (auto& w : workers)
        if (w.tasks) w.tasks->close();  // idle workers drain nothing and exit
    }
    for (auto& w : workers) {
      if (!w.process) continue;
      w.process->join();
      drain_results();
    }
  }

  void fail_unfinished() {
    std::deque<Chunk> unfinished;
    Failure stopped{Failure::terminated, 0, {}, {}, 0, 0};
    {
      std::scoped_lock hold{mutex};
      stopped.message = stopped_because;
      for (auto& w : workers) {
        for (auto& c : w.assigned) unfinished.push_back(std::move(c));
        w.assigned.clear();
      }
      for (auto& c : pending) unfinished.push_back(std::move(c));
      pending.clear();
      finished = true;
    }
    for (Chunk& c : unfinished) {
      Failure f = stopped;
      f.index = c.first;
      c.job->fail(c.first, c.count, f);
    }
  }

  PoolOptions options;
  StartMethod method;
  std::string names;  // the named queues' common prefix; empty for fork workers (anonymous queues)
  std::uint64_t queues_made = 0;  // dispatcher thread: numbers each worker queue's name
  Queue<Bytes> results;
  int wake_fd = -1;
  std::vector<Worker> workers;  // dispatcher thread; `assigned` also under mutex

  std::mutex mutex;  // guards pending, phase, stopped_because, finished, next_job, Worker::assigned, started
  std::deque<Chunk> pending;
  Phase phase = Phase::running;
  std::string stopped_because;  // set when the pool stopped itself rather than by terminate()
  bool finished = false;
  std::uint64_t next_job = 1;
  std::size_t next_worker = 0;
  bool started = false;  // the first workers are forked (or could not be)
  std::condition_variable started_cv;

  std::thread dispatcher;
};

PoolCore::PoolCore(const PoolOptions& options, StartMethod method)
    : state_(std::make_unique<State>(options, method)) {
  State& s = *state_;
  s.dispatcher = std::thread([p = &s] { p->run(); });
  std::unique_lock hold{s.mutex};
  s.started_cv.wait(hold, [&s] { return s.started; });
}

PoolCore::~PoolCore() {
  terminate();
  if (state_->dispatcher.joinable()) state_->dispatcher.join();
}

void PoolCore::submit(const std::shared_ptr<JobBase>& job, std::vector<EncodedChunk>&& chunks) {
  State& s = *state_;
  const std::size_t limit = RingView::round_capacity(s.options.queue_bytes) - RingView::kRecordHeader;
  if (!chunks.empty()) {
    ChunkHeader h;
    std::memcpy(&h, chunks.front().bytes.data(), sizeof h);
    check_task_code(s.method, reinterpret_cast<const void*>(h.runner));
  }
  for (const auto& c : chunks) {
    if (c.bytes.size() > limit) {
      throw Error(EMSGSIZE, "cannot submit a chunk of " + std::to_string(c.bytes.size()) + " bytes to a",
                  "Pool whose worker queues take at most " + std::to_string(limit) +
                      " bytes (raise PoolOptions::queue_bytes, or use a smaller chunksize)");
    }
  }
  {
    std::scoped_lock hold{s.mutex};
    if (!s.stopped_because.empty()) {
      throw PoolTerminated("cannot submit to a Pool that stopped: " + s.stopped_because);
    }
    if (s.phase != State::Phase::running) {
      throw UsageError("cannot submit to a Pool after close() or terminate()");
    }
    const std::uint64_t id = s.next_job++;
    if (chunks.empty()) {
      // An empty map: nothing to run, the job is already complete.
      job->deliver(0, 0, {});
      return;
    }
    for (auto& c : chunks) {
      std::memcpy(c.bytes.data() + offsetof(ChunkHeader, job), &id, sizeof id);
      s.pending.push_back(State::Chunk{job, c.first, c.count, std::move(c.bytes)});
    }
  }
  s.wake();
}

void PoolCore::close() {
  {
    std::scoped_lock hold{state_->mutex};
    if (state_->phase == State::Phase::running) state_->phase = State::Phase::closing;
  }
  state_->wake();
}

void PoolCore::terminate() {
  {
    std::scoped_lock hold{state_->mutex};
    state_->phase = State::Phase::terminating;
  }
  state_->wake();
}

void PoolCore::join() {
  {
    std::scoped_lock hold{state_->mutex};
    if (state_->phase == State::Phase::running) {
      throw UsageError("cannot join a Pool that is still running: call close() or terminate() first");
    }
  }
  if (state_->dispatcher.joinable()) {
    if (state_->dispatcher.get_id() == std::this_thread::get_id()) {
      throw UsageError("cannot join a Pool from one of its own callbacks");
    }
    state_->dispatcher.join();
  }
}

int PoolCore::processes() const noexcept {
  return state_->options.processes;
}

}  // namespace detail
}  // namespace mproc
