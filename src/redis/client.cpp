// The RAII layer over hiredis: see client.hpp.
#include "redis/client.hpp"

#include <hiredis.h>
#include <poll.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace mproc::redis {

ConnectionLost::ConnectionLost(std::string_view operation, std::string_view object)
    : mproc::Error(ECONNRESET,
                   std::string(operation) +
                       ": the connection to Redis failed before the reply came back, so it may or may "
                       "not have taken effect; the next call reconnects",
                   object) {}

namespace detail {

bool ReplyView::is_nil() const noexcept {
  return r_ == nullptr || r_->type == REDIS_REPLY_NIL;
}
bool ReplyView::is_error() const noexcept {
  return r_ != nullptr && r_->type == REDIS_REPLY_ERROR;
}
bool ReplyView::is_array() const noexcept {
  return r_ != nullptr && r_->type == REDIS_REPLY_ARRAY;
}
bool ReplyView::is_integer() const noexcept {
  return r_ != nullptr && r_->type == REDIS_REPLY_INTEGER;
}
std::string_view ReplyView::str() const noexcept {
  if (r_ == nullptr) return {};
  if (r_->type == REDIS_REPLY_STRING || r_->type == REDIS_REPLY_STATUS || r_->type == REDIS_REPLY_ERROR) {
    return {r_->str, r_->len};
  }
  return {};
}
long long ReplyView::integer() const noexcept {
  return is_integer() ? r_->integer : 0;
}
std::size_t ReplyView::size() const noexcept {
  return is_array() ? r_->elements : 0;
}
ReplyView ReplyView::operator[](std::size_t i) const noexcept {
  return i < size() ? ReplyView(r_->element[i]) : ReplyView(nullptr);
}
long long ReplyView::to_integer() const {
  if (is_integer()) return r_->integer;
  const std::string_view s = str();
  long long v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) {
    throw mproc::Error(EBADMSG, "expected an integer from Redis, got \"" + std::string(s) + "\"");
  }
  return v;
}

Reply& Reply::operator=(Reply&& o) noexcept {
  if (this != &o) {
    if (r_ != nullptr) freeReplyObject(const_cast<redisReply*>(r_));  // NOLINT: hiredis's API
    r_ = std::exchange(o.r_, nullptr);
  }
  return *this;
}
Reply::~Reply() {
  if (r_ != nullptr) freeReplyObject(const_cast<redisReply*>(r_));  // NOLINT: hiredis's API
}

Connection::Connection(Address address, Options options) : address_(std::move(address)), options_(options) {}
Connection::Connection(Connection&& o) noexcept
    : address_(std::move(o.address_)),
      options_(o.options_),
      ctx_(std::exchange(o.ctx_, nullptr)),
      pid_(o.pid_) {}
Connection& Connection::operator=(Connection&& o) noexcept {
  if (this != &o) {
    drop();
    address_ = std::move(o.address_);
    options_ = o.options_;
    ctx_ = std::exchange(o.ctx_, nullptr);
    pid_ = o.pid_;
  }
  return *this;
}
Connection::~Connection() {
  drop();
}

void Connection::drop() noexcept {
  // In a forked child this closes only the child's copy of the socket: the parent's stays open.
  if (ctx_ != nullptr) redisFree(ctx_);
  ctx_ = nullptr;
}

std::string Connection::object(std::string_view kind) const {
  return std::string(kind) + " \"" + address_.str() + "\"";
}

namespace {
timeval to_timeval(std::chrono::milliseconds t) noexcept {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  return tv;
}

// argv/argvlen for hiredis, on the stack for the usual few arguments.
class Argv {
 public:
  explicit Argv(std::span<const std::string_view> args) {
    ptrs_.reserve(args.size());
    lens_.reserve(args.size());
    for (const std::string_view a : args) {
      ptrs_.push_back(a.data());
      lens_.push_back(a.size());
    }
  }
  int argc() const noexcept { return static_cast<int>(ptrs_.size()); }
  const char** argv() noexcept { return ptrs_.data(); }
  const std::size_t* argvlen() const noexcept { return lens_.data(); }

 private:
  std::vector<const char*> ptrs_;
  std::vector<std::size_t> lens_;
};
}  // namespace

