#pragma once
/// Listing and removing named objects: what the `mproc` command-line tool is built on.
#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mproc {

/// One named object found in /dev/shm.
struct NamedObjectInfo {
  std::string name;       ///< without the "mproc." prefix
  std::string kind;       ///< "Queue", "Lock", ...; "?" if its header cannot be read or is foreign
  std::size_t bytes = 0;  ///< size of its shared-memory file
  uid_t owner = 0;
  mode_t mode = 0;
  /// The process that created it, and whether that process is still running (pid and start
  /// time are compared, so a recycled pid does not count); 0 / nullopt if the header is unknown.
  pid_t creator_pid = 0;
  std::optional<bool> creator_alive;
  /// Whether some process has it open right now (holds a lease); nullopt if it cannot be told
  /// (another user's object, or no mproc header).
  std::optional<bool> in_use;
  bool persistent = false;  ///< created with Lifetime::persistent
  /// Queues only: messages waiting, capacity in bytes, and whether a consumer / producer is
  /// asleep on it right now.
  std::optional<std::size_t> depth, capacity;
  bool consumer_waiting = false, producer_waiting = false;
};

/// Every mproc object in /dev/shm that this user can see, sorted by name.
std::vector<NamedObjectInfo> list_named_objects();

/// Removes this user's stale objects and returns their names: those nobody has open that are
/// tracked (Lifetime::tracked: their last user died without closing them) or whose creator is
/// dead (Lifetime::persistent). An object some process has open is never removed, and neither
/// is a queue that still holds a message whose put() returned (it stays, and `mproc ls` shows
/// its depth, until it is drained or removed by name). What `mproc rm --stale` runs. With a
/// `prefix`, only names that start with it are considered (an application cleaning up after
/// itself, without touching anybody else's objects).
std::vector<std::string> remove_stale_named_objects(std::string_view prefix = {});

/// Whether a removal of stale objects may discard queues that still hold unread messages.
enum class DiscardUnread : bool { no, yes };
/// One object removed by remove_stale_named_objects(prefix, discard).
struct RemovedObject {
  std::string name;
  std::string kind;             ///< "Queue", "Lock", ...
  std::size_t unread_messages;  ///< messages a queue still held when it was removed (discarded)
};
/// As above, and says what each removed object was; with DiscardUnread::yes also removes stale
/// queues that still hold messages, and says how many each held (`mproc rm --stale --discard`).
std::vector<RemovedObject> remove_stale_named_objects(std::string_view prefix, DiscardUnread discard);

/// Removes the named object `name` of whatever kind, and its companion lock "<name>.lock" if it
/// has one (Value, Array, Condition). mproc::Error (ENOENT) if there is no such object.
void remove_named_object(std::string_view name);

}  // namespace mproc
