#pragma once
// What `mproc ls` shows of a queue on Redis, counted as the queue itself counts (a Queue from
// its consumer group, a JoinableQueue from its meta hash): docs/design/redis.md, "Queue".
#include <cstddef>
#include <string>

#include "redis/client.hpp"

namespace mproc::redis::detail {

struct QueueCounts {
  std::size_t unread = 0;   ///< put and not yet taken by any consumer
  std::size_t pending = 0;  ///< JoinableQueue: taken and not yet task_done (a Queue: 0)
};

/// The counts of the queue named `name` on the connection's server (zeros when it is gone).
QueueCounts queue_counts(Connection& c, const std::string& name);

}  // namespace mproc::redis::detail
