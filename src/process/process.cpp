// Process: start the child (fork here; spawn.cpp, forkserver.cpp), track it through a pidfd,
// reap it exactly once.
#include "mproc/process.hpp"

#include <dirent.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>

#include "mproc/detail/demangle.hpp"
#include "mproc/error.hpp"
#include "os/sys.hpp"
#include "os/wait.hpp"
#include "process/start.hpp"

namespace mproc {

namespace detail {

struct ProcessState {
  std::unique_ptr<ProcessTarget> target;
  std::string name;
  std::vector<int> identity;  // this process's position in the tree: Process-1:2 is {1, 2}
  bool daemon = false;
  StartMethod method = get_start_method();
  pid_t creator = ::getpid();  // only this process may start, join or signal the child
  std::atomic<bool> started{false};
  pid_t pid = 0;       // set by start(); in the child, the child's own pid
  int pidfd = -1;      // set by start(); -1 if the child was reaped before it could be opened
  int status_fd = -1;  // forkserver children: where the server reports the exit (start.hpp)

  std::mutex mutex;             // serialises reaping
  std::optional<int> exitcode;  // guarded by mutex

  ~ProcessState() {
    if (creator != ::getpid()) return;
    for (const int fd : {pidfd, status_fd}) {
      if (fd < 0) continue;
      sys::stop_closing_in_children(fd);
      sys::close_fd(fd);
    }
  }
};

}  // namespace detail

namespace {

using detail::Clock;
using detail::ProcessState;

// ---- what this process knows about itself -------------------------------------------------
// Written only in a freshly forked child, before the target runs (no other thread exists then);
// read-only afterwards, except the atomic counter.
struct Self {
  std::string name = "MainProcess";
  std::vector<int> identity;
  bool daemon = false;
  std::optional<ProcessInfo> parent;
  std::atomic<int> counter{0};  // Process objects created in this process, for default names
};

// Set in the thread that runs a Process target, for mproc::exit().
thread_local bool t_running_target = false;

Self& self() {
  static Self s;
  return s;
}

// ---- the children started here, for active_children() --------------------------------------
std::mutex g_children_mutex;
std::vector<std::weak_ptr<ProcessState>> g_children;  // guarded by g_children_mutex

void registry_prepare() noexcept {
  g_children_mutex.lock();
}
void registry_parent() noexcept {
  g_children_mutex.unlock();
}
void registry_child() noexcept {
  // A child has no children of its own yet; its copies of its siblings' states are inert
  // (their creator is another process).
  g_children.clear();
  g_children_mutex.unlock();
}

void install_fork_handlers() {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(registry_prepare, registry_parent, registry_child); });
}

std::string describe(const ProcessState& st) {
  std::string s = st.name;
  if (st.pid != 0) s += " (pid " + std::to_string(st.pid) + ")";
  return s;
}

void flush_std_streams() noexcept {
  // Anything buffered now would be written twice: once by the parent and once by the child.
  try {
    std::cout.flush();
    std::clog.flush();
  } catch (...) {}
  std::fflush(nullptr);
}

void take_identity(const std::string& name, const std::vector<int>& identity, bool daemon,
                   const ProcessInfo& parent) {
  Self& me = self();
  me.name = name;
  me.identity = identity;
  me.daemon = daemon;
  me.parent = parent;
  me.counter.store(0, std::memory_order_relaxed);
}

[[noreturn]] void run_child(ProcessState& st, const ProcessInfo& parent) noexcept {
  if (st.daemon) {
    // The kernel kills us when the parent thread dies, whichever way it dies. If the parent
    // died before this line, no signal will come: check, and die the same way.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent.pid) ::raise(SIGKILL);
  }
  take_identity(st.name, st.identity, st.daemon, parent);
  st.pid = ::getpid();
  detail::run_target_and_exit(
      st.name, [](const void* target) { static_cast<const ProcessState*>(target)->target->run(); }, &st);
}

// Reads the forkserver's report on a child it started (start.hpp). Returns whether it ended.
bool read_status(ProcessState& st) {
  detail::StatusMessage m;
  const ssize_t n = sys::retry_eintr([&] { return ::recv(st.status_fd, &m, sizeof m, MSG_DONTWAIT); });
  if (n == sizeof m && m.kind == detail::StatusMessage::exited) {
    st.exitcode = m.value;
    return true;
  }
  if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
  throw Error(n == -1 ? errno : ECHILD, "cannot collect the exit status of",
              describe(st) + ": the forkserver that started it died (its exit code is lost)");
}

