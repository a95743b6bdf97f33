#pragma once
/// mproc::Pool — a pool of worker processes, as Python's multiprocessing.Pool, that fails loudly
/// instead of hanging when a worker dies.
///
///   int square(int x) { return x * x; }
///   mproc::Pool pool(4);                                   // 4 workers (default: cpu_count())
///   std::vector<int> r = pool.map(square, std::vector{1, 2, 3});   // {1, 4, 9}, input order
///   auto a = pool.apply_async(square, 7);                  // AsyncResult<int>
///   int x = a.get();                                       // 49; a.get(1s) -> std::optional
///   for (int y : pool.imap_unordered(square, inputs)) progress(y);  // as they complete
///
/// What can be submitted: a worker is another process, so a task travels as bytes — the callable
///   and its arguments. The callable must be a plain function, a captureless lambda or stateless
///   function object, or a trivially copyable function object (a lambda capturing numbers by
///   value), which is copied byte for byte. Anything else is a compile-time error. A lambda that
///   captures by reference compiles (it is trivially copyable) but reads the worker's copy of
///   the referenced object as it was when the worker was forked: pass data as arguments.
///   Arguments and results: any type Queue<T> carries (docs in <mproc/queue.hpp>).
/// Errors: an exception thrown by a task reaches get()/map()/the imap iterator as
///   mproc::RemoteError carrying its type name, message and input position; the other tasks are
///   unaffected. map() reports the failure with the lowest input position, as Python does.
/// Worker death: a worker that dies mid-task (SIGKILL, abort, segfault) fails exactly the tasks
///   it held with mproc::WorkerDied (exit code or signal), never a hang; the pool starts a
///   replacement and keeps serving. (Python's Pool hangs forever here; ProcessPoolExecutor fails
///   every pending future and the whole executor with BrokenProcessPool.) See
///   docs/design/pool.md for why no task can be lost silently. If a worker cannot be started
///   (fork or its queue fails: out of processes or memory), the pool stops itself: unfinished
///   tasks, and later submissions, fail with mproc::PoolTerminated saying why.
/// Lifetime: close() stops submissions and lets queued work finish; terminate() kills the workers
///   and fails unfinished tasks with mproc::PoolTerminated; join() waits for the workers to exit
///   after either. The destructor terminates and joins, like Python's `with Pool() as p:` — it
///   never hangs; call close() and join() first to let queued work finish.
/// Thread safety: every member may be called from any thread. Results (AsyncResult, imap
///   ranges) may outlive the pool; their tasks then fail with PoolTerminated.
/// Workers are started (forked, by default: see the constructors) by the pool's dispatcher
///   thread, at start and whenever one is replaced, so (as with Python's fork start method) forked
///   ones inherit what the parent has open at that moment —
///   including the ends of your Pipes: a peer waiting for end of stream on a Pipe whose other end
///   a worker inherited will keep waiting while that worker lives.
/// Timeouts: monotonic clock; an expired get(timeout) leaves the task and the pool running.
#include <sys/types.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/deadline.hpp"
#include "mproc/detail/pool_job.hpp"
#include "mproc/detail/position_iterator.hpp"
#include "mproc/error.hpp"
#include "mproc/start_method.hpp"

namespace mproc {

/// An exception thrown by a task in a worker process, as seen by the caller.
class RemoteError : public std::runtime_error {
 public:
  RemoteError(std::string type, std::string message, std::size_t index);
  /// The exception's type in the worker ("std::invalid_argument").
  const std::string& type() const noexcept { return type_; }
  const std::string& message() const noexcept { return message_; }
  /// The input position of the task that failed (0 for apply_async).
  std::size_t index() const noexcept { return index_; }

 private:
  std::string type_, message_;
  std::size_t index_;
};

/// The worker running a task died (killed, crashed, or exited) before finishing it.
class WorkerDied : public RemoteError {
 public:
  WorkerDied(int exitcode, pid_t pid, std::size_t index);
  /// The worker's exit code: -N when killed by signal N.
  int exitcode() const noexcept { return exitcode_; }

 private:
  int exitcode_;
};

/// The pool was terminated (or destroyed) before the task finished.
class PoolTerminated : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The constructor throws mproc::UsageError for a value outside the ranges below.
struct PoolOptions {
  int processes = 0;                ///< workers, at least 1; 0: cpu_count()
  void (*initializer)() = nullptr;  ///< run once in each worker when it starts
  int maxtasksperchild = 0;         ///< chunks a worker runs before it is replaced; 0: no limit
  /// Each worker's task queue, 1 byte to 16 GiB (rounded up as Queue's capacity is: a power of
  /// two, at least 4 KiB); it bounds a chunk's encoded arguments. The results queue, shared by
  /// the workers, is this size or 1 MiB, whichever is larger; it bounds a chunk's encoded
  /// results and a task's exception (a longer exception message arrives truncated).
  std::size_t queue_bytes = std::size_t{1} << 20;
};

/// The result of apply_async (AsyncResult<R>) or map_async (AsyncResult<std::vector<R>>).
template <class R>
class AsyncResult {
 public:
  /// Blocks until done; returns the result or throws RemoteError / WorkerDied / PoolTerminated.
  R get() {
    job_->wait_all(detail::Deadline::forever());
    return take_();
  }
  /// Waits at most `timeout`: empty (for void: false) if not done yet; the task keeps running.
  auto get_for(detail::Timeout timeout) { return get_until(timeout); }
  /// Waits until `deadline` (a time point of any clock, see <mproc/detail/deadline.hpp>).
  auto get_until(detail::Deadline deadline) {
    const bool done = job_->wait_all(deadline);
    if constexpr (std::is_void_v<R>) {
      if (done) take_();
      return done;
    } else {
      return done ? std::optional<R>(take_()) : std::nullopt;
    }
  }
  /// Python's spelling of get_for(): `a.get(1s)`.
  auto get(detail::Timeout timeout) { return get_until(timeout); }