void Connection::set_timeout(std::chrono::milliseconds t) noexcept {
  if (ctx_ != nullptr) (void)redisSetTimeout(ctx_, to_timeval(t));
}

bool Connection::connect_once(std::string& why) {
  const timeval tv = to_timeval(options_.connect_timeout);
  redisContext* c = address_.unix_path.empty()
                        ? redisConnectWithTimeout(address_.host.c_str(), address_.port, tv)
                        : redisConnectUnixWithTimeout(address_.unix_path.c_str(), tv);
  if (c == nullptr || c->err != 0) {
    why = c != nullptr ? c->errstr : "out of memory";
    if (c != nullptr) redisFree(c);
    return false;
  }
  ctx_ = c;
  pid_ = ::getpid();
  set_timeout(options_.command_timeout);
  auto setup = [&](std::span<const std::string_view> args, const char* step) {
    Argv a(args);
    Reply r(static_cast<redisReply*>(redisCommandArgv(ctx_, a.argc(), a.argv(), a.argvlen())));
    if (r.is_nil() && ctx_->err != 0) throw mproc::Error(EIO, std::string("cannot ") + step, object("Redis"));
    if (r.is_error()) {
      throw mproc::Error(EACCES, std::string("Redis refused ") + step + ": " + std::string(r.str()),
                         object("Redis"));
    }
  };
  if (!address_.password.empty()) {
    if (address_.user.empty()) {
      const std::string_view args[] = {"AUTH", address_.password};
      setup(args, "AUTH");
    } else {
      const std::string_view args[] = {"AUTH", address_.user, address_.password};
      setup(args, "AUTH");
    }
  }
  if (address_.db != 0) {
    const std::string db = std::to_string(address_.db);
    const std::string_view args[] = {"SELECT", db};
    setup(args, "SELECT");
  }
  return true;
}

void Connection::ensure() {
  if (ctx_ != nullptr && pid_ != ::getpid()) drop();  // inherited across fork: never share it
  if (ctx_ != nullptr) {
    // A connection the server closed while we were idle (a restart, CLIENT KILL, an idle
    // timeout) would take the next command and answer EOF: a state-changing command would
    // then be reported as "may or may not have run" although it never left. Nothing is due to
    // arrive between commands, so a readable socket means EOF (or garbage): reconnect first.
    pollfd p{ctx_->fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) == 0) return;
    drop();
  }
  const auto give_up = std::chrono::steady_clock::now() + options_.reconnect_timeout;
  auto pause = std::chrono::milliseconds{10};
  std::string why;
  while (!connect_once(why)) {
    if (std::chrono::steady_clock::now() + pause > give_up) {
      throw mproc::Error(ECONNREFUSED, "cannot connect to Redis (" + why + ")", object("server"));
    }
    std::this_thread::sleep_for(pause);  // back-off between attempts, not synchronisation
    pause = std::min(pause * 2, std::chrono::milliseconds{500});
  }
}

namespace {
// A server still loading its data after a restart refuses every command without running it:
// such a command is sent again after a back-off, within the reconnect timeout.
class LoadingWait {
 public:
  explicit LoadingWait(std::chrono::milliseconds limit) : limit_(limit) {}
  /// True when `r` is a LOADING refusal and there is time to try again (after a pause).
  bool again(const Reply& r) {
    if (!r.is_error() || !r.str().starts_with("LOADING")) return false;
    const auto now = std::chrono::steady_clock::now();
    if (!started_) {
      started_ = true;
      until_ = now + limit_;
    }
    if (now >= until_) return false;
    std::this_thread::sleep_for(pause_);  // back-off, not synchronisation
    pause_ = std::min(pause_ * 2, std::chrono::milliseconds{200});
    return true;
  }

 private:
  std::chrono::milliseconds limit_;
  bool started_ = false;
  std::chrono::steady_clock::time_point until_{};
  std::chrono::milliseconds pause_{5};
};
}  // namespace

