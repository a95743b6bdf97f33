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
/// get_lock().acquire(), repair, mark_consistent().
/// Thread safety: get/set/update from any thread; unguarded access is the caller's to lock.
/// Process safety: shared by every process started after construction.
/// Memory ordering: that of the lock for get/set/update; none for unguarded access.
/// If a peer dies: see Locking. Raw forms: a writer that dies mid-write may leave a torn value.
#include <algorithm>
#include <cstddef>
#include <mutex>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mproc/detail/mapping.hpp"
#include "mproc/lock.hpp"

namespace mproc {
namespace detail {

template <class T>
constexpr void check_shareable() {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                "mproc::Value/Array<T>: T must be trivially copyable and hold no pointers: it lives in "
                "shared memory, where a pointer into one process's memory means nothing to another");
}

/// n objects of T in a fresh shared mapping, each initialised to `fill`.
template <class T>
T* make_shared_objects(Mapping& mapping, std::size_t n, const T& fill, const char* what) {
  mapping = Mapping::shared_anonymous(std::max<std::size_t>(n, 1) * sizeof(T), what);
  T* p = static_cast<T*>(mapping.data());
  for (std::size_t i = 0; i < n; ++i) new (p + i) T(fill);
  return p;
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

 private:
  detail::Mapping mapping_;
  T* ptr_;
};

/// One T in shared memory, with a lock.
template <class T>
class Value {
 public:
  explicit Value(const T& initial = T{}) : raw_(initial) {}
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

 private:
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

 private:
  detail::Mapping mapping_;
  std::size_t size_;
  T* data_;
};

/// n objects of T in shared memory, with a lock.
template <class T>
class Array {
 public:
  explicit Array(std::size_t size, const T& fill = T{}) : raw_(size, fill) {}
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

 private:
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
