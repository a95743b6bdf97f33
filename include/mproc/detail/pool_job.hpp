#pragma once
// The machinery under <mproc/pool.hpp>, out of the API's way: how a job's callable and argument
// tuples become chunks of bytes for a worker's queue (encode_job, ChunkHeader, EncodedChunk),
// how a worker runs a chunk (run_chunk) and what it reports (ChunkOutcome), how the parent
// collects a job's results as they arrive (JobBase, Job<R>), and PoolCore, the non-template
// part of Pool defined in src/pool/pool.cpp. Values are encoded as Queue encodes them, inside
// one cereal stream per chunk (docs/design/pool.md).
#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/codec.hpp"
#include "mproc/detail/deadline.hpp"
#include "mproc/error.hpp"
#include "mproc/start_method.hpp"

namespace mproc {

struct PoolOptions;  // <mproc/pool.hpp>

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

/// In a worker started by spawn or forkserver: how far this program's code sits from where it
/// sits in the pool's process (the same executable, loaded at another address). 0 in a forked
/// worker. Written once, before the worker takes its first chunk.
inline std::intptr_t g_code_delta = 0;

/// A code address from the pool's process, as an address of this process.
template <class P>
P relocate(P code) noexcept {
  if (g_code_delta == 0 || code == nullptr) return code;
  // Address arithmetic on code is the point here: the same function, in a copy of the program
  // loaded at another address.
  return reinterpret_cast<P>(  // NOLINT(performance-no-int-to-ptr)
      reinterpret_cast<std::uintptr_t>(code) + static_cast<std::uintptr_t>(g_code_delta));
}

template <class F>
F load_callable(const std::byte* bytes) {
  alignas(F) std::byte storage[sizeof(F)];
  std::memcpy(storage, bytes, sizeof(F));
  F f = *std::launder(reinterpret_cast<F*>(storage));
  if constexpr (std::is_pointer_v<F>) f = relocate(f);
  return f;
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
/// address travels in the chunk, valid in a forked worker as it is, and in a spawned one once
/// relocated (g_code_delta).
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
    if constexpr (std::is_empty_v<F>) {
      buf.bytes.append(sizeof(F), '\0');  // no state: its one byte is padding, never read
    } else {
      buf.bytes.append(reinterpret_cast<const char*>(&f), sizeof(F));
    }
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

/// The non-template part of Pool: workers, dispatcher thread, results. Defined in src/pool/pool.cpp.
class PoolCore {
 public:
  PoolCore(const PoolOptions& options, StartMethod method);
  ~PoolCore();
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  /// Queues a job's chunks. Throws mproc::UsageError after close()/terminate(), mproc::Error
  /// (EMSGSIZE) for a chunk larger than a worker's queue can hold.
  void submit(const std::shared_ptr<JobBase>& job, std::vector<EncodedChunk>&& chunks);
  void close();
  void terminate();
  void join();
  int processes() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace detail
}  // namespace mproc
