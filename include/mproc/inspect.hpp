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
  std::string name;      ///< without the "mproc." prefix
  std::string kind;      ///< "Queue", "Lock", ...; "?" if its header cannot be read or is foreign
  std::size_t bytes = 0; ///< size of its shared-memory file
  uid_t owner = 0;
  mode_t mode = 0;
  /// Queues only: messages waiting, capacity in bytes, and whether a consumer / producer is
  /// asleep on it right now.
  std::optional<std::size_t> depth, capacity;
  bool consumer_waiting = false, producer_waiting = false;
};

/// Every mproc object in /dev/shm that this user can see, sorted by name.
std::vector<NamedObjectInfo> list_named_objects();

/// Removes the named object `name` of whatever kind, and its companion lock "<name>.lock" if it
/// has one (Value, Array, Condition). mproc::Error (ENOENT) if there is no such object.
void remove_named_object(std::string_view name);

}  // namespace mproc