// Collects the child's status if it has ended. Returns whether it has.
bool reap(ProcessState& st) {
  std::scoped_lock hold{st.mutex};
  if (st.exitcode) return true;
  if (st.status_fd >= 0) return read_status(st);
  if (st.pidfd < 0) {
    throw Error(ECHILD, "cannot collect the exit status of",
                describe(st) + ": it was reaped elsewhere (is SIGCHLD ignored?)");
  }
  siginfo_t info{};
  const int rc = sys::retry_eintr(
      [&] { return ::waitid(P_PIDFD, static_cast<id_t>(st.pidfd), &info, WEXITED | WNOHANG); });
  if (rc == -1) {
    if (errno == ECHILD) {
      throw Error(ECHILD, "cannot collect the exit status of",
                  describe(st) +
                      ": it was reaped elsewhere (is SIGCHLD ignored, or did "
                      "something call wait() for all children?)");
    }
    sys::throw_errno("cannot wait for", describe(st));
  }
  if (info.si_pid == 0) return false;  // still running
  st.exitcode = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
  return true;
}

// Sleeps until the child's pidfd is readable (it ended) or the deadline passes.
void wait_readable(const ProcessState& st, Clock::time_point deadline) {
  pollfd p{st.status_fd >= 0 ? st.status_fd : st.pidfd, POLLIN, 0};
  if (deadline == Clock::time_point::max()) {
    if (sys::retry_eintr([&] { return ::ppoll(&p, 1, nullptr, nullptr); }) == -1) {
      sys::throw_errno("cannot wait for", describe(st));
    }
    return;
  }
  for (;;) {
    if (deadline <= Clock::now()) return;
    const timespec ts = sys::timespec_until(deadline);
    const int rc = ::ppoll(&p, 1, &ts, nullptr);
    if (rc >= 0) return;
    if (errno != EINTR) sys::throw_errno("cannot wait for", describe(st));
  }
}

void check_started_here(const ProcessState& st, const char* what) {
  if (!st.started.load()) {
    throw UsageError(std::string("cannot ") + what + " " + st.name + ": it was never started");
  }
  if (st.pid == ::getpid()) {
    throw UsageError(std::string("cannot ") + what + " " + st.name + ": it is the current process");
  }
  if (st.creator != ::getpid()) {
    throw UsageError(std::string("cannot ") + what + " " + describe(st) +
                     ": only the process that started it can");
  }
}

bool join_state(ProcessState& st, Clock::time_point deadline) {
  check_started_here(st, "join");
  for (;;) {
    if (reap(st)) return true;
    if (Clock::now() >= deadline) return false;
    wait_readable(st, deadline);
  }
}

// What ~Process does with a child it still owns: reap it if it ended, otherwise terminate it.
void dispose(ProcessState& st) noexcept {
  if (!st.started.load() || st.creator != ::getpid() || st.pidfd < 0) return;
  try {
    if (reap(st)) return;
    (void)sys::pidfd_send_signal(st.pidfd, SIGTERM);
    if (!join_state(st, detail::deadline_after(Process::kTerminateGrace))) {
      (void)sys::pidfd_send_signal(st.pidfd, SIGKILL);
      (void)join_state(st, Clock::time_point::max());
    }
    std::fprintf(stderr,
                 "mproc: Process %s was destroyed while still running; it was terminated "
                 "(exit code %d). join() a process before destroying it.\n",
                 describe(st).c_str(), st.exitcode.value_or(0));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mproc: while disposing of Process %s: %s\n", describe(st).c_str(), e.what());
  }
}

// ---- starting ---------------------------------------------------------------------------------
std::atomic<int> g_internal_threads{0};
std::atomic<bool> g_fork_warned{false};

int count_threads() noexcept {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
  }
  return n;
}

// CPython 3.12 warns the same way (DeprecationWarning: "This process is multi-threaded, use of
// fork() may lead to deadlocks in the child").
void warn_if_threaded(const ProcessState& st) noexcept {
  if (g_fork_warned.load(std::memory_order_relaxed)) return;
  const char* quiet = std::getenv("MPROC_NO_FORK_WARNING");
  if (quiet != nullptr && *quiet != '\0' && std::strcmp(quiet, "0") != 0) return;
  const int threads = count_threads() - g_internal_threads.load(std::memory_order_relaxed);
  if (threads <= 1) return;
  if (g_fork_warned.exchange(true)) return;
  std::fprintf(stderr,
               "mproc: warning: forking %s from a process with %d threads: the child may hang on a lock "
               "another thread held (malloc, logging); use the spawn or forkserver start method "
               "(mproc::set_start_method), or set MPROC_NO_FORK_WARNING=1 to silence this\n",
               st.name.c_str(), threads);
}