  void wait() { job_->wait_all(detail::Deadline::forever()); }
  /// Whether it is done, waiting at most `timeout`.
  bool wait_for(detail::Timeout timeout) { return job_->wait_all(timeout); }
  bool wait_until(detail::Deadline deadline) { return job_->wait_all(deadline); }
  /// Python's spelling of wait_for().
  bool wait(detail::Timeout timeout) { return job_->wait_all(timeout); }
  bool ready() const { return job_->ready(); }
  /// Whether it completed without failing; mproc::UsageError if not ready yet (as Python).
  bool successful() const { return job_->successful(); }

 private:
  friend class Pool;
  AsyncResult(std::shared_ptr<detail::JobBase> job, std::function<R()> take)
      : job_(std::move(job)), take_(std::move(take)) {}

  std::shared_ptr<detail::JobBase> job_;
  std::function<R()> take_;
};

/// What imap / imap_unordered return: a range whose iterator blocks for the next result.
/// A failed task throws from the iterator when its turn comes, as Python's next() raises.
/// Single pass. `*it` blocks the first time, then gives the same result until `++it` (a failed
/// task throws each time): the range holds the current result, so `*it` is an R& into it —
/// `for (const auto& r : ...)` copies nothing, `std::move(*it)` takes the result over, and
/// `for (R r : ...)` copies it.
template <class R>
class ImapRange {
 public:
  using iterator = detail::PositionIterator<ImapRange, R>;

  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }
  std::size_t size() const { return job_->size(); }

 private:
  friend iterator;
  friend class Pool;
  ImapRange(std::shared_ptr<detail::Job<R>> job, bool ordered) : job_(std::move(job)), ordered_(ordered) {}
  /// The n-th result, taken from the job once and kept until another is asked for.
  R& current(std::size_t n) {
    if (current_n_ != n || !current_) {
      current_.reset();
      current_n_ = n;
      current_.emplace(ordered_ ? job_->take_item(n) : job_->take_arrival(n));
    }
    return *current_;
  }

  std::shared_ptr<detail::Job<R>> job_;
  bool ordered_;
  std::optional<R> current_;  // the result at position current_n_, once taken
  std::size_t current_n_ = 0;
};

class Pool {
 public:
  /// Starts `processes` workers (0: cpu_count()).
  explicit Pool(int processes = 0) : Pool(PoolOptions{processes, nullptr, 0, std::size_t{1} << 20}) {}
  explicit Pool(const PoolOptions& options) : Pool(options, get_start_method()) {}
  /// Workers started with `method` (<mproc/start_method.hpp>; the others use the process-wide
  /// default when the pool is constructed). Under spawn and forkserver
  /// (docs/design/start-methods.md, "Pool") the pool's queues are named objects (tracked:
  /// removed once the pool and its workers are gone) and a worker is a fresh copy of the
  /// program that finds a task's code at the same offset in the same executable: tasks and the
  /// initializer must be code of the program's executable, not of a shared library (UsageError),
  /// a function object's bytes must not hold pointers (they would point into the parent), and
  /// the program must call mproc::init.
  Pool(const PoolOptions& options, StartMethod method)
      : core_(std::make_unique<detail::PoolCore>(options, method)) {}
  Pool(int processes, StartMethod method)
      : Pool(PoolOptions{processes, nullptr, 0, std::size_t{1} << 20}, method) {}
  /// terminate() + join(): never hangs (see the file comment).
  ~Pool() = default;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// f(args...) in a worker; the result, or the task's failure as an exception.
  template <class F, class... Args>
  auto apply(F f, Args... args) {
    return apply_async(f, std::move(args)...).get();
  }

  template <class F, class... Args>
  auto apply_async(F f, Args... args) {
    check_callable<F>();
    using Tuple = std::tuple<std::decay_t<Args>...>;
    using R = std::invoke_result_t<F&, std::decay_t<Args>...>;
    check_types<R, Tuple>();
    auto job = std::make_shared<detail::Job<R>>(1);
    const Tuple items[1] = {Tuple(std::move(args)...)};
    core_->submit(job, detail::encode_job<F, Tuple>(f, items, 1));
    return AsyncResult<R>(job, [job]() -> R {
      if constexpr (std::is_void_v<R>) {
        (void)job->take_all();
      } else {
        return std::move(job->take_all().front());
      }
    });
  }

