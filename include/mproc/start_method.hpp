#pragma once
/// Start methods — how mproc::Process creates a child, as Python's multiprocessing start
/// methods (docs/design/start-methods.md):
///
///   fork        the child is a copy of the parent (the default). Any callable and any argument;
///               unsafe in a parent with other threads (their locks are copied held).
///   spawn       the child is a fresh exec of this program (/proc/self/exe) that runs a
///               registered entry point instead of main. Safe from any thread.
///   forkserver  the child is forked by a small single-threaded server process (itself a fresh
///               exec, started on first use). Safe from any thread; cheaper than spawn per child.
///
///   void work(int n, std::string s) { ... }
///   MPROC_ENTRY(work);                            // namespace scope, any source file
///
///   int main(int argc, char** argv) {
///     mproc::init(argc, argv);                    // first line of main
///     mproc::Process p(work, 7, "seven");
///     p.set_start_method(mproc::StartMethod::spawn).start();
///   }
///
/// Arguments travel encoded with the queue codec, converted to the entry's parameter types;
/// a parameter type the codec cannot carry is a compile-time error at MPROC_ENTRY. mproc objects
/// travel by name: pass mproc::ByName<T> (or the name) and the child opens the named object.
/// Anonymous Lock, RLock, Event, Semaphore, BoundedSemaphore, Barrier, Condition, Queue<T>,
/// JoinableQueue<T>, SimpleQueue<T>, Value<T>, Array<T>, RawValue<T>, RawArray<T> and Connection
/// (a Pipe end) travel too, as descriptors: the entry takes a reference (`void work(mproc::Lock& lock)`), the
/// parent passes std::ref(lock), and the child's object is the same lock (its own mapping of the
/// same memory). The object must live until start() returns; a Connection sent this way is still
/// open in the parent, which closes its copy after start() (as with fork) for the child's end of
/// stream to work; a Barrier arrives without the sender's action and default timeout (as
/// Barrier::open). A Condition travels with its own RLock (Condition()); one over a lock of the
/// caller's (Condition(lock)) is refused at start(): name it, or use the Condition's own lock.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/codec_core.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/error.hpp"
#ifndef MPROC_NO_CEREAL
#include "mproc/detail/codec.hpp"  // structured arguments; MPROC_NO_CEREAL leaves cereal out, as queue.hpp
#endif

namespace mproc {

class Lock;
class RLock;
class Event;
class Connection;
class Semaphore;
class BoundedSemaphore;
class Barrier;
class Condition;
template <class T>
class Queue;
template <class T>
class SimpleQueue;
template <class T>
class JoinableQueue;
template <class T>
class Value;
template <class T>
class RawValue;
template <class T>
class Array;
template <class T>
class RawArray;

enum class StartMethod { fork, spawn, forkserver };

/// "fork", "spawn", "forkserver".
const char* start_method_name(StartMethod method) noexcept;

/// The method a Process (or Pool) constructed from now on uses unless told otherwise. Any
/// thread; Process objects already constructed keep theirs.
void set_start_method(StartMethod method) noexcept;
StartMethod get_start_method() noexcept;

/// Call as the first line of main. In the program itself it records argv and returns at once;
/// in a child started by spawn it runs the child's entry point and exits with its exit code
/// (never returns); in the forkserver process it serves (never returns). spawn and forkserver
/// refuse to start a child (mproc::UsageError) in a program that did not call it.
void init(int argc, char** argv);

/// Stops this process's forkserver, if it started one: the server kills its daemon children,
/// waits for its other children to end (so that their exit codes still arrive), then exits, and
/// this call reaps it — so join the forkserver's children first. The next forkserver start
/// starts a new one. A program need not call it: the server also stops when this process dies.
void stop_forkserver() noexcept;

/// A named mproc object as an entry's argument: travels as its name; in the child, get() opens
/// it (T::open(name)) on first use. T is any named type (Lock, Queue<U>, Event, SharedMemory...).
template <class T>
class ByName {
 public:
  ByName() = default;
  explicit ByName(std::string name) : name_(std::move(name)) {}
  /// A copy names the same object; it opens its own handle.
  ByName(const ByName& other) : name_(other.name_) {}
  ByName& operator=(const ByName& other) {
    if (this != &other) {
      name_ = other.name_;
      object_.reset();
    }
    return *this;
  }
  ByName(ByName&&) noexcept = default;
  ByName& operator=(ByName&&) noexcept = default;
  ~ByName() = default;
  const std::string& name() const noexcept { return name_; }
  /// Opens the object on first use (throws what T::open throws).
  T& get() {
    if (!object_) object_.reset(new T(T::open(name_)));  // T may be immovable: built in place
    return *object_;
  }
  T* operator->() { return &get(); }
  T& operator*() { return get(); }

