#pragma once
/// mproc::Process — run a callable in a child process, as Python's multiprocessing.Process.
///
///   mproc::Process p([](int n) { std::printf("hello %d\n", n); }, 7);
///   p.start();
///   p.join();                        // or p.join(2s) -> bool
///   assert(p.exitcode() == 0);       // -N when killed by signal N
///
/// Start method (<mproc/start_method.hpp>, docs/design/start-methods.md): the process-wide
/// default (mproc::set_start_method; fork unless changed) at construction, or set_start_method()
/// before start().
/// fork: the child is a copy of the parent at start(): it sees the callable,
/// its arguments and every object (locks, queues) that existed before start(). The target and
/// its arguments are decay-copied into the Process when it is constructed and invoked in the
/// child as rvalues, as std::thread does (use std::ref to pass by reference; in the child the
/// reference names the child's copy of the object). Forking a process that has other threads
/// prints a one-line warning, once (MPROC_NO_FORK_WARNING=1 silences it).
/// spawn / forkserver: the target must be a function registered with MPROC_ENTRY; its
/// arguments are encoded (converted to its parameter types) when start() is called and decoded
/// in the child, which is a fresh program (spawn) or a fork of the single-threaded forkserver.
/// Everything else below holds for all three methods.
///
/// Exit codes, as Python: returning from the target gives 0; mproc::exit(n) — like Python's
/// sys.exit(n) — unwinds the target's stack (destructors run, scoped locks are released) and
/// gives n; std::exit(n) also gives n but skips the unwinding and runs the atexit handlers the
/// child inherited from the parent; an exception escaping the target prints
/// "Process NAME (pid P): uncaught TYPE: MESSAGE" on the child's stderr and gives 1; death by
/// signal N gives -N. Otherwise the child leaves with _exit() after flushing stdio, so the
/// parent's atexit handlers and static destructors do not run twice. stdout and stderr are
/// flushed in the parent before the fork, so buffered output is never duplicated.
///
/// Thread safety: join/is_alive/exitcode/terminate/kill/pid may be called concurrently on one
///   object from many threads; start() and the setters may not race with each other.
/// Process safety: only the process that started a child may join or signal it (the kernel
///   lets only a parent reap its child); elsewhere these members throw mproc::UsageError.
/// Forking a multi-threaded parent: only the calling thread exists in the child. As in
///   Python's fork start method, the child must not rely on locks that other threads of the
///   parent may have held at the fork (mproc's own internal state is made fork-safe).
/// daemon: a daemon child never outlives its parent — the kernel kills it with SIGKILL when
///   the parent dies, however it dies (prctl PR_SET_PDEATHSIG). Caveat inherited from Linux:
///   "parent" means the parent *thread* that called start(); start daemon children from a
///   thread that lives as long as the process (typically main).
/// Destruction while running: the destructor of a Process whose child still runs sends it
///   SIGTERM, waits up to kTerminateGrace for it to exit, then sends SIGKILL, reaps it and
///   prints a warning naming it on stderr. It never blocks for longer and never leaks a child
///   or a zombie. join() first to let a child finish its work.
///
/// Requires Linux 5.4 (pidfd): children are tracked through pid file descriptors, so a
/// recycled pid can never make terminate() signal an unrelated process.
#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/deadline.hpp"
#include "mproc/start_method.hpp"

namespace mproc {

namespace detail {

/// The type-erased target of a Process: run() is called once, in the child.
struct ProcessTarget {
  virtual ~ProcessTarget() = default;
  virtual void run() = 0;
  /// The target as a spawned child runs it: the entry function and its encoded arguments.
  virtual SpawnCall spawn_call() const = 0;
};

template <class F, class... Args>
struct BoundTarget final : ProcessTarget {
  template <class G, class... A>
  explicit BoundTarget(G&& g, A&&... a) : fn(std::forward<G>(g)), args(std::forward<A>(a)...) {}
  void run() override {
    std::apply([this](auto&... a) { std::invoke(std::move(fn), std::move(a)...); }, args);
  }
  SpawnCall spawn_call() const override { return make_spawn_call(fn, args); }
  F fn;
  std::tuple<Args...> args;
};

struct ProcessState;

/// Threads mproc runs itself (a Pool's dispatcher): not counted by the fork warning.
void count_internal_thread(int delta) noexcept;

}  // namespace detail

/// A snapshot of facts about a process.
struct ProcessInfo {
  std::string name;  ///< "MainProcess", "Process-3", "Process-1:2" (child 2 of Process-1)...
  pid_t pid = 0;
  bool daemon = false;
};

class Process {
 public:
  /// How long the destructor of a still-running Process waits after SIGTERM before SIGKILL.
  static constexpr std::chrono::milliseconds kTerminateGrace{1000};

