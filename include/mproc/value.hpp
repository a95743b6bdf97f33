#pragma once
/// mproc::Value<T>, mproc::Array<T> — data shared by processes in shared memory, as Python's
/// multiprocessing.Value and Array; RawValue<T> and RawArray<T> are the forms without a lock.
///
///   mproc::Value<long> counter(0);
///   mproc::Process p([&] { for (int i = 0; i < 1000; ++i) counter.update([](long& c) { ++c; }); });
///   long seen = counter.get();
///
///   mproc::Array<double> samples(1024);            // zero-filled
///   { std::scoped_lock hold{samples.get_lock()}; samples[3] = 1.5; }
///
/// What T can be: a trivially copyable type holding no pointers — the data lives in shared
/// memory, where a pointer into one process's memory means nothing to another. Anything else is
/// a compile-time error saying so.
///
/// Locking, as in Python: get()/set()/update() take the lock for you; operator[] and raw() do
/// not — take get_lock() around compound updates. The lock is an mproc::RLock, so it reports a
/// holder that died mid-update: get()/set()/update() then throw mproc::OwnerDied; recover with
/// get_lock().acquire(), repair, mark_consistent(). Messages about the lock name the Value or
/// Array it guards (`the lock of Value "counter"`), and so does mproc::OwnerDied. Misusing the
/// lock (releasing it without holding it) is an mproc::UsageError, as for any RLock.
/// Thread safety: get/set/update from any thread; unguarded access is the caller's to lock.
/// Process safety: shared by every process forked after construction, and by a spawned or
///   forkserver child it is passed to (as `Value<T>&`, `Array<T>&`: <mproc/start_method.hpp>).
/// Memory ordering: that of the lock for get/set/update; none for unguarded access.
/// If a peer dies: see Locking. Raw forms: a writer that dies mid-write may leave a torn value.
/// Named forms (create/open/open_or_create/unlink, as for SharedMemory): the data is the named
///   object "<name>" and, for Value/Array, its lock is the RLock "<name>.lock" (so names are at
///   most 195 characters); open() checks the element type, and an Array's size comes from the
///   segment.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <mutex>
#include <new>
#include <span>
#include <string_view>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mproc/detail/type_tag.hpp"
#include "mproc/detail/demangle.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/detail/named_typed.hpp"
#include "mproc/lock.hpp"

namespace mproc {
namespace detail {

template <class T>
struct Travel;  // <mproc/start_method.hpp>: how anonymous data reaches a spawned child

/// Shared data received from another process (Travel): `count` objects of T must fit in it.
template <class T>
T* received_objects(const Mapping& mapping, std::size_t count, const char* what) {
  if (count == 0 || mapping.size() / sizeof(T) < count) {
    throw Error(EINVAL, std::string("cannot rebuild ") + what + " sent to this process",
                "(" + std::to_string(count) + " elements do not fit in " + std::to_string(mapping.size()) +
                    " bytes)");
  }
  return static_cast<T*>(mapping.data());
}

template <class T>
constexpr void check_shareable() {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                "mproc::Value/Array<T>: T must be trivially copyable and hold no pointers: it lives in "
                "shared memory, where a pointer into one process's memory means nothing to another");
}

/// n * sizeof(T), or mproc::Error (ENOMEM) when that many elements cannot exist, instead of a
/// product that wraps round to a small mapping that the fill then overruns.
template <class T>
std::size_t bytes_for(std::size_t n, const char* what) {
  constexpr std::size_t kMost = (std::size_t{1} << 62) / sizeof(T);  // far beyond any mapping
  if (n > kMost) {
    throw Error(ENOMEM, "cannot create " + with_article(what) + " of " + std::to_string(n) + " elements",
                "(more bytes than any address space holds)");
  }
  return n * sizeof(T);
}

/// n objects of T in a fresh shared mapping, each initialised to `fill`.
template <class T>
T* make_shared_objects(Mapping& mapping, std::size_t n, const T& fill, const char* what) {
  mapping = Mapping::shared_anonymous(bytes_for<T>(std::max<std::size_t>(n, 1), what), what);
  T* p = static_cast<T*>(mapping.data());
  for (std::size_t i = 0; i < n; ++i) new (p + i) T(fill);
  return p;
}

template <class T>
struct Fill {
  std::size_t count;
  const T* value;
  static void init(void* data, const void* self) {
    const auto& f = *static_cast<const Fill*>(self);
    for (std::size_t i = 0; i < f.count; ++i) new (static_cast<T*>(data) + i) T(*f.value);
  }
};

/// Attaches named data of `count` T (count 0 on open: whatever the segment holds). Returns the
/// first element; `count` receives the number of elements.
template <class T>
T* attach_objects(const NamedSpec& spec, bool array, std::size_t& count, const T& fill, Mapping& mapping,
                  bool* created = nullptr) {
  static_assert(alignof(T) <= 64, "mproc: named data is 64-byte aligned");
  const Fill<T> f{count, &fill};
  std::size_t payload = 0;
  std::byte* p = attach_typed(spec, array, bytes_for<T>(count, array ? "Array" : "Value"), type_tag<T>(),
                              &Fill<T>::init, &f, mapping, payload, created, type_name<T>());
  count = payload / sizeof(T);
  return reinterpret_cast<T*>(p);
}

/// The lock of named data "<name>.lock". If it cannot be attached and this process has just
/// created the data (`data_created`), the data is closed and removed again (unless somebody
/// opened it meanwhile): a failed creation leaves nothing behind, whatever the lifetime.
inline RLock attach_lock(const NamedSpec& spec, Mapping& data, bool data_created) {
  const std::string name = std::string(spec.name) + ".lock";
  try {
    switch (spec.how) {
      case OpenHow::create: return RLock::create(name, spec.options);
      case OpenHow::open: return RLock::open(name);
      case OpenHow::open_or_create: break;
    }
    return RLock::open_or_create(name, spec.options);
  } catch (...) {
    if (data_created) {
      data = Mapping();
      discard_named_if_unused(spec.name);
    }
    throw;
  }
}

}  // namespace detail