void start_forked(ProcessState& st, const ProcessInfo& parent) {
  warn_if_threaded(st);
  flush_std_streams();
  const pid_t pid = ::fork();
  if (pid == -1) throw Error(errno, "cannot start", st.name);
  if (pid == 0) run_child(st, parent);
  st.pid = pid;
  st.pidfd = detail::track_child(pid, describe(st));
}

void start_fresh(ProcessState& st, const ProcessInfo& parent) {
  const char* method = start_method_name(st.method);
  const detail::SpawnCall call = st.target->spawn_call();
  const std::string cannot = "cannot start " + st.name + " with the " + method + " start method: ";
  if (call.why_not != nullptr) {
    throw UsageError(cannot + call.why_not +
                     "; spawn and forkserver run a function registered with MPROC_ENTRY(function) "
                     "with arguments a Queue can carry (or use the fork start method)");
  }
  const std::string* entry = detail::entry_name_of(call.fn);
  if (entry == nullptr) {
    throw UsageError(cannot +
                     "its target function is not a registered entry point; add MPROC_ENTRY(function) at "
                     "namespace scope");
  }
  if (!detail::init_called()) {
    throw UsageError(cannot + "mproc::init(argc, argv) was not called; make it the first line of main");
  }
  if (call.fds.size() > detail::kMaxTravellingFds) {
    throw UsageError(cannot + "its arguments travel with " + std::to_string(call.fds.size()) +
                     " descriptors (anonymous Locks, Events, Connections); at most " +
                     std::to_string(detail::kMaxTravellingFds) + " go to one child: name the others");
  }
  detail::ChildSpec spec{*entry, st.name, st.identity, st.daemon, parent, call.args, call.fds};
  flush_std_streams();
  const detail::Started s =
      st.method == StartMethod::spawn ? detail::spawn_child(spec) : detail::forkserver_child(spec);
  st.pid = s.pid;
  st.pidfd = s.pidfd;
  st.status_fd = s.status_fd;
}

}  // namespace

namespace detail {

void count_internal_thread(int delta) noexcept {
  g_internal_threads.fetch_add(delta, std::memory_order_relaxed);
}

void become_child(const ChildSpec& spec) {
  take_identity(spec.name, spec.identity, spec.daemon, spec.parent);
}

void run_target_and_exit(const std::string& name, void (*run)(const void*), const void* ctx) noexcept {
  const pid_t pid = ::getpid();
  int code = 0;
  t_running_target = true;
  try {
    run(ctx);
  } catch (const SystemExit& e) {
    code = e.code();
  } catch (const std::exception& e) {
    const std::string type = detail::current_exception_type();
    std::fprintf(stderr, "Process %s (pid %d): uncaught %s: %s\n", name.c_str(), pid, type.c_str(), e.what());
    code = 1;
  } catch (...) {
    const std::string type = detail::current_exception_type();
    std::fprintf(stderr, "Process %s (pid %d): uncaught %s\n", name.c_str(), pid, type.c_str());
    code = 1;
  }
  flush_std_streams();
  ::_exit(code);
}

int track_child(pid_t pid, const std::string& what) {
  const int pidfd = sys::pidfd_open(pid);
  if (pidfd < 0 && errno != ESRCH) {
    // Without a pidfd the child cannot be tracked safely: do not leave it running untracked.
    const int err = errno;
    ::kill(pid, SIGKILL);
    (void)sys::retry_eintr([&] { return ::waitpid(pid, nullptr, 0); });
    throw Error(err, "cannot track",
                what + (err == ENOSYS ? " (pidfd_open: Linux 5.4 or later is needed)" : " (pidfd_open)"));
  }
  return pidfd;
}

}  // namespace detail

Process::Process(std::unique_ptr<detail::ProcessTarget> target) : state_(std::make_shared<ProcessState>()) {
  install_fork_handlers();
  Self& me = self();
  state_->target = std::move(target);
  state_->identity = me.identity;
  state_->identity.push_back(me.counter.fetch_add(1, std::memory_order_relaxed) + 1);
  state_->name = "Process-";
  for (std::size_t i = 0; i < state_->identity.size(); ++i) {
    if (i != 0) state_->name += ':';
    state_->name += std::to_string(state_->identity[i]);
  }
}

