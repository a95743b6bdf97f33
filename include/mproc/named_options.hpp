#pragma once
/// How a named object is created: its permissions and its lifetime.
///
/// Every named primitive's `create` and `open_or_create` take a `NamedOptions` as their last
/// argument. A bare mode or a bare Lifetime converts to one:
///
///     auto q = mproc::Queue<Job>::create("jobs", 1 << 20);                  // 0600, tracked
///     auto l = mproc::Lock::create("db", 0660);                              // group may open it
///     auto m = mproc::SharedMemory::create("results", n, mproc::Lifetime::persistent);
///     auto s = mproc::Semaphore::create("slots", 4, {0640, mproc::Lifetime::persistent});
///
/// The lifetime rule (docs/design/named.md):
///  - Every process that has a named object open holds a shared lease on it (an OFD read lock
///    on its file, which the kernel drops when the process dies); a forked child that inherited
///    the object holds it too. "In use" means exactly "someone holds a lease".
///  - `Lifetime::tracked` (the default): the object is removed when it is no longer in use —
///    by the last process to close it, or, if the last user died (or exited without running
///    destructors), by the next mproc program that creates a named object (at most one sweep a
///    second per process), or by `mproc rm --stale`. Use it for objects that live as long as
///    the programs using them: a queue between a server and its clients, a lock among workers.
///    Note that a tracked Lock whose last user died holding it is removed with its owner-died
///    state; make a lock persistent if that state must reach a later program.
///  - `Lifetime::persistent`: the object stays until it is unlinked (`unlink(name)`,
///    `mproc rm NAME`), or until `mproc rm --stale` finds its creator dead and nobody using it.
///    Use it for results one program writes and exits, for another to read later.
///  - Nothing ever removes an object that a live process has open, except an explicit unlink
///    (which, as for any file, leaves the processes that have it open working on their copy).
#include <sys/types.h>

#include <cstdint>

namespace mproc {

enum class Lifetime : std::uint8_t {
  tracked,     ///< removed once no process has it open (the default)
  persistent,  ///< stays until unlinked
};

struct NamedOptions {
  mode_t mode = 0600;  ///< permissions, set exactly whatever the umask; 0600: this user only
  Lifetime lifetime = Lifetime::tracked;

  NamedOptions() = default;
  NamedOptions(mode_t m, Lifetime l = Lifetime::tracked) noexcept
      : mode(m), lifetime(l) {}                       // NOLINT: implicit
  NamedOptions(Lifetime l) noexcept : lifetime(l) {}  // NOLINT: implicit
};

}  // namespace mproc
