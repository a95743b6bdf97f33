// A Pool worker started by spawn or forkserver: a fresh copy of the program, which opens the
// pool's named queues and relocates the code addresses the chunks carry
// (docs/design/start-methods.md, "Pool").
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>

#include "mproc/error.hpp"
#include "mproc/start_method.hpp"
#include "pool/worker.hpp"
#include "process/start.hpp"

namespace mproc::detail {

std::string Travel<WakeFd>::encode(const WakeFd& wake, std::vector<int>& fds) {
  return encode_descriptor(wake.fd, fds);
}

WakeFd Travel<WakeFd>::decode(const std::string& bytes) {
  return WakeFd{decode_descriptor(bytes, "the Pool's wake-up descriptor")};
}

void spawned_worker(const std::string& tasks_name, const std::string& results_name,
                    SpawnedWorkerConfig config, WakeFd wake) {
  // The same executable, loaded elsewhere: every code address moves by the same amount.
  g_code_delta = static_cast<std::intptr_t>(code_anchor() - config.anchor);
  auto tasks = Queue<Bytes>::open(tasks_name);
  auto results = Queue<Bytes>::open(results_name);
  PoolOptions options;
  // An address of the pool's process, as an integer: relocate() makes it one of this process.
  options.initializer =
      relocate(reinterpret_cast<void (*)()>(config.initializer));  // NOLINT(performance-no-int-to-ptr)
  options.maxtasksperchild = config.maxtasksperchild;
  worker_main(tasks, results, options, config.slot, wake.fd);
}

std::uintptr_t code_anchor() noexcept {
  return reinterpret_cast<std::uintptr_t>(&code_anchor);
}

std::string pool_queue_prefix(StartMethod method) {
  if (method == StartMethod::fork) return {};
  static std::atomic<unsigned> pools{0};
  return "mproc-pool-" + std::to_string(::getpid()) + "-" + std::to_string(++pools);
}

Queue<Bytes> make_pool_queue(const std::string& name, std::size_t bytes) {
  if (name.empty()) return Queue<Bytes>(bytes);
  return Queue<Bytes>::create(name, bytes);
}

void unlink_pool_queue(const std::string& name) noexcept {
  if (name.empty()) return;
  try {
    Queue<Bytes>::unlink(name);
  } catch (const std::exception&) {  // already gone (its last user removed it): nothing to do
  }
}

void check_worker_setup(StartMethod method, void (*initializer)()) {
  if (method == StartMethod::fork) return;
  const std::string with =
      std::string("mproc::Pool: with the ") + start_method_name(method) + " start method, ";
  if (!init_called()) {
    throw UsageError(with + "mproc::init(argc, argv) must be called first; make it the first line of main");
  }
  if (initializer != nullptr && !in_anchor_module(reinterpret_cast<const void*>(initializer))) {
    throw UsageError(with +
                     "PoolOptions::initializer must be a function of the program's executable, not of a "
                     "shared library");
  }
}

void check_task_code(StartMethod method, const void* runner) {
  if (method == StartMethod::fork || in_anchor_module(runner)) return;
  throw UsageError(
      std::string("cannot submit to a Pool started with the ") + start_method_name(method) +
      " start method: the task was compiled into a shared library, whose code a spawned worker cannot "
      "locate; submit code of the program's executable, or use the fork start method");
}

bool in_anchor_module(const void* code) noexcept {
  Dl_info anchor{};
  Dl_info other{};
  if (::dladdr(reinterpret_cast<const void*>(&code_anchor), &anchor) == 0 || ::dladdr(code, &other) == 0) {
    return false;
  }
  return anchor.dli_fbase == other.dli_fbase;
}

}  // namespace mproc::detail

MPROC_ENTRY_NAMED("mproc::Pool worker", mproc::detail::spawned_worker);