Reply Connection::run(std::span<const std::string_view> args, Retry retry, std::string_view what,
                      std::chrono::milliseconds extra) {
  Argv a(args);
  LoadingWait loading(options_.reconnect_timeout);
  for (int attempt = 0;; ++attempt) {
    ensure();
    if (extra.count() != 0) set_timeout(options_.command_timeout + extra);
    auto* raw = static_cast<redisReply*>(redisCommandArgv(ctx_, a.argc(), a.argv(), a.argvlen()));
    if (raw != nullptr) {
      if (extra.count() != 0) set_timeout(options_.command_timeout);
      Reply r(raw);
      if (loading.again(r)) continue;
      return r;
    }
    drop();
    if (retry == Retry::never) throw ConnectionLost(what, object("Redis"));
    // A server that accepts connections and then fails every command: not forever.
    if (attempt >= 64)
      throw mproc::Error(EIO, std::string(what) + ": the server keeps failing", object("Redis"));
  }
}

std::vector<Reply> Connection::run_many(std::span<const std::span<const std::string_view>> commands,
                                        Retry retry, std::string_view what) {
  LoadingWait loading(options_.reconnect_timeout);
  std::vector<Reply> out;
  out.reserve(commands.size());
  for (int attempt = 0;; ++attempt) {
    ensure();
    bool sent = true;
    for (const auto& cmd : commands) {
      Argv a(cmd);
      if (redisAppendCommandArgv(ctx_, a.argc(), a.argv(), a.argvlen()) != REDIS_OK) sent = false;
    }
    out.clear();
    bool lost = !sent;
    for (std::size_t i = 0; !lost && i < commands.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
        lost = true;
        break;
      }
      out.emplace_back(static_cast<redisReply*>(raw));
    }
    if (!lost) {
      // A loading server refuses every command of the batch without running any.
      if (!out.empty() && loading.again(out.front())) continue;
      return out;
    }
    drop();
    if (retry == Retry::never) throw ConnectionLost(what, object("Redis"));
    if (attempt >= 64)
      throw mproc::Error(EIO, std::string(what) + ": the server keeps failing", object("Redis"));
  }
}

const Reply& check(const Reply& r, std::string_view what, std::string_view object) {
  if (!r.is_error()) return r;
  const std::string_view msg = r.str();
  if (msg.starts_with("WRONGTYPE")) {
    throw mproc::Error(EPROTOTYPE,
                       std::string(what) + ": a key of this object holds the wrong kind of Redis value (" +
                           std::string(msg) + ")",
                       object);
  }
  throw mproc::Error(EIO, std::string(what) + ": Redis said \"" + std::string(msg) + "\"", object);
}

Script::Script(const char* source) : source_(source) {}

Reply Script::run(Connection& c, std::span<const std::string_view> keys,
                  std::span<const std::string_view> args, Retry retry, std::string_view what) const {
  auto load = [&] {
    const std::string_view cmd[] = {"SCRIPT", "LOAD", source_};
    Reply r = c.run(cmd, Retry::safe, "load a script");
    check(r, "load a script", c.object("Redis"));
    return std::string(r.str());
  };
  std::call_once(loaded_, [&] { sha_ = load(); });
  std::vector<std::string_view> argv;
  argv.reserve(3 + keys.size() + args.size());
  char nkeys[24];
  argv.insert(argv.end(), {"EVALSHA", sha_, decimal(static_cast<long long>(keys.size()), nkeys)});
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  Reply r = c.run(argv, retry, what);
  if (r.is_error() && r.str().starts_with("NOSCRIPT")) {  // a restarted server: it never ran
    (void)load();
    r = c.run(argv, retry, what);
  }
  return r;
}

std::string_view decimal(long long v, char (&buf)[24]) noexcept {
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return {buf, static_cast<std::size_t>(res.ptr - buf)};
}

std::string random_token() {
  // Reseeded in a forked child: parent and child must never draw the same tokens.
  thread_local std::mt19937_64 gen;
  thread_local pid_t seeded_for = 0;
  if (seeded_for != ::getpid()) {
    seeded_for = ::getpid();
    gen.seed(std::random_device{}() ^ (static_cast<std::uint64_t>(seeded_for) << 32));
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(gen()),
                static_cast<unsigned long long>(gen()));
  return buf;
}

std::string consumer_name() {
  char host[256] = {};
  (void)::gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + random_token().substr(0, 8);
}

}  // namespace detail
}  // namespace mproc::redis