  /// Prepares (does not start) a child that will call `target(args...)`. The name defaults to
  /// "Process-N" (N counts the Process objects this process created, from 1).
  template <class F, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
  explicit Process(F&& target, Args&&... args)
      : Process(std::make_unique<detail::BoundTarget<std::decay_t<F>, std::decay_t<Args>...>>(
            std::forward<F>(target), std::forward<Args>(args)...)) {}

  Process(Process&&) noexcept;
  /// Disposes of the current child first, as the destructor does.
  Process& operator=(Process&&) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  /// Sets the name (before or after start; the child sees the name it had at start()).
  Process& set_name(std::string name);
  /// Daemon flag: only before start() (mproc::UsageError after).
  Process& set_daemon(bool daemon);
  /// Start method: only before start() (mproc::UsageError after).
  Process& set_start_method(StartMethod method);
  StartMethod start_method() const noexcept;

  /// Starts the child. Throws mproc::UsageError when called twice, and for spawn and
  /// forkserver when the target is not a registered entry point or mproc::init was not called;
  /// mproc::Error when the system cannot create a process (EAGAIN at the process limit, ENOMEM).
  void start();

  /// Waits for the child to end and reaps it. Throws mproc::UsageError for a process never
  /// started, for the current process itself, and outside the process that started it.
  void join();
  /// Waits at most `timeout` (monotonic clock); returns whether the child has ended.
  bool join_for(detail::Timeout timeout) { return join_until(timeout); }
  /// Waits until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  bool join_until(detail::Deadline deadline);
  /// Python's spelling of join_for(): `p.join(2s)`.
  bool join(detail::Timeout timeout) { return join_until(timeout); }

  /// Whether the child has been started and has not ended. Reaps it if it has ended.
  bool is_alive() const;
  /// Empty while running or before start; the exit status; or -N after death by signal N.
  std::optional<int> exitcode() const;

  /// SIGTERM / SIGKILL. No-op once the child has ended; mproc::UsageError before start().
  void terminate();
  void kill();

  /// Empty before start().
  std::optional<pid_t> pid() const noexcept;
  /// A file descriptor that becomes readable when the child ends (a pidfd), for
  /// poll/epoll loops, like Python's Process.sentinel. -1 before start(). Owned by Process.
  int sentinel() const noexcept;
  const std::string& name() const noexcept;
  bool daemon() const noexcept;

 private:
  explicit Process(std::unique_ptr<detail::ProcessTarget> target);
  void send_signal(int signo, const char* what);

  std::shared_ptr<detail::ProcessState> state_;
};

/// Ends the calling process with exit code `code`, as Python's sys.exit(code): in the thread
/// running a Process target it throws mproc::SystemExit, which unwinds the target's stack
/// (releasing scoped locks) and becomes the exit code; anywhere else it calls std::exit(code).
[[noreturn]] void exit(int code);

/// What mproc::exit() throws inside a Process target. Deliberately not a std::exception, so that
/// `catch (const std::exception&)` in the target does not swallow it (Python's SystemExit is not
/// an Exception either).
class SystemExit {
 public:
  explicit SystemExit(int code) noexcept : code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// The calling process: its name ("MainProcess" unless it was started by mproc), pid, daemon.
ProcessInfo current_process();
/// The process that started this one through mproc::Process; empty in a process that was
/// not started by mproc (like Python's parent_process() returning None).
std::optional<ProcessInfo> parent_process();
/// The children started by this process that are still running (finished ones are reaped).
std::vector<ProcessInfo> active_children();
/// The number of CPUs this process may run on (its affinity mask), at least 1 — what a pool
/// should size itself by. Python 3.13's cpu_count() means the same.
int cpu_count() noexcept;

}  // namespace mproc
