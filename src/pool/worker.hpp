#pragma once
// A Pool worker's loop (pool.cpp) and what a worker started by spawn or forkserver needs to find
// its queues and the pool's code (spawned_worker.cpp; docs/design/start-methods.md, "Pool").
#include <cstdint>
#include <string>
#include <vector>

#include "mproc/pool.hpp"
#include "mproc/queue.hpp"
#include "mproc/start_method.hpp"

namespace mproc::detail {

struct WakeFd;
template <>
struct Travel<WakeFd> {
  static constexpr bool kTravels = true;
  static std::string encode(const WakeFd& wake, std::vector<int>& fds);
  static WakeFd decode(const std::string& bytes);
};

/// Runs in the worker process: takes chunks from `tasks` until it is closed (or
/// maxtasksperchild), runs them and puts the replies on `results`. `wake_fd` (a spawned worker's;
/// -1 for a forked one, whose results queue the dispatcher watches itself): an eventfd written
/// after each reply, which wakes the dispatcher.
void worker_main(Queue<Bytes>& tasks, Queue<Bytes>& results, const PoolOptions& options, std::uint32_t slot,
                 int wake_fd = -1);

/// The dispatcher's wake-up eventfd, as a spawned worker's argument: sent as a descriptor
/// (Travel), owned by the worker's copy. A named results queue has no descriptor the dispatcher
/// could poll, so each worker says when it has put a reply.
struct WakeFd {
  int fd = -1;
};

/// What a spawned worker is told besides its queues' names. Trivially copyable: it travels as
/// bytes.
struct SpawnedWorkerConfig {
  std::uintptr_t anchor;       // code_anchor() in the pool's process
  std::uintptr_t initializer;  // PoolOptions::initializer there, or 0
  std::int32_t maxtasksperchild;
  std::uint32_t slot;
};

/// The entry point of a spawned worker (registered as "mproc::Pool worker").
void spawned_worker(const std::string& tasks, const std::string& results, SpawnedWorkerConfig config,
                    WakeFd wake);

/// The common prefix of a pool's queue names: empty for fork (anonymous queues), else
/// "mproc-pool-<pid>-<n>".
std::string pool_queue_prefix(StartMethod method);
/// An anonymous queue (empty name) or a named one created under `name`.
Queue<Bytes> make_pool_queue(const std::string& name, std::size_t bytes);
/// Removes a pool queue's name once the pool drops the queue (a worker SIGKILLed while holding
/// it could not). No-op for an empty name; errors are ignored (it may be gone already).
void unlink_pool_queue(const std::string& name) noexcept;
/// UsageError unless workers can start with `method`: mproc::init was called, and the
/// initializer is code of the anchor's module.
void check_worker_setup(StartMethod method, void (*initializer)());
/// UsageError unless a task whose chunk runner is `runner` can run in a `method` worker.
void check_task_code(StartMethod method, const void* runner);

/// The address of a function of this library: the fixed point both processes measure from.
std::uintptr_t code_anchor() noexcept;
/// Whether `code` lies in the same loaded module (executable or shared library) as the anchor:
/// only then is it at the same offset from it in a spawned worker.
bool in_anchor_module(const void* code) noexcept;

}  // namespace mproc::detail
