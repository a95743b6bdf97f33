#pragma once
// What the start methods share inside the process layer: the child spec a spawned or forkserver
// child runs (docs/design/start-methods.md), the hooks into Process's own state (process.cpp),
// and the two ways of starting a fresh child (spawn.cpp, forkserver.cpp).
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mproc/process.hpp"

namespace mproc::detail {

/// The environment variables that tell init() what this process is (start-methods.md).
inline constexpr const char* kSpawnVariable = "MPROC_SPAWN_FD";
inline constexpr const char* kForkserverVariable = "MPROC_FORKSERVER_FD";

/// Everything a fresh child needs to become the Process the parent started.
struct ChildSpec {
  std::string entry;  // the registered entry point's name
  std::string name;   // Process name
  std::vector<int> identity;
  bool daemon = false;
  ProcessInfo parent;
  std::vector<std::string> args;  // each argument, encoded for its parameter type
  /// Descriptors sent with the arguments (Travel): in the parent, its own; in a spawned child,
  /// the same numbers (inherited); a forkserver child gets the numbers the server received.
  std::vector<int> fds;
};

/// The most descriptors one child's arguments may travel with (one SCM_RIGHTS message to the
/// forkserver carries them with the spec and the status socket).
inline constexpr std::size_t kMaxTravellingFds = 32;

/// A child started by spawn or the forkserver. status_fd: -1 for a child of this process (reap it
/// with waitid); otherwise the socket on which the forkserver sends its StatusMessage.
struct Started {
  pid_t pid = 0;
  int pidfd = -1;
  int status_fd = -1;
};

/// One message from the forkserver about one child (on its status socket).
struct StatusMessage {
  enum Kind : std::int32_t { started = 1, failed = 2, exited = 3 };
  std::int32_t kind = 0;
  std::int32_t value = 0;  // started: pid; failed: errno; exited: exit code, -N for signal N
};

// ---- spawn.cpp -------------------------------------------------------------------------------
bool init_called() noexcept;
/// A memfd (close-on-exec) holding the encoded spec, positioned at 0.
int spec_fd(const ChildSpec& spec);
/// Starts a fresh exec of /proc/self/exe that runs `spec`.
Started spawn_child(const ChildSpec& spec);
/// In a fresh child: reads the spec from `fd`, becomes that child and runs its entry; never
/// returns. `real_parent`: the pid the daemon flag ties the child to (0: the spec's parent).
/// `received`: the descriptors the forkserver received for it (nullptr: a spawned child, which
/// inherited the spec's own).
[[noreturn]] void run_spec(int fd, pid_t real_parent, const std::vector<int>* received) noexcept;
/// Starts `path` (/proc/self/exe) with argv from init and the environment plus `var`=`fd`,
/// `fd` and `inherited` inherited (at the same numbers). Returns the pid; throws mproc::Error
/// naming `what`.
pid_t exec_self(const char* var, int fd, const std::string& what, const std::vector<int>& inherited = {});

// ---- travel.cpp ------------------------------------------------------------------------------
/// An argument that is one descriptor (Travel<T> of such a T): `fd` joins the descriptors sent
/// with the child (once, however many arguments name it), and the bytes say which it is.
std::string encode_descriptor(int fd, std::vector<int>& fds);
/// In the child: that descriptor, owned by the caller; `what` names it in an error.
int decode_descriptor(const std::string& bytes, const char* what);

// ---- forkserver.cpp --------------------------------------------------------------------------
/// Asks this process's forkserver (started on first use, restarted once if it died) for `spec`.
Started forkserver_child(const ChildSpec& spec);
/// The forkserver's loop, in the process exec'd for it; never returns.
[[noreturn]] void serve_forks(int control_fd) noexcept;

// ---- process.cpp -----------------------------------------------------------------------------
/// In a fresh child, before the target: take the name, identity, daemon flag and parent.
void become_child(const ChildSpec& spec);
/// Runs `run(ctx)` as a Process target and leaves with its exit code (exceptions printed, 1).
[[noreturn]] void run_target_and_exit(const std::string& name, void (*run)(const void*),
                                      const void* ctx) noexcept;
/// Opens a pidfd for a child just started; if it cannot, kills and reaps it and throws.
int track_child(pid_t pid, const std::string& what);

}  // namespace mproc::detail