 private:
  std::string name_;
  std::unique_ptr<T> object_;
};

namespace detail {

/// How an anonymous mproc object reaches a spawned or forkserver child: as descriptors (its
/// memfd, a Connection's sockets) sent with the child, plus a few bytes. encode() appends the
/// object's descriptors to `fds` (the descriptors stay the object's; start() sends copies) and
/// returns the bytes; decode(), in the child, rebuilds the object around the received
/// descriptors (src/process/travel.cpp). Types without a specialisation do not travel this way.
template <class T>
struct Travel {
  static constexpr bool kTravels = false;
};
template <>
struct Travel<Lock> {
  static constexpr bool kTravels = true;
  static std::string encode(const Lock& lock, std::vector<int>& fds);
  static Lock decode(const std::string& bytes);
};
template <>
struct Travel<RLock> {
  static constexpr bool kTravels = true;
  static std::string encode(const RLock& lock, std::vector<int>& fds);
  static RLock decode(const std::string& bytes);
};
template <>
struct Travel<Event> {
  static constexpr bool kTravels = true;
  static std::string encode(const Event& event, std::vector<int>& fds);
  static Event decode(const std::string& bytes);
};
template <>
struct Travel<Semaphore> {
  static constexpr bool kTravels = true;
  static std::string encode(const Semaphore& semaphore, std::vector<int>& fds);
  static Semaphore decode(const std::string& bytes);
};
template <>
struct Travel<BoundedSemaphore> {
  static constexpr bool kTravels = true;
  static std::string encode(const BoundedSemaphore& semaphore, std::vector<int>& fds);
  static BoundedSemaphore decode(const std::string& bytes);
};
template <>
struct Travel<Barrier> {
  static constexpr bool kTravels = true;
  static std::string encode(const Barrier& barrier, std::vector<int>& fds);
  static Barrier decode(const std::string& bytes);
};
/// A Condition with its own RLock (Condition()): both memories. One over a lock of the caller's
/// is refused at start(): its lock would arrive as another object than the argument naming it.
template <>
struct Travel<Condition> {
  static constexpr bool kTravels = true;
  static std::string encode(const Condition& condition, std::vector<int>& fds);
  static Condition decode(const std::string& bytes);
};
template <>
struct Travel<Connection> {
  static constexpr bool kTravels = true;
  static std::string encode(const Connection& connection, std::vector<int>& fds);
  static Connection decode(const std::string& bytes);
};

class QueueCore;
/// A queue's bytes and descriptors (its memfd and eventfd), and the queue rebuilt from them in
/// the child, checked for `joinable`'s kind and the element type (src/process/travel.cpp).
std::string encode_queue(const QueueCore& core, bool joinable, std::vector<int>& fds);
QueueCore decode_queue(const std::string& bytes, bool joinable, std::uint64_t type_hash,
                       const std::string& type_name);

template <class T>
struct Travel<Queue<T>> {
  static constexpr bool kTravels = true;
  static std::string encode(const Queue<T>& q, std::vector<int>& fds) {
    return encode_queue(q.core_, false, fds);
  }
  static Queue<T> decode(const std::string& bytes) {
    return Queue<T>(decode_queue(bytes, false, type_tag<T>(), type_name<T>()));
  }
};
template <class T>
struct Travel<JoinableQueue<T>> {
  static constexpr bool kTravels = true;
  static std::string encode(const JoinableQueue<T>& q, std::vector<int>& fds) {
    return encode_queue(q.core_, true, fds);
  }
  static JoinableQueue<T> decode(const std::string& bytes) {
    return JoinableQueue<T>(decode_queue(bytes, true, type_tag<T>(), type_name<T>()));
  }
};

template <class T>
struct Travel<SimpleQueue<T>> {
  static constexpr bool kTravels = true;
  static std::string encode(const SimpleQueue<T>& q, std::vector<int>& fds) {
    return encode_queue(static_cast<const Queue<T>&>(q).core_, false, fds);
  }
  static SimpleQueue<T> decode(const std::string& bytes) {
    return SimpleQueue<T>(decode_queue(bytes, false, type_tag<T>(), type_name<T>()));
  }
};

/// Value, Array and their raw forms: the data's memory, the lock's (-1 for the raw forms) and
/// the element count; in the child, the two mappings and the count (src/process/travel.cpp).
std::string encode_data(int data_memfd, int lock_memfd, std::size_t count, const char* kind,
                        std::vector<int>& fds);
struct ReceivedData {
  Mapping data;
  Mapping lock;
  std::size_t count = 0;
};
ReceivedData decode_data(const std::string& bytes, bool locked, const char* what);

template <class T>
struct Travel<RawValue<T>> {
  static constexpr bool kTravels = true;
  static std::string encode(const RawValue<T>& v, std::vector<int>& fds) {
    return encode_data(v.mapping_.memfd(), -1, 1, "RawValue", fds);
  }
  static RawValue<T> decode(const std::string& bytes) {
    return RawValue<T>(decode_data(bytes, false, "a RawValue").data);
  }
};
template <class T>
struct Travel<Value<T>> {
  static constexpr bool kTravels = true;
  static std::string encode(const Value<T>& v, std::vector<int>& fds) {
    return encode_data(v.raw_.mapping_.memfd(), v.lock_.memfd(), 1, "Value", fds);
  }
  static Value<T> decode(const std::string& bytes) {
    ReceivedData d = decode_data(bytes, true, "a Value");
    return Value<T>(std::move(d.data), std::move(d.lock));
  }
};
template <class T>
struct Travel<RawArray<T>> {
  static constexpr bool kTravels = true;
  static std::string encode(const RawArray<T>& a, std::vector<int>& fds) {
    return encode_data(a.mapping_.memfd(), -1, a.size_, "RawArray", fds);
  }
  static RawArray<T> decode(const std::string& bytes) {
    ReceivedData d = decode_data(bytes, false, "a RawArray");
    return RawArray<T>(std::move(d.data), d.count);
  }
};
template <class T>
struct Travel<Array<T>> {
  static constexpr bool kTravels = true;
  static std::string encode(const Array<T>& a, std::vector<int>& fds) {
    return encode_data(a.raw_.mapping_.memfd(), a.lock_.memfd(), a.raw_.size_, "Array", fds);
  }
  static Array<T> decode(const std::string& bytes) {
    ReceivedData d = decode_data(bytes, true, "an Array");
    return Array<T>(std::move(d.data), d.count, std::move(d.lock));
  }
};

/// In a spawned or forkserver child, while its arguments are decoded: the descriptor sent as
/// `index` of the child's descriptors, owned by the caller from now on (a descriptor sent twice,
/// for two arguments naming the same object, is duplicated for the second). Throws mproc::Error
/// (EBADF) for an index the child was not sent.
int take_received_fd(std::size_t index);
/// Once the arguments are decoded: closes the received descriptors that no argument took.
void close_unclaimed_fds() noexcept;

/// For a binding that carries descriptors by its own means (the Python module passes them with
/// multiprocessing's DupFd, to spawned children and through queues): while it lives, `fds` are
/// this thread's received descriptors, the ones Travel<T>::decode's indices name, and they are
/// owned by it; when it ends, those no decoded object took are closed (also after a throw), and
/// the table it stood in for (a spawned child's, while its arguments are decoded) is back.
class AdoptedDescriptors {
 public:
  explicit AdoptedDescriptors(std::vector<int> fds);
  AdoptedDescriptors(const AdoptedDescriptors&) = delete;
  AdoptedDescriptors& operator=(const AdoptedDescriptors&) = delete;
  ~AdoptedDescriptors();

