#pragma once
// The RAII layer over hiredis (0.14): a Reply owns a redisReply, a Connection owns a
// redisContext and reconnects with back-off; Script runs a Lua script by its SHA1, loading it
// again when the server has forgotten it. Nothing here parses RESP: hiredis does.
// The rules for which commands are retried after a lost connection: docs/design/redis.md.
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mproc/redis/address.hpp"

struct redisContext;
struct redisReply;

namespace mproc::redis::detail {

/// A non-owning view of one reply or one element of an array reply.
class ReplyView {
 public:
  ReplyView() noexcept = default;
  explicit ReplyView(const redisReply* r) noexcept : r_(r) {}
  bool is_nil() const noexcept;
  bool is_error() const noexcept;
  bool is_array() const noexcept;
  bool is_integer() const noexcept;
  /// The bytes of a string, status or error reply (empty for others).
  std::string_view str() const noexcept;
  long long integer() const noexcept;
  /// Elements of an array reply (0 for others).
  std::size_t size() const noexcept;
  ReplyView operator[](std::size_t i) const noexcept;
  /// A string reply as an integer; a string that is not one is an mproc::Error (EBADMSG).
  long long to_integer() const;

 protected:
  const redisReply* r_ = nullptr;
};

/// Owns one reply (and is a view of it).
class Reply : public ReplyView {
 public:
  explicit Reply(redisReply* r) noexcept : ReplyView(r) {}
  Reply(Reply&& o) noexcept : ReplyView(o.r_) { o.r_ = nullptr; }
  Reply& operator=(Reply&& o) noexcept;
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply();
};

/// Whether a command may be sent again after the connection failed with it in flight.
enum class Retry : bool {
  never,  ///< it changes state: report ConnectionLost instead
  safe,   ///< a read or a wait: reconnect and send it again
};

/// One connection to the server of an Address. Not thread-safe: one per object (and the
/// lock's renewal thread has its own).
class Connection {
 public:
  Connection(Address address, Options options);
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  /// Sends a command and returns its reply (an error reply is returned, not thrown). `extra`
  /// lengthens the socket timeout for this command (a BLOCK of that long). Throws
  /// ConnectionLost (Retry::never) or mproc::Error when the server cannot be reached within
  /// the reconnect timeout.
  Reply run(std::span<const std::string_view> args, Retry retry, std::string_view what,
            std::chrono::milliseconds extra = std::chrono::milliseconds{0});

  /// Several commands in one round trip (pipelined), their replies in order. As run(): a lost
  /// connection throws ConnectionLost (Retry::never: some of them may have run) or sends them
  /// all again (Retry::safe); a server still loading its data (it ran none of them) is waited
  /// for.
  std::vector<Reply> run_many(std::span<const std::span<const std::string_view>> commands, Retry retry,
                              std::string_view what);

  const Address& address() const noexcept { return address_; }
  const Options& options() const noexcept { return options_; }
  /// "Queue \"redis://h:6379/jobs\"" style name for messages.
  std::string object(std::string_view kind) const;
  /// Forgets the connection (the next command reconnects): for tests of reconnects.
  void drop() noexcept;

 private:
  void ensure();
  bool connect_once(std::string& why);
  void set_timeout(std::chrono::milliseconds t) noexcept;

  Address address_;
  Options options_;
  redisContext* ctx_ = nullptr;
  pid_t pid_ = 0;
};

/// A reply that must not be an error: throws mproc::Error naming `what` and the server's
/// message (WRONGTYPE becomes EPROTOTYPE: a key of another Redis type is in the way).
const Reply& check(const Reply& r, std::string_view what, std::string_view object);

/// A Lua script, run with EVALSHA (and loaded again on NOSCRIPT, which means it never ran).
class Script {
 public:
  explicit Script(const char* source);
  Reply run(Connection& c, std::span<const std::string_view> keys, std::span<const std::string_view> args,
            Retry retry, std::string_view what) const;

 private:
  const char* source_;
  mutable std::once_flag loaded_;
  mutable std::string sha_;  // SHA1 of the source, as the server names it; set once
};

/// `std::to_string` into a caller's buffer, as a view (no allocation).
std::string_view decimal(long long v, char (&buf)[24]) noexcept;

/// A random 128-bit token in hex, and a consumer name `host:pid:random`.
std::string random_token();
std::string consumer_name();

}  // namespace mproc::redis::detail