/// One T in shared memory, without a lock.
template <class T>
class RawValue {
 public:
  explicit RawValue(const T& initial = T{}) {
    detail::check_shareable<T>();
    ptr_ = detail::make_shared_objects(mapping_, 1, initial, "RawValue");
  }
  T& operator*() noexcept { return *ptr_; }
  const T& operator*() const noexcept { return *ptr_; }
  T* operator->() noexcept { return ptr_; }

  static RawValue create(std::string_view name, const T& initial = T{}, NamedOptions options = {}) {
    return RawValue(detail::NamedSpec{name, detail::OpenHow::create, options}, initial);
  }
  static RawValue open(std::string_view name) {
    return RawValue(detail::NamedSpec{name, detail::OpenHow::open, {}}, T{});
  }
  static RawValue open_or_create(std::string_view name, const T& initial = T{}, NamedOptions options = {}) {
    return RawValue(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, initial);
  }
  static void unlink(std::string_view name) { detail::unlink_named_public(name, "Value"); }

 private:
  template <class>
  friend class Value;
  template <class U>
  friend struct detail::Travel;
  explicit RawValue(detail::Mapping mapping)
      : mapping_(std::move(mapping)), ptr_(detail::received_objects<T>(mapping_, 1, "a Value")) {}
  RawValue(const detail::NamedSpec& spec, const T& initial) {
    detail::check_shareable<T>();
    std::size_t count = 1;
    ptr_ = detail::attach_objects(spec, false, count, initial, mapping_, &created_);
    if (count != 1)
      throw Error(EINVAL, "cannot open Value \"" + std::string(spec.name) + "\"", "(wrong size)");
  }

  detail::Mapping mapping_;
  T* ptr_;
  bool created_ = false;  // named: this handle created the data (Value needs to know)
};

/// One T in shared memory, with a lock.
template <class T>
class Value {
 public:
  explicit Value(const T& initial = T{}) : raw_(initial) { detail::name_guarded_lock(lock_, "Value", {}); }
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;

  T get() const {
    std::scoped_lock hold{lock_};
    return *raw_;
  }
  void set(const T& value) {
    std::scoped_lock hold{lock_};
    *raw_ = value;
  }
  /// Calls f(T&) with the lock held: a read-modify-write no other process can interleave.
  template <class F>
  decltype(auto) update(F&& f) {
    std::scoped_lock hold{lock_};
    return std::forward<F>(f)(*raw_);
  }
  RLock& get_lock() const noexcept { return lock_; }
  /// The value itself, unguarded: hold get_lock() while using it.
  T& raw() noexcept { return *raw_; }

  static Value create(std::string_view name, const T& initial = T{}, NamedOptions options = {}) {
    return Value(detail::NamedSpec{name, detail::OpenHow::create, options}, initial);
  }
  static Value open(std::string_view name) {
    return Value(detail::NamedSpec{name, detail::OpenHow::open, {}}, T{});
  }
  static Value open_or_create(std::string_view name, const T& initial = T{}, NamedOptions options = {}) {
    return Value(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, initial);
  }
  /// Removes the value and its lock.
  static void unlink(std::string_view name) {
    RLock::unlink(std::string(name) + ".lock");
    detail::unlink_named_public(name, "Value");
  }

 private:
  Value(const detail::NamedSpec& spec, const T& initial)
      : raw_(spec, initial), lock_(detail::attach_lock(spec, raw_.mapping_, raw_.created_)) {
    detail::name_guarded_lock(lock_, "Value", spec.name);
  }
  template <class U>
  friend struct detail::Travel;
  Value(detail::Mapping data, detail::Mapping lock) : raw_(std::move(data)), lock_(std::move(lock)) {
    detail::name_guarded_lock(lock_, "Value", {});
  }