 private:
  std::vector<int> outer_fds_;
  std::vector<bool> outer_taken_;
};

/// The object Travel<T>::encode described, rebuilt around `fds` (the descriptors its encoding
/// listed, received by other means, owned by the call from now on), its memory checked as an open
/// by name checks it.
template <class T>
T adopt_travelled(const std::string& bytes, std::vector<int> fds) {
  AdoptedDescriptors adopted(std::move(fds));
  return Travel<T>::decode(bytes);
}

template <class T>
struct is_by_name : std::false_type {};
template <class T>
struct is_by_name<ByName<T>> : std::true_type {};

/// Whether a value of type T can be sent to a spawned or forkserver child. Not a pointer: it
/// would point into the parent's memory (and cereal refuses raw pointers with a static_assert,
/// which would break fork-only programs that pass one: `Process p(f, &lock)` must compile).
template <class T>
inline constexpr bool travels_v = !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                                  (Message<T> || is_by_name<T>::value || Travel<T>::kTravels);

template <class T>
std::string encode_argument(const T& value, std::vector<int>& fds) {
  if constexpr (Travel<T>::kTravels) {
    return Travel<T>::encode(value, fds);
  } else if constexpr (is_by_name<T>::value) {
    return value.name();
  } else {
    const Encoded e = encode(value);
    return std::string(static_cast<const char*>(e.data), e.size);
  }
}

template <class T>
T decode_argument(const std::string& bytes, std::size_t index) {
  if constexpr (Travel<T>::kTravels) {
    return Travel<T>::decode(bytes);  // T may be immovable (Lock): returned as a prvalue
  } else if constexpr (is_by_name<T>::value) {
    return T(bytes);
  } else {
    T out{};
    const RecordView r{reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), nullptr, 0,
                       type_tag<T>()};
    if (!decode(r, out)) {
      throw_undecodable(type_name<T>(), bytes.size(), ("argument " + std::to_string(index + 1)).c_str());
    }
    return out;
  }
}

/// One decoded argument, built in place (a Lock cannot be moved into a tuple).
template <class T>
struct Decoded {
  struct Source {
    const std::string* bytes;
    std::size_t index;
  };
  explicit Decoded(Source s) : value(decode_argument<T>(*s.bytes, s.index)) {}
  T value;
};

using ErasedFn = void (*)();
/// Decodes the arguments for the entry's parameter types and calls it.
using EntryInvoker = void (*)(ErasedFn fn, const std::vector<std::string>& args);

/// Adds `name -> fn` to the table of entry points; returns true. A name registered twice for
/// different functions is a UsageError (from a static initialiser: printed, then abort).
bool register_entry_erased(std::string_view name, ErasedFn fn, EntryInvoker invoke) noexcept;
/// The name `fn` was registered under, or nullptr.
const std::string* entry_name_of(ErasedFn fn) noexcept;
/// The pid of this process's forkserver, 0 if none runs (for tests that kill it).
int forkserver_pid() noexcept;

template <class F>
struct entry_traits {
  static constexpr bool is_function = false;
};
template <class R, class... P>
struct entry_traits<R (*)(P...)> {
  static constexpr bool is_function = true;
  static constexpr bool params_travel = (travels_v<std::decay_t<P>> && ...);
  /// An object that travels as descriptors and cannot be moved (Lock, Event) reaches the entry
  /// by reference only.
  static constexpr bool params_passable =
      ((std::is_reference_v<P> || std::is_move_constructible_v<std::decay_t<P>>)&&...);
  using Params = std::tuple<std::decay_t<P>...>;

