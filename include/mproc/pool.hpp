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
/// Workers are forked by the pool's dispatcher thread, at start and whenever one is replaced, so
///   (as with Python's fork start method) they inherit what the parent has open at that moment —
///   including the ends of your Pipes: a peer waiting for end of stream on a Pipe whose other end
///   a worker inherited will keep waiting while that worker lives.
/// Timeouts: monotonic clock; an expired get(timeout) leaves the task and the pool running.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/codec.hpp"
#include "mproc/detail/deadline.hpp"
#include "mproc/error.hpp"

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

namespace detail {

// ---- encoding values the way Queue does, inside one cereal stream -----------------------------

template <class Archive, class T>
void save_value(Archive& ar, const T& v) {
  if constexpr (is_raw_v<T>) {
    ar(cereal::binary_data(&v, sizeof(T)));
  } else if constexpr (is_contiguous_v<T>) {
    ar(static_cast<std::uint64_t>(v.size()));
    ar(cereal::binary_data(v.data(), v.size() * sizeof(typename contiguous_traits<T>::element)));
  } else {
    ar(v);
  }
}

template <class Archive, class T>
void load_value(Archive& ar, T& v) {
  if constexpr (is_raw_v<T>) {
    ar(cereal::binary_data(&v, sizeof(T)));
  } else if constexpr (is_contiguous_v<T>) {
    std::uint64_t n = 0;
    ar(cereal::make_size_tag(n));  // bounded by the bytes left (RecordInputArchive)
    v.resize(static_cast<std::size_t>(n));
    ar(cereal::binary_data(v.data(), v.size() * sizeof(typename contiguous_traits<T>::element)));
  } else {
    ar(v);
  }
}

template <class Archive, class Tuple>
void save_tuple(Archive& ar, const Tuple& t) {
  std::apply([&](const auto&... e) { (save_value(ar, e), ...); }, t);
}
template <class Archive, class Tuple>
void load_tuple(Archive& ar, Tuple& t) {
  std::apply([&](auto&... e) { (load_value(ar, e), ...); }, t);
}

template <class Tuple>
struct all_messages : std::false_type {};
template <class... A>
struct all_messages<std::tuple<A...>> : std::bool_constant<(Message<std::decay_t<A>> && ...)> {};
template <class A, class B>
struct all_messages<std::pair<A, B>> : std::bool_constant<Message<A> && Message<B>> {};

template <class F>
inline constexpr bool is_sendable_callable_v = std::is_pointer_v<F>
                                                   ? std::is_function_v<std::remove_pointer_t<F>>
                                                   : (std::is_trivially_copyable_v<F>&& std::is_class_v<F>);

template <class F>
F load_callable(const std::byte* bytes) {
  alignas(F) std::byte storage[sizeof(F)];
  std::memcpy(storage, bytes, sizeof(F));
  return *std::launder(reinterpret_cast<F*>(storage));
}

/// What a worker reports for one chunk.
struct ChunkOutcome {
  bool ok = true;
  std::uint32_t failed = 0;  // position in the chunk of the failing item
  std::string type, message;
  std::string results;  // the encoded results of the chunk's items, in order
  /// Set by the worker before the run: the most bytes of results its reply can carry.
  std::size_t results_limit = SIZE_MAX;
  /// When the results went past results_limit at item `failed` (ok is then false and type
  /// empty): that item's encoded size, and the chunk's up to and including it.
  std::size_t oversized_item = 0, oversized_total = 0;
};

/// Runs a chunk in the worker. One instantiation per (callable, argument tuple) type; its
/// address travels in the chunk, valid in the worker because the worker is a fork of this
/// program.
using ChunkRunner = void (*)(const std::byte* callable, const RecordView& args, std::uint32_t count,
                             ChunkOutcome& out);

template <class F, class Tuple>
void run_chunk(const std::byte* callable, const RecordView& args, std::uint32_t count, ChunkOutcome& out) {
  F f = load_callable<F>(callable);
  RecordInputArchive iar(args);
  GrowBuf out_buf;
  std::ostream os(&out_buf);
  {
    cereal::BinaryOutputArchive oar(os);
    for (std::uint32_t i = 0; i < count; ++i) {
      try {
        Tuple t{};
        load_tuple(iar, t);
        using R = decltype(std::apply(f, std::move(t)));
        if constexpr (std::is_void_v<R>) {
          std::apply(f, std::move(t));
        } else {
          const R r = std::apply(f, std::move(t));
          const std::size_t before = out_buf.bytes.size();
          save_value(oar, r);
          if (out_buf.bytes.size() > out.results_limit) {
            // Cannot be sent back: stop here, as for an exception (the worker says why).
            out.ok = false;
            out.failed = i;
            out.oversized_item = out_buf.bytes.size() - before;
            out.oversized_total = out_buf.bytes.size();
            return;
          }
        }
      } catch (...) {
        out.ok = false;
        out.failed = i;
        out.type = current_exception_type();
        out.message = current_exception_message();
        return;
      }
    }
  }
  out.results = std::move(out_buf.bytes);
}

// ---- the parent's view of a job -----------------------------------------------------------------

struct Failure {
  enum Kind : std::uint8_t { task, worker_died, terminated } kind;
  std::size_t index;
  std::string type, message;
  int exitcode = 0;
  pid_t pid = 0;

