#pragma once
// The `mproc` tool's commands on Redis objects (redis:// and unix:// addresses):
// ls ADDRESS, queue put|get ADDRESS, lock ADDRESS -- COMMAND. Built into the tool when the
// Redis backend is (MPROC_HAVE_REDIS); otherwise each says the tool was built without it.
#include <optional>
#include <string>
#include <vector>

namespace mproc_cli {

/// Whether a NAME argument is a Redis address rather than a shared-memory name.
bool is_redis(const std::string& name);

int redis_ls(const std::string& address);
int redis_put(const std::string& address, const std::optional<std::string>& message, double timeout,
              bool lines);
int redis_get(const std::string& address, double timeout, bool create);
/// Runs `command` while holding the Redis lock; the command finds the fencing token in
/// MPROC_LOCK_FENCE. The command is SIGKILLed if this process dies (the lease it renews lapses
/// then, and the next holder may enter); a holder that is only paused past its lease is what
/// the fence is for.
int redis_lock(const std::string& address, double timeout, const std::vector<std::string>& command);

}  // namespace mproc_cli