Process::Process(Process&&) noexcept = default;

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (state_) dispose(*state_);
    state_ = std::move(other.state_);
  }
  return *this;
}

Process::~Process() {
  if (state_) dispose(*state_);
}

Process& Process::set_name(std::string name) {
  state_->name = std::move(name);
  return *this;
}

Process& Process::set_daemon(bool daemon) {
  if (state_->started.load()) {
    throw UsageError("cannot change the daemon flag of " + describe(*state_) +
                     ": it has already been started");
  }
  state_->daemon = daemon;
  return *this;
}

Process& Process::set_start_method(StartMethod method) {
  if (state_->started.load()) {
    throw UsageError("cannot change the start method of " + describe(*state_) +
                     ": it has already been started");
  }
  state_->method = method;
  return *this;
}

StartMethod Process::start_method() const noexcept {
  return state_->method;
}

void Process::start() {
  ProcessState& st = *state_;
  if (st.creator != ::getpid()) {
    throw UsageError("cannot start " + st.name + ": it can only be started by the process that created it");
  }
  if (st.started.exchange(true)) {
    throw UsageError("cannot start " + describe(st) + ": a process can only be started once");
  }
  const ProcessInfo parent = current_process();
  try {
    if (st.method == StartMethod::fork) {
      start_forked(st, parent);
    } else {
      start_fresh(st, parent);
    }
  } catch (...) {
    // Nothing of a child is left: leave the object unstarted, so that it can be started again
    // (and is_alive() or join() do not look for a child that does not exist).
    st.pid = 0;
    st.started.store(false);
    throw;
  }
  for (const int fd : {st.pidfd, st.status_fd}) {
    if (fd >= 0) sys::close_in_children(fd);  // a grandchild must not hold it
  }
  std::scoped_lock hold{g_children_mutex};
  g_children.push_back(state_);
}

void Process::join() {
  (void)join_state(*state_, Clock::time_point::max());
}

bool Process::join_until(detail::Deadline deadline) {
  return join_state(*state_, deadline);
}

bool Process::is_alive() const {
  ProcessState& st = *state_;
  if (!st.started.load()) return false;
  if (st.pid == ::getpid()) return true;
  check_started_here(st, "check whether it is alive:");
  return !reap(st);
}

std::optional<int> Process::exitcode() const {
  ProcessState& st = *state_;
  if (!st.started.load() || st.pid == ::getpid()) return std::nullopt;
  check_started_here(st, "read the exit code of");
  if (!reap(st)) return std::nullopt;
  std::scoped_lock hold{st.mutex};
  return st.exitcode;
}

void Process::send_signal(int signo, const char* what) {
  ProcessState& st = *state_;
  check_started_here(st, what);
  if (reap(st)) return;  // already ended: nothing to signal, as in Python
  if (sys::pidfd_send_signal(st.pidfd, signo) == -1 && errno != ESRCH) {
    sys::throw_errno((std::string("cannot ") + what).c_str(), describe(st));
  }
}

void Process::terminate() {
  send_signal(SIGTERM, "terminate");
}
void Process::kill() {
  send_signal(SIGKILL, "kill");
}

std::optional<pid_t> Process::pid() const noexcept {
  if (!state_ || !state_->started.load()) return std::nullopt;
  return state_->pid;
}

int Process::sentinel() const noexcept {
  return state_ ? state_->pidfd : -1;
}
const std::string& Process::name() const noexcept {
  return state_->name;
}
bool Process::daemon() const noexcept {
  return state_->daemon;
}

void exit(int code) {
  if (t_running_target) throw SystemExit(code);
  std::exit(code);
}

ProcessInfo current_process() {
  const Self& me = self();
  return ProcessInfo{me.name, ::getpid(), me.daemon};
}

std::optional<ProcessInfo> parent_process() {
  return self().parent;
}

std::vector<ProcessInfo> active_children() {
  std::vector<ProcessInfo> alive;
  std::scoped_lock hold{g_children_mutex};
  std::erase_if(g_children, [&](const std::weak_ptr<ProcessState>& weak) {
    const auto st = weak.lock();
    if (!st) return true;  // its Process was destroyed, which disposed of the child
    try {
      if (reap(*st)) return true;
    } catch (const Error&) {
      return true;  // reaped elsewhere: not ours to report any more
    }
    alive.push_back(ProcessInfo{st->name, st->pid, st->daemon});
    return false;
  });
  return alive;
}

int cpu_count() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

}  // namespace mproc
