#pragma once
/// mproc::redis::Pool — a Pool whose workers run on any machine that reaches a Redis server.
///
///   long square(long x) { return x * x; }
///   MPROC_REDIS_TASK(square);                       // in every program that runs or submits it
///
///   // a worker program, started on each machine as `my_tasks worker redis://10.0.0.5/pool`:
///   MPROC_REDIS_WORKER_MAIN()   // main(): worker_main(argc, argv), see below
///
///   // anywhere:
///   mproc::redis::Pool pool("redis://10.0.0.5/pool");
///   std::vector<long> sq = pool.map<long>("square", std::vector<long>{1, 2, 3});
///   long nine = pool.apply_async<long>("square", 3L).get();
///   for (long y : pool.imap_unordered<long>("square", inputs)) progress(y);  // as they complete
///
/// Functions cannot travel between binaries, so tasks are registered by name
/// (MPROC_REDIS_TASK) in the worker's program; arguments and results travel with the queue
/// codec (the same T rules as mproc::Queue<T>). Tasks go through a JoinableQueue
/// (`<name>-tasks`); each Pool object gets its results through a Queue of its own
/// (`<name>-results-<random>`, removed by its destructor).
///
/// If a worker dies mid-task (or takes longer than `visibility_timeout`): the task is
///   reclaimed and run again by another worker — at least once, so a task may run twice (make
///   tasks idempotent) — at most `max_attempts` times; then the caller's get() throws
///   mproc::WorkerDied (exit code and pid unknown across machines: 0). Never a hang: a caller
///   waits in slices and checks the dead-letter stream between them.
/// A task that throws: the caller's get() throws mproc::RemoteError with the exception's type
///   and message, as the shared-memory Pool does. An unknown task name: RemoteError too.
///   map() and imap_unordered() put the task's input position in the error (index()).
/// Thread safety: one thread per Pool object. Process safety: one object per process.
#include <chrono>
#include <cstddef>
#include <exception>
#include <iterator>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mproc/detail/codec.hpp"
#include "mproc/detail/position_iterator.hpp"
#include "mproc/pool.hpp"
#include "mproc/redis/address.hpp"

namespace mproc::redis {

struct PoolOptions {
  std::chrono::milliseconds visibility_timeout{30000};
  unsigned max_attempts = 3;
  Options connection{};
};

namespace detail {

using TaskFn = std::function<std::string(const std::string&)>;
void register_task(const std::string& name, TaskFn fn);

template <class T>
std::string encode_string(const T& v) {
  const mproc::detail::Encoded e = mproc::detail::encode(v);
  return {static_cast<const char*>(e.data), e.size};
}

[[noreturn]] void throw_bad_value(const std::string& type);

template <class T>
T decode_string(const std::string& s) {
  T out{};
  const mproc::detail::RecordView r{reinterpret_cast<const std::byte*>(s.data()), s.size(), nullptr, 0,
                                    mproc::detail::type_tag<T>()};
  if (!mproc::detail::decode(r, out)) throw_bad_value(mproc::detail::type_name<T>());
  return out;
}

}  // namespace detail

/// Registers `fn` under `name` for workers of this program. Use MPROC_REDIS_TASK.
template <class R, class A>
bool register_task(const std::string& name, R (*fn)(A)) {
  using Arg = std::remove_cvref_t<A>;
  detail::register_task(name, [fn](const std::string& in) {
    return detail::encode_string<R>(fn(detail::decode_string<Arg>(in)));
  });
  return true;
}

// `fn` names a function: it is pasted into an identifier and a string, so it cannot be
// parenthesised.
#define MPROC_REDIS_TASK(fn)                                 \
  [[maybe_unused]] static const bool mproc_redis_task_##fn = \
      ::mproc::redis::register_task(#fn, &fn)  // NOLINT(bugprone-macro-parentheses)

/// Runs tasks from the pool at `address` until its task queue is closed (Pool::close()).
/// Returns 0 then; throws what the connection throws.
int run_worker(std::string_view address, const PoolOptions& options = {});

/// The main() of a worker program, in one line: the program's own tasks (MPROC_REDIS_TASK)
/// are what it can run, so the worker is the user's program, not the mproc tool. Parses
///   PROGRAM [worker] ADDRESS [--processes N] [--max-attempts N] [--visibility-timeout MS]
///                            [--help]
/// runs N worker processes (default 1; N > 1: forked, each run_worker(ADDRESS)) until the
/// pool is closed, and returns the exit code: 0 when every worker ended because the pool was
/// closed; 1 when a worker failed (its message on stderr; a worker killed by a signal is not
/// replaced: its task is re-run by another worker, and a supervisor such as systemd restarts
/// the program); 2 for a usage error or a bad address (the message, then the usage, on stderr).
/// --help prints the usage and the registered task names on stdout and returns 0.
int worker_main(int argc, char** argv);

// Defines main() as worker_main(argc, argv).
#define MPROC_REDIS_WORKER_MAIN()                   \
  int main(int argc, char** argv) {                 \
    return ::mproc::redis::worker_main(argc, argv); \
  }

class Pool;

/// What Pool::imap_unordered returns: a single-pass range of the results in the order they
/// complete, whose iterator blocks for the next one. As <mproc/pool.hpp>'s ImapRange: `*it`
/// waits the first time, then gives the same result until `++it`; a task that failed throws
/// (RemoteError or WorkerDied, with its input position) from `*it` when its turn comes, each
/// time, and the iteration may go on past it; a lost connection or a result that does not
/// decode as R is that position's failure likewise. The range refers to its Pool: it must not
/// outlive it, and one thread iterates it.
template <class R>
class ImapUnorderedRange {
 public:
  using iterator = mproc::detail::PositionIterator<ImapUnorderedRange, R>;

  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }
  /// How many results the range yields: one per input.
  std::size_t size() const noexcept { return size_; }

 private:
  friend iterator;
  friend class Pool;
  ImapUnorderedRange(Pool* pool, const std::vector<std::string>& ids) : pool_(pool), size_(ids.size()) {
    for (std::size_t i = 0; i < ids.size(); ++i) outstanding_.emplace(ids[i], i);
  }
  R& current(std::size_t n);

  Pool* pool_;
  std::size_t size_;
  std::map<std::string, std::size_t> outstanding_;  // task id -> input position, not yet yielded
  std::optional<R> current_;                        // the n-th result, once taken
  std::exception_ptr error_;                        // or the n-th failure
  std::size_t current_n_ = static_cast<std::size_t>(-1);
};

class Pool {
 public:
  explicit Pool(std::string_view address, PoolOptions options = {});
  Pool(Pool&&) noexcept;
  Pool& operator=(Pool&&) noexcept;
  ~Pool();

