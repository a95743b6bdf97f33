#pragma once
/// Where a Redis-backed mproc object lives, and how to reach it: mproc::redis::Address,
/// mproc::redis::Options, and the errors particular to a server across a network.
///
///   redis://host[:port]/name                     TCP, port 6379 by default
///   redis://user:password@host:port/name         with AUTH (user: Redis 6+ ACL; Valkey too)
///   redis://:password@host/name                  AUTH with the password alone
///   unix:///run/redis/redis.sock?name=jobs       a unix socket (&password=…&user=…&db=…)
///   redis://host/name?db=2                       another database
///
/// TLS: not available. Debian's hiredis is 0.14, and hiredis gained TLS (hiredis_ssl) only in
/// 1.0; a `rediss://` address is refused with a clear error rather than sent in clear.
///
/// The design (keys, scripts, waits, reconnects, what can be duplicated or lost):
/// docs/design/redis.md.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "mproc/error.hpp"

namespace mproc::redis {

/// A parsed object address. Throws mproc::UsageError for a malformed one (naming what is wrong).
struct Address {
  std::string host;       ///< empty for a unix socket
  int port = 6379;        ///< TCP only
  std::string unix_path;  ///< empty for TCP
  std::string user;       ///< AUTH user (empty: the password alone, or no AUTH)
  std::string password;   ///< empty: no AUTH
  int db = 0;             ///< SELECT db when not 0
  std::string name;       ///< the object's name: its keys are mproc:{name}:...

  static Address parse(std::string_view url);
  /// The address again, without the password ("redis://h:6379/jobs"), for messages and listings.
  std::string str() const;
  /// The same server, another object.
  Address with_name(std::string_view other) const;
  /// The whole address, credentials included: what opens another object on the same server.
  std::string url() const;
};

/// Whether a string names a Redis object (starts with redis:// or unix://).
bool is_address(std::string_view s) noexcept;

/// Connection settings. The defaults suit a server on the same network.
struct Options {
  std::chrono::milliseconds connect_timeout{2000};
  /// How long an ordinary command may take before the connection is taken for dead.
  std::chrono::milliseconds command_timeout{5000};
  /// How long to keep trying to reconnect (10 ms doubling to 500 ms between tries) before a
  /// call fails with mproc::Error.
  std::chrono::milliseconds reconnect_timeout{10000};
  /// A wait with no deadline blocks in the server for at most this long per command, so that
  /// a dead connection is noticed within wait_slice + command_timeout.
  std::chrono::milliseconds wait_slice{1000};
};

/// The connection failed after a state-changing command was sent and before its reply came
/// back: the operation may or may not have taken effect (docs/design/redis.md, "Reconnect").
/// The next call reconnects. An mproc::Error with ECONNRESET.
class ConnectionLost : public mproc::Error {
 public:
  explicit ConnectionLost(std::string_view operation, std::string_view object);
};

/// A redis::Lock's lease expired (or was taken over) while the caller believed it held the
/// lock: thrown by release(). The fencing token of that hold is stale. See <mproc/redis/lock.hpp>.
class LeaseLost : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace mproc::redis
