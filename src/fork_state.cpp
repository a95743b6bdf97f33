// Process-wide state that must be put right in a forked child: the cached thread id, the fork
// generation, and descriptors that children must not inherit. Registered once with
// pthread_atfork, so it also holds for fork() calls that do not go through mproc::Process.
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "sys.hpp"

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
ForkFence::~ForkFence() { g_fork_fence.unlock(); }

std::uint64_t fork_generation() noexcept { return g_generation.load(std::memory_order_relaxed); }

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
