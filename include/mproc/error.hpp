#pragma once
/// Errors raised by mproc.
///
/// One rule for the whole library: a member function not marked `noexcept` may throw
///  - `mproc::Error` when the operating system refuses something (it carries errno, the
///    operation and the object's name: `cannot open FileLock "/tmp/a.lock": Permission denied`);
///  - `mproc::UsageError` when the caller broke the contract: starting a process twice;
///    releasing or mark_consistent()-ing a Lock, RLock (the lock of a Value or Array included)
///    or FileLock that the caller does not hold; acquiring a Lock again from the thread that
///    holds it; waiting on or notifying a Condition without holding its lock; releasing a
///    BoundedSemaphore beyond its initial value (Python raises ValueError); creating a
///    SharedMemory of 0 bytes (Python's ValueError). It carries no errno;
///  - `mproc::Closed` from a put into a closed Queue;
///  - `mproc::OwnerDied` only from the std-style `lock()`/`try_lock*()` members and from the
///    members that take a lock for you (Value/Array get, set, update; Condition::wait_for),
///    when the previous owner of a lock died while holding it (see <mproc/lock.hpp>).
/// Ordinary outcomes (timed out, empty, full) are values, never exceptions.
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace mproc {

/// The operating system refused an operation. `code()` holds the errno value.
class Error : public std::system_error {
 public:
  /// `operation` says what was attempted ("cannot open"), `object` which object ("FileLock
  /// \"/tmp/a.lock\""); both appear in what().
  Error(int errno_value, std::string_view operation, std::string_view object = {});
};

/// The caller used an object in a way its contract forbids: a bug in the calling code, which
/// retrying cannot fix.
///
/// A std::logic_error, not an mproc::Error (a std::runtime_error): `catch (const mproc::Error&)`
/// does not catch it; `catch (const std::exception&)` catches both. Lock and RLock reported
/// their misuse (release or mark_consistent() without holding, re-acquiring a held Lock) as
/// mproc::Error with EPERM or EDEADLK before they followed this rule; a handler written for
/// that must now catch mproc::UsageError (or std::logic_error, or std::exception).
class UsageError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// Thrown by the std-style `lock()`/`try_lock*()` of mproc's locks when the previous owner died
/// while holding the lock and nobody has called `mark_consistent()` since. The lock has been
/// released again before the throw, so `std::scoped_lock` never leaves it held. To recover,
/// call `acquire()` (which reports `owner_died()` instead of throwing), repair the guarded
/// state, and call `mark_consistent()`.
class OwnerDied : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Thrown by a put into a Queue that was closed (close() is for good: producers learn it from
/// this exception, consumers from the end-of-queue result of get()).
class Closed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace mproc