  template <class R>
  class AsyncResult {
   public:
    /// Waits for the result. Throws RemoteError (the task threw) or WorkerDied.
    R get() { return detail::decode_string<R>(pool_->wait(id_, index_)); }

   private:
    friend class Pool;
    AsyncResult(Pool* pool, std::string id, std::size_t index)
        : pool_(pool), id_(std::move(id)), index_(index) {}
    Pool* pool_;
    std::string id_;
    std::size_t index_;
  };

  template <class R, class A>
  AsyncResult<R> apply_async(const std::string& task, const A& arg) {
    return AsyncResult<R>(this, submit(task, detail::encode_string(arg)), 0);
  }
  template <class R, class A>
  R apply(const std::string& task, const A& arg) {
    return apply_async<R>(task, arg).get();
  }
  /// Submits every argument, then returns the results in order.
  template <class R, class A>
  std::vector<R> map(const std::string& task, const std::vector<A>& args) {
    std::vector<std::string> encoded;
    encoded.reserve(args.size());
    for (const A& a : args) encoded.push_back(detail::encode_string(a));
    const std::vector<std::string> ids = submit_many(task, encoded);
    std::vector<R> out;
    out.reserve(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) out.push_back(detail::decode_string<R>(wait(ids[i], i)));
    return out;
  }

  /// Submits every argument (one put_many), then yields the results as they complete: by
  /// whichever worker, on whichever machine, finishes first. See ImapUnorderedRange.
  template <class R, class A>
  ImapUnorderedRange<R> imap_unordered(const std::string& task, const std::vector<A>& args) {
    std::vector<std::string> encoded;
    encoded.reserve(args.size());
    for (const A& a : args) encoded.push_back(detail::encode_string(a));
    return ImapUnorderedRange<R>(this, submit_many(task, encoded));
  }

  /// Closes the task queue: workers finish what is queued and exit.
  void close();

 private:
  template <class R>
  friend class ImapUnorderedRange;
  /// The encoded result of whichever task of `outstanding` completes first (removed from it),
  /// or the exception it became (RemoteError, WorkerDied, with its input position).
  std::string wait_any(std::map<std::string, std::size_t>& outstanding);
  std::string submit(const std::string& task, std::string arg);
  std::vector<std::string> submit_many(const std::string& task, const std::vector<std::string>& args);
  /// The encoded result of task `id`, or the exception it became.
  std::string wait(const std::string& id, std::size_t index);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

template <class R>
R& ImapUnorderedRange<R>::current(std::size_t n) {
  if (n != current_n_) {
    current_.reset();
    error_ = nullptr;
    current_n_ = n;
    try {
      current_.emplace(detail::decode_string<R>(pool_->wait_any(outstanding_)));
    } catch (...) {
      // RemoteError and WorkerDied: that task's outcome. Anything else (a lost connection, a
      // result that does not decode as R) is this position's failure too: kept, so that `*it`
      // throws it again instead of reading an empty result.
      error_ = std::current_exception();
    }
  }
  if (error_) std::rethrow_exception(error_);
  return *current_;
}

}  // namespace mproc::redis
