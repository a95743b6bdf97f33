// The spawn start method: the entry-point table, mproc::init, the child spec and the exec of
// /proc/self/exe (docs/design/start-methods.md).
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "mproc/detail/codec.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/error.hpp"
#include "mproc/start_method.hpp"
#include "os/sys.hpp"
#include "process/start.hpp"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX declares it nowhere

namespace mproc {

namespace detail {

namespace {

struct EntryPoint {
  std::string name;
  ErasedFn fn;
  EntryInvoker invoke;
};

// Filled by static initialisers before main, read by start() and by init() in a child.
struct EntryTable {
  std::mutex mutex;
  std::vector<EntryPoint> entries;  // guarded by mutex
};

EntryTable& table() {
  static EntryTable t;
  return t;
}

std::atomic<bool> g_init_called{false};
std::vector<std::string>& saved_argv() {
  static std::vector<std::string> argv;  // written once, by init(), before any start()
  return argv;
}

using SpecTuple = std::tuple<std::string, std::string, std::vector<int>, bool, std::string, int, bool,
                             std::vector<std::string>, std::vector<int>>;

std::string encode_spec(const ChildSpec& s) {
  const SpecTuple t{s.entry,         s.name,        s.identity,
                    s.daemon,        s.parent.name, static_cast<int>(s.parent.pid),
                    s.parent.daemon, s.args,        s.fds};
  const Encoded e = encode(t);
  return std::string(static_cast<const char*>(e.data), e.size);
}

ChildSpec decode_spec(const std::string& bytes) {
  SpecTuple t;
  const RecordView r{reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), nullptr, 0,
                     type_tag<SpecTuple>()};
  if (!decode(r, t)) throw_undecodable("child spec", bytes.size(), "not a child spec");
  ChildSpec s;
  s.entry = std::move(std::get<0>(t));
  s.name = std::move(std::get<1>(t));
  s.identity = std::move(std::get<2>(t));
  s.daemon = std::get<3>(t);
  s.parent = ProcessInfo{std::move(std::get<4>(t)), static_cast<pid_t>(std::get<5>(t)), std::get<6>(t)};
  s.args = std::move(std::get<7>(t));
  s.fds = std::move(std::get<8>(t));
  return s;
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = sys::retry_eintr([&] { return ::read(fd, buf, sizeof buf); });
    if (n < 0) sys::throw_errno("cannot read the child spec from descriptor", std::to_string(fd));
    if (n == 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

const EntryPoint* find_entry(const std::string& name) {
  EntryTable& t = table();
  std::scoped_lock hold{t.mutex};
  for (const EntryPoint& e : t.entries) {
    if (e.name == name) return &e;  // entries are never removed: the pointer stays valid
  }
  return nullptr;
}

// The variable's value, as a descriptor, or -1 (and removed from the environment, so that the
// children of this process do not see it).
int take_fd_variable(const char* var) {
  const char* s = std::getenv(var);
  if (s == nullptr) return -1;
  const int fd = std::atoi(s);
  ::unsetenv(var);
  return fd;
}

// The descriptors this child was sent with its arguments, while they are decoded.
struct Received {
  std::vector<int> fds;
  std::vector<bool> taken;
};
// Per thread: a spawned child's one thread fills it before its entry runs; a binding that
// adopts descriptors (AdoptedDescriptors) fills its own thread's.
Received& received() {
  thread_local Received r;
  return r;
}

struct RunContext {
  const EntryPoint* entry;
  const std::vector<std::string>* args;
};

}  // namespace

bool register_entry_erased(std::string_view name, ErasedFn fn, EntryInvoker invoke) noexcept {
  EntryTable& t = table();
  std::scoped_lock hold{t.mutex};
  for (const EntryPoint& e : t.entries) {
    if (e.name != name) continue;
    if (e.fn == fn) return true;
    std::fprintf(stderr, "mproc: the entry point name \"%.*s\" is registered for two different functions\n",
                 static_cast<int>(name.size()), name.data());
    std::abort();
  }
  try {
    t.entries.push_back(EntryPoint{std::string(name), fn, invoke});
  } catch (...) {
    std::fprintf(stderr, "mproc: out of memory registering an entry point\n");
    std::abort();
  }
  return true;
}

const std::string* entry_name_of(ErasedFn fn) noexcept {
  EntryTable& t = table();
  std::scoped_lock hold{t.mutex};
  for (const EntryPoint& e : t.entries) {
    if (e.fn == fn) return &e.name;
  }
  return nullptr;
}

int take_received_fd(std::size_t index) {
  Received& r = received();
  if (index >= r.fds.size()) {
    throw Error(EBADF, "cannot rebuild an argument of this child",
                "(its descriptor " + std::to_string(index) + " was not sent)");
  }
  if (!r.taken[index]) {
    r.taken[index] = true;
    return r.fds[index];
  }
  // The same object passed twice: each argument owns a descriptor of its own.
  const int fd = ::fcntl(r.fds[index], F_DUPFD_CLOEXEC, 0);
  if (fd < 0) sys::throw_errno("cannot rebuild an argument of this child", "(dup)");
  return fd;
}

void close_unclaimed_fds() noexcept {
  Received& r = received();
  for (std::size_t i = 0; i < r.fds.size(); ++i) {
    if (!r.taken[i]) sys::close_fd(r.fds[i]);
  }
  r.fds.clear();
  r.taken.clear();
}

AdoptedDescriptors::AdoptedDescriptors(std::vector<int> fds) {
  Received& r = received();
  std::vector<bool> taken(fds.size(), false);  // the allocation first: nothing below throws
  outer_fds_ = std::exchange(r.fds, std::move(fds));
  outer_taken_ = std::exchange(r.taken, std::move(taken));
}

AdoptedDescriptors::~AdoptedDescriptors() {
  close_unclaimed_fds();
  Received& r = received();
  r.fds = std::move(outer_fds_);
  r.taken = std::move(outer_taken_);
}

bool init_called() noexcept {
  return g_init_called.load();
}

int spec_fd(const ChildSpec& spec) {
  const std::string bytes = encode_spec(spec);
  const int fd = ::memfd_create("mproc-child-spec", MFD_CLOEXEC);
  if (fd < 0) sys::throw_errno("cannot create the child spec of", spec.name);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = sys::retry_eintr([&] { return ::write(fd, bytes.data() + done, bytes.size() - done); });
    if (n < 0) {
      const int err = errno;
      sys::close_fd(fd);
      throw Error(err, "cannot write the child spec of", spec.name);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    const int err = errno;
    sys::close_fd(fd);
    throw Error(err, "cannot rewind the child spec of", spec.name);
  }
  return fd;
}

pid_t exec_self(const char* var, int fd, const std::string& what, const std::vector<int>& inherited) {
  // Everything is built before posix_spawn: glibc starts the child with a vfork-style clone that
  // runs nothing of ours, so this is safe from any thread of a threaded parent.
  std::vector<std::string> env_strings;
  const std::string spawn_prefix = std::string(kSpawnVariable) + "=";
  const std::string server_prefix = std::string(kForkserverVariable) + "=";
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view v(*e);
    if (v.starts_with(spawn_prefix) || v.starts_with(server_prefix)) continue;
    env_strings.emplace_back(v);
  }
  env_strings.push_back(std::string(var) + "=" + std::to_string(fd));
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = saved_argv();
  if (argv_strings.empty()) argv_strings.emplace_back("mproc-child");
  std::vector<char*> argv;
  argv.reserve(argv_strings.size() + 1);
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  if (const int rc = ::posix_spawn_file_actions_init(&actions); rc != 0)
    throw Error(rc, "cannot start", what);
  // dup2 onto itself clears close-on-exec in the child only (glibc 2.29, POSIX 2024).
  int rc = ::posix_spawn_file_actions_adddup2(&actions, fd, fd);
  for (const int f : inherited) {
    if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&actions, f, f);
  }
  // A fresh program starts with no signal blocked, whatever the calling thread blocks (a service
  // often blocks SIGTERM in its threads, to take it with sigwait): terminate() must reach it.
  posix_spawnattr_t attr;
  const int attr_rc = ::posix_spawnattr_init(&attr);
  if (rc == 0) rc = attr_rc;
  sigset_t none;
  sigemptyset(&none);
  if (rc == 0) rc = ::posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0) rc = ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  if (rc == 0) rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, &attr, argv.data(), envp.data());
  if (attr_rc == 0) ::posix_spawnattr_destroy(&attr);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw Error(rc, "cannot start", what + " (exec of /proc/self/exe)");
  return pid;
}