  [[noreturn]] void raise() const;
};

/// Type-erased part of a job, driven by the dispatcher.
class JobBase {
 public:
  virtual ~JobBase() = default;
  /// The encoded results of items [first, first + count).
  virtual void deliver(std::size_t first, std::uint32_t count, const std::string& results) = 0;
  /// Items [first, first + count) will not produce results.
  virtual void fail(std::size_t first, std::uint32_t count, const Failure& why) = 0;
  virtual bool wait_all(Clock::time_point deadline) = 0;
  virtual bool ready() = 0;
  virtual bool successful() = 0;
};

/// A job's results as they arrive: ordered slots plus an arrival log.
template <class R>
class Job final : public JobBase {
 public:
  using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  explicit Job(std::size_t items) : slots_(items), remaining_(items) {}

  void deliver(std::size_t first, std::uint32_t count, const std::string& results) override {
    std::vector<Stored> decoded(count);
    if constexpr (!std::is_void_v<R>) {
      const RecordView view{reinterpret_cast<const std::byte*>(results.data()), results.size(), nullptr, 0,
                            0};
      RecordInputArchive ar(view);
      for (auto& d : decoded) load_value(ar, d);
    }
    std::scoped_lock hold{mutex_};
    for (std::uint32_t i = 0; i < count; ++i) {
      slots_[first + i] = std::move(decoded[i]);
      arrivals_.push_back(first + i);
    }
    remaining_ -= count;
    changed_.notify_all();
  }

  void fail(std::size_t first, std::uint32_t count, const Failure& why) override {
    std::scoped_lock hold{mutex_};
    for (std::uint32_t i = 0; i < count; ++i) {
      failures_.emplace_back(first + i, why);
      arrivals_.push_back(first + i);
    }
    if (!first_failure_ || why.index < first_failure_->index) first_failure_ = why;
    remaining_ -= count;
    changed_.notify_all();
  }

  // All items done (or failed) by `deadline`?
  bool wait_all(Clock::time_point deadline) override {
    std::unique_lock hold{mutex_};
    return wait_until(hold, deadline, [&] { return remaining_ == 0; });
  }
  bool ready() override {
    std::scoped_lock hold{mutex_};
    return remaining_ == 0;
  }
  bool successful() override {
    std::scoped_lock hold{mutex_};
    if (remaining_ != 0) throw UsageError("successful() called on an AsyncResult that is not ready");
    return !first_failure_;
  }
  /// After wait_all: every result, or the failure with the lowest input position.
  std::vector<Stored> take_all() {
    std::scoped_lock hold{mutex_};
    if (first_failure_) first_failure_->raise();
    std::vector<Stored> out;
    out.reserve(slots_.size());
    for (auto& s : slots_) out.push_back(std::move(*s));
    return out;
  }
  /// Waits for item `i` (ordered iteration).
  Stored take_item(std::size_t i) {
    std::unique_lock hold{mutex_};
    wait_until(hold, Clock::time_point::max(), [&] { return slots_[i].has_value() || failed(i); });
    if (const Failure* f = failure_of(i)) f->raise();
    return std::move(*slots_[i]);
  }
  /// Waits for the n-th item to complete, in completion order.
  Stored take_arrival(std::size_t n) {
    std::unique_lock hold{mutex_};
    wait_until(hold, Clock::time_point::max(), [&] { return arrivals_.size() > n; });
    const std::size_t i = arrivals_[n];
    if (const Failure* f = failure_of(i)) f->raise();
    return std::move(*slots_[i]);
  }
  std::size_t size() const noexcept { return slots_.size(); }