  static void invoke(ErasedFn fn, const std::vector<std::string>& args) {
    if (args.size() != sizeof...(P)) {
      throw UsageError("entry point called with " + std::to_string(args.size()) + " arguments; it takes " +
                       std::to_string(sizeof...(P)));
    }
    call(fn, args, std::index_sequence_for<P...>{});
  }
  template <std::size_t... I>
  static void call(ErasedFn fn, const std::vector<std::string>& args, std::index_sequence<I...>) {
    std::tuple<Decoded<std::decay_t<P>>...> values{typename Decoded<std::decay_t<P>>::Source{&args[I], I}...};
    close_unclaimed_fds();
    const auto target = reinterpret_cast<R (*)(P...)>(fn);
    target(std::forward<P>(std::get<I>(values).value)...);
  }
};
template <class R, class... P>
struct entry_traits<R (*)(P...) noexcept> : entry_traits<R (*)(P...)> {};

template <class T>
struct unwrapped {
  using type = T;
  static const T& get(const T& a) noexcept { return a; }
};
template <class T>
struct unwrapped<std::reference_wrapper<T>> {
  using type = std::remove_const_t<T>;
  static const T& get(const std::reference_wrapper<T>& a) noexcept { return a.get(); }
};

/// Whether an argument of type A can be sent as parameter type P.
template <class P, class A>
inline constexpr bool sendable_as_v = std::is_same_v<typename unwrapped<A>::type, P> ||
                                      std::is_constructible_v<P, const typename unwrapped<A>::type&>;

template <class P, class A>
std::string encode_as(const A& a, std::vector<int>& fds) {
  const auto& v = unwrapped<A>::get(a);
  if constexpr (std::is_same_v<std::decay_t<decltype(v)>, P>) {
    return encode_argument<P>(v, fds);
  } else {
    return encode_argument<P>(P(v), fds);
  }
}

/// What a spawned child runs: the entry's function (its name is looked up at start()) and its
/// encoded arguments, or why the target cannot be spawned.
struct SpawnCall {
  ErasedFn fn = nullptr;
  std::vector<std::string> args;
  const char* why_not = nullptr;
  std::vector<int> fds;  // descriptors the arguments travel with (Travel); the objects' own
};

template <class Params, class... Args>
struct ArgumentsFit : std::false_type {};
template <class... P, class... Args>
requires(sizeof...(P) == sizeof...(Args)) struct ArgumentsFit<std::tuple<P...>, Args...>
    : std::bool_constant<(sendable_as_v<P, Args> && ...)> {
};

template <class F, class... Args>
SpawnCall make_spawn_call(const F& fn, const std::tuple<Args...>& args) {
  using Traits = entry_traits<F>;
  if constexpr (!Traits::is_function) {
    return {nullptr, {}, "its target is not a plain function (a lambda or a function object)", {}};
  } else if constexpr (!Traits::params_travel) {
    return {nullptr, {}, "a parameter of its target is not a type the queue codec can carry", {}};
  } else if constexpr (!ArgumentsFit<typename Traits::Params, Args...>::value) {
    return {nullptr, {}, "an argument cannot be converted to its parameter's type", {}};
  } else {
    SpawnCall call{reinterpret_cast<ErasedFn>(fn), {}, nullptr, {}};
    call.args.reserve(sizeof...(Args));
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (call.args.push_back(
           encode_as<std::tuple_element_t<I, typename Traits::Params>>(std::get<I>(args), call.fds)),
       ...);
    }
    (std::index_sequence_for<Args...>{});
    return call;
  }
}

}  // namespace detail

