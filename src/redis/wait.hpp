#pragma once
// Waiting for a change without polling: XREAD BLOCK on wake-up streams from the ids a script
// returned with its "nothing to do" answer (docs/design/redis.md, "Waiting without polling").
#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "mproc/detail/deadline.hpp"
#include "redis/client.hpp"

namespace mproc::redis::detail {

/// Blocks until an entry is added after `ids[i]` to one of `keys[i]`, or for one slice (at most
/// `cap`, at most Options::wait_slice), or until the deadline. False: the deadline had passed
/// (the caller gives up); true: look again. Reconnects and resumes across a dropped connection.
bool wait_streams(Connection& c, std::span<const std::string_view> keys, std::span<const std::string> ids,
                  mproc::detail::Deadline deadline, std::chrono::milliseconds cap);

}  // namespace mproc::redis::detail