Started spawn_child(const ChildSpec& spec) {
  const int fd = spec_fd(spec);
  pid_t pid = 0;
  try {
    pid = exec_self(kSpawnVariable, fd, spec.name, spec.fds);
  } catch (...) {
    sys::close_fd(fd);
    throw;
  }
  sys::close_fd(fd);
  return Started{pid, track_child(pid, spec.name), -1};
}

void run_spec(int fd, pid_t real_parent, const std::vector<int>* received_fds) noexcept {
  ChildSpec spec;
  try {
    spec = decode_spec(read_all(fd));
    if (received_fds != nullptr) spec.fds = *received_fds;
    if (spec.fds.size() > kMaxTravellingFds) throw Error(E2BIG, "too many descriptors in the child spec");
    // Inherited without close-on-exec (dup2 onto themselves): this child's own children must
    // not inherit them too.
    for (const int f : spec.fds) (void)::fcntl(f, F_SETFD, FD_CLOEXEC);
    received().fds = spec.fds;
    received().taken.assign(spec.fds.size(), false);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mproc: a spawned child (pid %d) cannot read what to run: %s\n", ::getpid(),
                 e.what());
    ::_exit(1);
  }
  sys::close_fd(fd);
  if (spec.daemon) {
    // As for a forked daemon (process.cpp): die with the parent, even if it died already.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != (real_parent != 0 ? real_parent : spec.parent.pid)) ::raise(SIGKILL);
  }
  become_child(spec);
  const EntryPoint* entry = find_entry(spec.entry);
  if (entry == nullptr) {
    std::fprintf(stderr,
                 "mproc: Process %s (pid %d): no entry point named \"%s\" is registered in this program "
                 "(MPROC_ENTRY(%s) must be at namespace scope in a source file linked into it)\n",
                 spec.name.c_str(), ::getpid(), spec.entry.c_str(), spec.entry.c_str());
    ::_exit(1);
  }
  const RunContext ctx{entry, &spec.args};
  run_target_and_exit(
      spec.name,
      [](const void* c) {
        const auto& r = *static_cast<const RunContext*>(c);
        r.entry->invoke(r.entry->fn, *r.args);
      },
      &ctx);
}

}  // namespace detail

namespace {
std::atomic<StartMethod> g_default_method{StartMethod::fork};
}  // namespace

const char* start_method_name(StartMethod method) noexcept {
  switch (method) {
    case StartMethod::fork: return "fork";
    case StartMethod::spawn: return "spawn";
    case StartMethod::forkserver: return "forkserver";
  }
  return "unknown";
}

void set_start_method(StartMethod method) noexcept {
  g_default_method.store(method);
}

StartMethod get_start_method() noexcept {
  return g_default_method.load();
}

void init(int argc, char** argv) {
  detail::keep_anonymous_descriptors();  // anonymous objects can now be sent to children
  auto& saved = detail::saved_argv();
  if (!detail::g_init_called.exchange(true)) {
    for (int i = 0; i < argc; ++i) saved.emplace_back(argv[i] != nullptr ? argv[i] : "");
  }
  if (const int fd = detail::take_fd_variable(detail::kForkserverVariable); fd >= 0) detail::serve_forks(fd);
  if (const int fd = detail::take_fd_variable(detail::kSpawnVariable); fd >= 0)
    detail::run_spec(fd, 0, nullptr);
}

}  // namespace mproc