/// Registers `fn` as the entry point `name` for spawned and forkserver children. Call before
/// mproc::init (MPROC_ENTRY does, from a static initialiser). Every parameter must be a type the
/// queue codec carries, a ByName<T>, or an anonymous object sent as descriptors (Lock&, RLock&,
/// Event&, Condition&, Value<T>&, Array<T>&, Queue<T>, SimpleQueue<T>, Connection, ...):
/// anything else does not compile.
template <class F>
requires detail::entry_traits<F>::is_function bool register_entry(std::string_view name, F fn) noexcept {
  static_assert(detail::entry_traits<F>::params_travel,
                "an entry point's parameters must be types a Queue can carry (trivially copyable, "
                "vectors and strings of them, cereal-serialisable types), mproc::ByName<T>, or mproc "
                "objects by reference (mproc::Lock&): a pointer cannot reach a spawned child");
  static_assert(
      detail::entry_traits<F>::params_passable,
      "an entry point takes an anonymous Lock, RLock, Event, Value or Array by reference (mproc::Lock&): "
      "it cannot be moved");
  return detail::register_entry_erased(name, reinterpret_cast<detail::ErasedFn>(fn),
                                       &detail::entry_traits<F>::invoke);
}

}  // namespace mproc

#define MPROC_DETAIL_CAT2(a, b) a##b
#define MPROC_DETAIL_CAT(a, b) MPROC_DETAIL_CAT2(a, b)
/// Registers the function `fn` under its own spelling as an entry point. Namespace scope.
#define MPROC_ENTRY(fn) MPROC_ENTRY_NAMED(#fn, fn)
/// Registers the function `fn` under `name`. Namespace scope.
#define MPROC_ENTRY_NAMED(name, fn)                                                \
  [[maybe_unused]] static const bool MPROC_DETAIL_CAT(mproc_entry_, __COUNTER__) = \
      ::mproc::register_entry(name, &(fn))