 private:
  template <class Pred>
  bool wait_until(std::unique_lock<std::mutex>& hold, Clock::time_point deadline, Pred pred) {
    if (deadline == Clock::time_point::max()) {
      changed_.wait(hold, pred);
      return true;
    }
    return changed_.wait_until(hold, deadline, pred);
  }
  bool failed(std::size_t i) const { return failure_of(i) != nullptr; }
  const Failure* failure_of(std::size_t i) const {
    for (const auto& [index, f] : failures_)
      if (index == i) return &f;
    return nullptr;
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::optional<Stored>> slots_;
  std::vector<std::size_t> arrivals_;
  std::vector<std::pair<std::size_t, Failure>> failures_;
  std::optional<Failure> first_failure_;
  std::size_t remaining_;
};

class PoolCore;

/// Encodes chunks of one job: the callable once per chunk, then the items' argument tuples.
struct EncodedChunk {
  std::size_t first;
  std::uint32_t count;
  std::string bytes;  // header + callable + arguments
};

struct ChunkHeader {
  std::uint64_t job;
  std::uint64_t first;
  std::uint32_t count;
  std::uint32_t callable_size;
  ChunkRunner runner;
};

template <class F, class Tuple, class Range>
std::vector<EncodedChunk> encode_job(const F& f, const Range& items, std::size_t chunksize) {
  std::vector<EncodedChunk> chunks;
  GrowBuf buf;
  std::ostream os(&buf);
  std::size_t index = 0;
  auto it = std::ranges::begin(items);
  const auto end = std::ranges::end(items);
  while (it != end) {
    buf.bytes.clear();
    ChunkHeader h{0, index, 0, static_cast<std::uint32_t>(sizeof(F)), &run_chunk<F, Tuple>};
    buf.bytes.append(reinterpret_cast<const char*>(&h), sizeof h);
    buf.bytes.append(reinterpret_cast<const char*>(&f), sizeof(F));
    std::uint32_t count = 0;
    {
      cereal::BinaryOutputArchive ar(os);
      for (; it != end && count < chunksize; ++it, ++count) save_tuple(ar, Tuple(*it));
    }
    std::memcpy(buf.bytes.data() + offsetof(ChunkHeader, count), &count, sizeof count);
    chunks.push_back(EncodedChunk{index, count, buf.bytes});
    index += count;
  }
  return chunks;
}

}  // namespace detail

/// The result of apply_async (AsyncResult<R>) or map_async (AsyncResult<std::vector<R>>).
template <class R>
class AsyncResult {
 public:
  /// Blocks until done; returns the result or throws RemoteError / WorkerDied / PoolTerminated.
  R get() {
    job_->wait_all(detail::Clock::time_point::max());
    return take_();
  }
  /// Waits at most `timeout`: empty (for void: false) if not done yet; the task keeps running.
  template <class Rep, class Period>
  auto get(const std::chrono::duration<Rep, Period>& timeout) {
    const bool done = job_->wait_all(detail::deadline_after(timeout));
    if constexpr (std::is_void_v<R>) {
      if (done) take_();
      return done;
    } else {
      return done ? std::optional<R>(take_()) : std::nullopt;
    }
  }
  void wait() { job_->wait_all(detail::Clock::time_point::max()); }
  template <class Rep, class Period>
  bool wait(const std::chrono::duration<Rep, Period>& timeout) {
    return job_->wait_all(detail::deadline_after(timeout));
  }
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
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    R& operator*() const { return range_->current(n_); }
    R* operator->() const { return &range_->current(n_); }
    iterator& operator++() {
      ++n_;
      return *this;
    }
    void operator++(int) { ++n_; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.n_ >= it.range_->size(); }

   private:
    friend class ImapRange;
    iterator(ImapRange* r) : range_(r) {}
    ImapRange* range_ = nullptr;
    std::size_t n_ = 0;
  };

  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }
  std::size_t size() const { return job_->size(); }

 private:
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

namespace detail {

/// The non-template part of Pool: workers, dispatcher thread, results. Defined in src/pool/pool.cpp.
class PoolCore {
 public:
  explicit PoolCore(const PoolOptions& options);
  ~PoolCore();
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  /// Queues a job's chunks. Throws mproc::UsageError after close()/terminate(), mproc::Error
  /// (EMSGSIZE) for a chunk larger than a worker's queue can hold.
  void submit(std::shared_ptr<JobBase> job, std::vector<EncodedChunk>&& chunks);
  void close();
  void terminate();
  void join();
  int processes() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace detail

class Pool {
 public:
  /// Starts `processes` workers (0: cpu_count()).
  explicit Pool(int processes = 0) : Pool(PoolOptions{processes, nullptr, 0, std::size_t{1} << 20}) {}
  explicit Pool(const PoolOptions& options) : core_(std::make_unique<detail::PoolCore>(options)) {}
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