  RawValue<T> raw_;
  mutable RLock lock_;
};

/// n objects of T in shared memory, without a lock.
template <class T>
class RawArray {
 public:
  explicit RawArray(std::size_t size, const T& fill = T{}) : size_(size) {
    detail::check_shareable<T>();
    data_ = detail::make_shared_objects(mapping_, size, fill, "RawArray");
  }
  std::size_t size() const noexcept { return size_; }
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  std::span<T> span() noexcept { return {data_, size_}; }
  std::span<const T> span() const noexcept { return {data_, size_}; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }

  static RawArray create(std::string_view name, std::size_t size, const T& fill = T{},
                         NamedOptions options = {}) {
    return RawArray(detail::NamedSpec{name, detail::OpenHow::create, options}, size, fill);
  }
  static RawArray open(std::string_view name) {
    return RawArray(detail::NamedSpec{name, detail::OpenHow::open, {}}, 0, T{});
  }
  static RawArray open_or_create(std::string_view name, std::size_t size, const T& fill = T{},
                                 NamedOptions options = {}) {
    return RawArray(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, size, fill);
  }
  static void unlink(std::string_view name) { detail::unlink_named_public(name, "Array"); }

 private:
  template <class>
  friend class Array;
  template <class U>
  friend struct detail::Travel;
  RawArray(detail::Mapping mapping, std::size_t size)
      : mapping_(std::move(mapping)),
        size_(size),
        data_(detail::received_objects<T>(mapping_, size, "an Array")) {}
  RawArray(const detail::NamedSpec& spec, std::size_t size, const T& fill) : size_(size) {
    detail::check_shareable<T>();
    data_ = detail::attach_objects(spec, true, size_, fill, mapping_, &created_);
  }

  detail::Mapping mapping_;
  std::size_t size_;
  T* data_;
  bool created_ = false;  // named: this handle created the data (Array needs to know)
};

/// n objects of T in shared memory, with a lock.
template <class T>
class Array {
 public:
  explicit Array(std::size_t size, const T& fill = T{}) : raw_(size, fill) {
    detail::name_guarded_lock(lock_, "Array", {});
  }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  std::size_t size() const noexcept { return raw_.size(); }
  /// Element access under the lock. Throws std::out_of_range for a bad index.
  T get(std::size_t i) const {
    check(i);
    std::scoped_lock hold{lock_};
    return raw_[i];
  }
  void set(std::size_t i, const T& value) {
    check(i);
    std::scoped_lock hold{lock_};
    raw_[i] = value;
  }
  /// A copy of every element, taken under the lock (a consistent snapshot).
  std::vector<T> to_vector() const {
    std::scoped_lock hold{lock_};
    const auto s = raw_.span();
    return {s.begin(), s.end()};
  }
  /// Calls f(std::span<T>) with the lock held.
  template <class F>
  decltype(auto) update(F&& f) {
    std::scoped_lock hold{lock_};
    return std::forward<F>(f)(raw_.span());
  }
  RLock& get_lock() const noexcept { return lock_; }
  /// Unguarded element access: hold get_lock() while using it.
  T& operator[](std::size_t i) noexcept { return raw_[i]; }
  std::span<T> span() noexcept { return raw_.span(); }

  static Array create(std::string_view name, std::size_t size, const T& fill = T{},
                      NamedOptions options = {}) {
    return Array(detail::NamedSpec{name, detail::OpenHow::create, options}, size, fill);
  }
  static Array open(std::string_view name) {
    return Array(detail::NamedSpec{name, detail::OpenHow::open, {}}, 0, T{});
  }
  static Array open_or_create(std::string_view name, std::size_t size, const T& fill = T{},
                              NamedOptions options = {}) {
    return Array(detail::NamedSpec{name, detail::OpenHow::open_or_create, options}, size, fill);
  }
  /// Removes the array and its lock.
  static void unlink(std::string_view name) {
    RLock::unlink(std::string(name) + ".lock");
    detail::unlink_named_public(name, "Array");
  }

 private:
  Array(const detail::NamedSpec& spec, std::size_t size, const T& fill)
      : raw_(spec, size, fill), lock_(detail::attach_lock(spec, raw_.mapping_, raw_.created_)) {
    detail::name_guarded_lock(lock_, "Array", spec.name);
  }
  template <class U>
  friend struct detail::Travel;
  Array(detail::Mapping data, std::size_t size, detail::Mapping lock)
      : raw_(std::move(data), size), lock_(std::move(lock)) {
    detail::name_guarded_lock(lock_, "Array", {});
  }

  void check(std::size_t i) const {
    if (i >= raw_.size()) {
      throw std::out_of_range("mproc::Array index " + std::to_string(i) + " out of range (size " +
                              std::to_string(raw_.size()) + ")");
    }
  }
  RawArray<T> raw_;
  mutable RLock lock_;
};

}  // namespace mproc
