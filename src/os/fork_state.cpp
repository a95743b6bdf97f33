// Process-wide state that must be put right in a forked child: the cached thread id, the
// thread token and membarrier registration (biased queue sides), the fork generation, and
// descriptors that children must not inherit. Registered once with pthread_atfork, so it also
// holds for fork() calls that do not go through mproc::Process.
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

#include "os/sys.hpp"

namespace mproc::sys {
namespace {

thread_local pid_t t_tid = 0;
std::atomic<std::uint64_t> g_generation{0};

// Guards g_fds. prepare() takes it so that no other thread is half-way through an update at
// the moment of fork; the child then finds it in a known state.
std::mutex g_fds_mutex;
std::vector<int> g_fds;

// Held by a thread that has a descriptor open that no child may inherit even for a moment
// (ForkFence); fork takes it too, so it waits until that thread is done. A plain mutex, not a
// reader-writer lock: glibc's rwlock remembers its writer's tid, which is wrong in the child,
// so it cannot be released there. The fenced sections are short and rare; they may as well
// take turns.
std::mutex g_fork_fence;

void prepare() noexcept {
  g_fork_fence.lock();
  g_fds_mutex.lock();
}
void parent() noexcept {
  g_fds_mutex.unlock();
  g_fork_fence.unlock();
}
void child() noexcept {
  // Only the forking thread exists here, and it holds g_fds_mutex (taken in prepare()).
  t_tid = 0;
  t_thread_token = 0;  // the child's thread is another thread: it draws its own
  g_membarrier_state.store(0, std::memory_order_relaxed);  // a new process: registers itself
  g_generation.fetch_add(1, std::memory_order_relaxed);
  for (int fd : g_fds) close_fd(fd);
  g_fds.clear();
  g_fds_mutex.unlock();
  g_fork_fence.unlock();
}

void install_handlers() {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(prepare, parent, child); });
}

// Installed at load time as well, so that a fork() before any mproc call is also covered.
[[maybe_unused]] const bool g_installed = (install_handlers(), true);

}  // namespace

pid_t current_tid() noexcept {
  if (t_tid == 0) t_tid = ::gettid();
  return t_tid;
}

ForkFence::ForkFence() noexcept {
  install_handlers();
  g_fork_fence.lock();
}
ForkFence::~ForkFence() {
  g_fork_fence.unlock();
}

thread_local std::uint64_t t_thread_token = 0;

std::uint64_t draw_thread_token() noexcept {
  std::uint64_t token = 0;
  if (::getrandom(&token, sizeof token, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof token)) {
    // No entropy yet (early boot): the tid and the time, mixed. Live threads still differ by
    // tid; only a collision with a dead thread's token is less unlikely.
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    token = (std::uint64_t{static_cast<std::uint32_t>(current_tid())} << 32) ^
            static_cast<std::uint64_t>(now) * 0x9E3779B97F4A7C15ull;
  }
  t_thread_token = token | 1;  // never 0, which marks a free slot and "not drawn yet"
  return t_thread_token;
}

std::atomic<int> g_membarrier_state{0};

bool register_membarrier() noexcept {
  const long query = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  const bool ok = query >= 0 && (query & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0 &&
                  ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
  g_membarrier_state.store(ok ? 1 : 2, std::memory_order_release);
  return ok;
}

bool membarrier_global() noexcept {
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0) return true;
  // Not offered here (only a registered process can own a bias, so this is a process that the
  // kernel treats differently): the slow global form covers every process, registered or not.
  return ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0;
}

std::uint64_t fork_generation() noexcept {
  return g_generation.load(std::memory_order_relaxed);
}

void close_in_children(int fd) {
  install_handlers();
  std::scoped_lock hold{g_fds_mutex};
  g_fds.push_back(fd);
}

void stop_closing_in_children(int fd) noexcept {
  std::scoped_lock hold{g_fds_mutex};
  g_fds.erase(std::remove(g_fds.begin(), g_fds.end(), fd), g_fds.end());
}

}  // namespace mproc::sys
