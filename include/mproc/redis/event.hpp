#pragma once
/// mproc::redis::Event — Python's Event for processes on different machines: a flag in Redis.
///
///   auto done = mproc::redis::Event::open("redis://10.0.0.5/done");
///   done.wait();          // elsewhere: done.set();
///
/// Keys: `mproc:{name}:flag` ("0"/"1") and the wake-up stream `mproc:{name}:w`
/// (docs/design/redis.md, "Event"). wait() checks the flag and, if clear, waits for a "set"
/// added after the check: a set() between the two is never missed.
/// Thread safety: one thread per object; open one per thread, process or machine.
/// Process safety: any number, each with its own object; never shared across fork().
/// Memory ordering: none beyond the flag itself.
/// If a peer dies: nothing is held, so nothing is left behind; a waiter waits on. If the server
///   restarts without persistence the flag is clear again.
#include <memory>
#include <string>
#include <string_view>

#include "mproc/detail/deadline.hpp"
#include "mproc/redis/address.hpp"

namespace mproc::redis {

class Event {
 public:
  static Event open(std::string_view address, Options options = {});
  static void unlink(std::string_view address, const Options& options = {});

  Event(Event&&) noexcept;
  Event& operator=(Event&&) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event();

  void set();
  void clear();
  bool is_set();
  /// Blocks until the flag is set.
  void wait() { (void)wait_until(mproc::detail::Deadline::forever()); }
  /// True if the flag was set before the timeout (Python's wait(timeout)).
  bool wait(mproc::detail::Timeout timeout) { return wait_until(timeout); }
  bool wait_for(mproc::detail::Timeout timeout) { return wait_until(timeout); }
  bool wait_until(mproc::detail::Deadline deadline);

 private:
  struct Impl;
  explicit Event(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mproc::redis
