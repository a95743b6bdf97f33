#pragma once
/// mproc::redis::Value<T> — mproc::Value<T>'s twin over Redis: one trivially copyable T that
/// processes on different machines read and update.
///
///   auto hits = mproc::redis::Value<long>::open_or_create("redis://10.0.0.5/hits", 0);
///   hits.update([](long& n) { ++n; });          // on any machine: no update is lost
///   long now = hits.get();
///
/// What T can be: trivially copyable and holding no pointers (as mproc::Value<T>): it travels
/// as its bytes.
/// Redis: one hash `mproc:{name}:val` with `tag` (T's type tag, as a queue's messages carry),
/// `type` (T's name) and `d` (the bytes of the value). Every call checks the tag with the value
/// in the same command, so a Value<int> opened or read as a Value<double> is a clear error
/// (mproc::Error EINVAL naming both types), never a reinterpretation of bytes.
/// Atomicity: get() is one HMGET; set() and compare_exchange() are one Lua script each (a check
///   of the tag and a write, or a compare of the bytes and a write, in one step for every
///   client). update(f) and fetch_add() are a compare-and-exchange loop on the client: read,
///   apply f to a copy, compare_exchange; on a conflict f runs again on the newer value. So f
///   must be a pure function of the value (it may run several times); each update is applied
///   exactly once, and no update is lost, with any number of writers on any number of
///   machines. compare_exchange compares bytes (as std::atomic's does): padding bytes count, and
///   0.0 and -0.0 differ.
/// Thread safety: one thread per object; open one per thread, process or machine.
/// Process safety: any number, each with its own object; never shared across fork() (a child
///   that inherits one reconnects on its own).
/// Memory ordering: none beyond the value itself.
/// If a peer dies: nothing is held, so nothing is left half done: a writer's script ran whole
///   or not at all. A set/compare_exchange whose reply was lost throws ConnectionLost (it may or
///   may not have run); update() then does not know either, and throws the same.
/// If the server restarts without persistence: the value is gone; calls throw mproc::Error
///   (ENOENT) and open_or_create makes it again. docs/design/redis.md, "Value".
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "mproc/detail/type_tag.hpp"
#include "mproc/redis/address.hpp"

namespace mproc::redis {

namespace detail {

enum class ValueHow { create, open, open_or_create };

/// What every redis::Value<T> holds, whatever T: the connection and the scripts.
class ValueCore {
 public:
  ValueCore(std::string_view address, ValueHow how, const Options& options, std::uint32_t tag,
            std::string type_name, std::string_view initial);
  ValueCore(ValueCore&&) noexcept;
  ValueCore& operator=(ValueCore&&) noexcept;
  ~ValueCore();

  /// The value's bytes (exactly `size` of them: mproc::Error EBADMSG otherwise).
  std::string get(std::size_t size);
  void set(std::string_view bytes);
  /// True: the value was `expected` and is now `desired`. False: `current` holds what it was.
  bool compare_exchange(std::string_view expected, std::string_view desired, std::string& current);
  std::string address() const;

  static void unlink(std::string_view address, const Options& options);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace detail

template <class T>
class Value {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                "mproc::redis::Value<T>: T must be trivially copyable and hold no pointers");

 public:
  /// Creates the value (mproc::Error EEXIST if it exists), opens it (ENOENT if it does not;
  /// EINVAL if it holds another T), or either. `initial` is stored only by the one that
  /// creates it.
  static Value create(std::string_view address, const T& initial = T{}, Options options = {}) {
    return Value(address, detail::ValueHow::create, options, initial);
  }
  static Value open(std::string_view address, Options options = {}) {
    return Value(address, detail::ValueHow::open, options, T{});
  }
  static Value open_or_create(std::string_view address, const T& initial = T{}, Options options = {}) {
    return Value(address, detail::ValueHow::open_or_create, options, initial);
  }
  /// Deletes the value's key.
  static void unlink(std::string_view address, const Options& options = {}) {
    detail::ValueCore::unlink(address, options);
  }

  T get() { return from(core_.get(sizeof(T))); }
  void set(const T& value) { core_.set(bytes(value)); }
  /// If the value's bytes are `expected`'s, stores `desired` and returns true; otherwise
  /// stores the current value in `expected` and returns false (std::atomic's contract).
  bool compare_exchange(T& expected, const T& desired) {
    std::string current;
    if (core_.compare_exchange(bytes(expected), bytes(desired), current)) return true;
    expected = from(current);
    return false;
  }
  /// Calls f(T&) on a copy of the value and stores the result, atomically with respect to
  /// every other writer (see the file comment: f may run more than once). Returns what f
  /// returns, from the run whose result was stored.
  template <class F>
  decltype(auto) update(F&& f) {
    T seen = get();
    for (;;) {
      T next = seen;
      if constexpr (std::is_void_v<std::invoke_result_t<F&, T&>>) {
        f(next);
        if (compare_exchange(seen, next)) return;
      } else {
        auto result = f(next);
        if (compare_exchange(seen, next)) return result;
      }
    }
  }
  /// Adds `delta` atomically (as update()); returns the value before.
  T fetch_add(T delta) requires std::is_arithmetic_v<T> {
    return update([delta](T& v) {
      const T before = v;
      v = static_cast<T>(v + delta);
      return before;
    });
  }
  /// The address, without password.
  std::string address() const { return core_.address(); }

 private:
  Value(std::string_view address, detail::ValueHow how, const Options& options, const T& initial)
      : core_(address, how, options, mproc::detail::type_tag<T>(), mproc::detail::type_name<T>(),
              bytes(initial)) {}

  static std::string_view bytes(const T& v) noexcept {
    return {reinterpret_cast<const char*>(&v), sizeof(T)};
  }
  static T from(const std::string& s) noexcept {
    T v;
    std::memcpy(&v, s.data(), sizeof(T));  // ValueCore checked the size
    return v;
  }

  detail::ValueCore core_;
};

}  // namespace mproc::redis