  /// f applied to every input, results in input order. chunksize 0: Python's heuristic
  /// (inputs / (4 × processes), rounded up).
  template <class F, class Range>
  auto map(F f, const Range& inputs, std::size_t chunksize = 0) {
    return map_async(f, inputs, chunksize).get();
  }

  template <class F, class Range>
  auto map_async(F f, const Range& inputs, std::size_t chunksize = 0) {
    using Arg = std::ranges::range_value_t<Range>;
    return submit_many<F, std::tuple<Arg>>(f, inputs, chunksize);
  }

  /// Like map, but each input is a tuple of arguments: f(std::get<0>(t), std::get<1>(t), ...).
  template <class F, class Range>
  auto starmap(F f, const Range& inputs, std::size_t chunksize = 0) {
    using Tuple = std::ranges::range_value_t<Range>;
    return submit_many<F, Tuple>(f, inputs, chunksize).get();
  }

  /// Lazily, in input order: iterate with a range-for while work is still running.
  /// chunksize defaults to 1, as in Python: every input then makes a round trip of its own,
  /// which for small tasks is tens of times slower than map(), or worse. Pass a larger one when
  /// tasks are short — `pool.imap(f, inputs, 64)` — results still come one by one.
  template <class F, class Range>
  auto imap(F f, const Range& inputs, std::size_t chunksize = 1) {
    return submit_lazy<F>(f, inputs, chunksize, true);
  }
  /// Lazily, in completion order (of chunks). chunksize: as for imap — the default of 1 is slow
  /// for small tasks; `pool.imap_unordered(f, inputs, 64)`.
  template <class F, class Range>
  auto imap_unordered(F f, const Range& inputs, std::size_t chunksize = 1) {
    return submit_lazy<F>(f, inputs, chunksize, false);
  }

  /// No more submissions; queued work finishes, then the workers exit.
  void close() { core_->close(); }
  /// Kills the workers now; unfinished tasks fail with PoolTerminated.
  void terminate() { core_->terminate(); }
  /// Waits until the workers have exited. mproc::UsageError before close() or terminate().
  void join() { core_->join(); }
  int processes() const noexcept { return core_->processes(); }

 private:
  template <class F>
  static constexpr void check_callable() {
    static_assert(detail::is_sendable_callable_v<F>,
                  "mproc::Pool: a task must be a plain function, a captureless lambda, or a "
                  "trivially copyable function object. A worker is another process and receives "
                  "the callable as bytes; pass what the task needs as arguments instead of "
                  "capturing it.");
  }
  template <class R, class Tuple>
  static constexpr void check_types() {
    static_assert(std::is_void_v<R> || detail::Message<R>,
                  "mproc::Pool: the task's result must be a type Queue<T> can carry");
    static_assert(detail::all_messages<Tuple>::value,
                  "mproc::Pool: every argument must be a type Queue<T> can carry");
  }

  std::size_t pick_chunksize(std::size_t items, std::size_t chunksize) const {
    if (chunksize != 0) return chunksize;
    const std::size_t per = static_cast<std::size_t>(processes()) * 4;
    return std::max<std::size_t>(1, (items + per - 1) / per);
  }

  template <class F, class Tuple, class Range>
  auto submit_many(F f, const Range& inputs, std::size_t chunksize) {
    check_callable<F>();
    using R = decltype(std::apply(f, std::declval<Tuple>()));
    static_assert(!std::is_void_v<R>, "mproc::Pool::map: the task must return a value; use apply_async");
    check_types<R, Tuple>();
    const std::size_t n = static_cast<std::size_t>(std::ranges::distance(inputs));
    auto job = std::make_shared<detail::Job<R>>(n);
    core_->submit(job, detail::encode_job<F, Tuple>(f, inputs, pick_chunksize(n, chunksize)));
    return AsyncResult<std::vector<R>>(job, [job] { return job->take_all(); });
  }

  template <class F, class Range>
  auto submit_lazy(F f, const Range& inputs, std::size_t chunksize, bool ordered) {
    check_callable<F>();
    using Arg = std::ranges::range_value_t<Range>;
    using Tuple = std::tuple<Arg>;
    using R = std::invoke_result_t<F&, Arg>;
    static_assert(!std::is_void_v<R>, "mproc::Pool::imap: the task must return a value");
    check_types<R, Tuple>();
    const std::size_t n = static_cast<std::size_t>(std::ranges::distance(inputs));
    auto job = std::make_shared<detail::Job<R>>(n);
    core_->submit(job, detail::encode_job<F, Tuple>(f, inputs, std::max<std::size_t>(1, chunksize)));
    return ImapRange<R>(job, ordered);
  }

  std::unique_ptr<detail::PoolCore> core_;
};

}  // namespace mproc
