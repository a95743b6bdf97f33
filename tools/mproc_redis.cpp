// The `mproc` tool's commands on Redis objects: see mproc_redis.hpp. Exit codes as the tool's
// (0 success, 1 timed out or closed and empty, 3 an error).
#include "mproc_redis.hpp"
#include "run_command.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>

#ifdef MPROC_HAVE_REDIS
#include <mproc/redis/lock.hpp>
#include <mproc/redis/queue.hpp>

#include "redis/client.hpp"
#include "redis/queue_counts.hpp"
#endif

namespace mproc_cli {

namespace {
constexpr int kOk = 0, kTimedOut = 1, kError = 3;
[[maybe_unused]] std::chrono::duration<double> seconds(double s) {
  return std::chrono::duration<double>(s);
}
}  // namespace

bool is_redis(const std::string& name) {
  return name.rfind("redis://", 0) == 0 || name.rfind("unix://", 0) == 0 || name.rfind("rediss://", 0) == 0;
}

#ifndef MPROC_HAVE_REDIS

namespace {
int unavailable() {
  std::fprintf(stderr, "mproc: this mproc was built without the Redis backend (hiredis was not found)\n");
  return kError;
}
}  // namespace
int redis_ls(const std::string&) {
  return unavailable();
}
int redis_put(const std::string&, const std::optional<std::string>&, double, bool) {
  return unavailable();
}
int redis_get(const std::string&, double, bool) {
  return unavailable();
}
int redis_lock(const std::string&, double, const std::vector<std::string>&) {
  return unavailable();
}

#else

namespace mr = mproc::redis;
using TextQueue = mr::Queue<std::string>;

namespace {

// `redis://host:6379/` (every object) or `redis://host/jobs*` (a glob on the names).
mr::Address ls_address(std::string url) {
  if (!url.empty() && url.back() == '/') url += "*";
  if (url.rfind("unix://", 0) == 0 && url.find("name=") == std::string::npos) {
    url += url.find('?') == std::string::npos ? "?name=*" : "&name=*";
  }
  return mr::Address::parse(url);
}

std::string field(mr::detail::Connection& c, const std::string& key, const char* f) {
  const std::string_view args[] = {"HGET", key, f};
  const auto r = c.run(args, mr::detail::Retry::safe, "ls");
  return std::string(r.str());
}

std::string get(mr::detail::Connection& c, const std::string& key) {
  const std::string_view args[] = {"GET", key};
  const auto r = c.run(args, mr::detail::Retry::safe, "ls");
  return std::string(r.str());
}

// Type names as people write them.
std::string short_type(std::string t) {
  const std::string s = "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
  for (std::size_t at; (at = t.find(s)) != std::string::npos;) t.replace(at, s.size(), "std::string");
  return t;
}

long long count(mr::detail::Connection& c, const char* cmd, const std::string& key) {
  const std::string_view args[] = {cmd, key};
  return c.run(args, mr::detail::Retry::safe, "ls").integer();
}

// The names of objects whose keys end in `suffix`, by SCAN (never KEYS: it blocks the server).
std::vector<std::string> scan(mr::detail::Connection& c, const std::string& pattern,
                              const std::string& suffix) {
  std::vector<std::string> names;
  std::string cursor = "0";
  const std::string match = "mproc:{" + pattern + "}:" + suffix;
  do {
    const std::string_view args[] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000"};
    const auto r = c.run(args, mr::detail::Retry::safe, "ls");
    mr::detail::check(r, "ls", c.object("server"));
    cursor = r[0].str();
    for (std::size_t i = 0; i < r[1].size(); ++i) {
      const std::string key(r[1][i].str());
      const std::size_t open = key.find('{');
      const std::size_t close = key.rfind('}');
      if (open != std::string::npos && close > open) names.push_back(key.substr(open + 1, close - open - 1));
    }
  } while (cursor != "0");
  return names;
}

}  // namespace

int redis_ls(const std::string& address) {
  const mr::Address a = ls_address(address);
  mr::detail::Connection c(a, {});
  std::printf("%-14s %-32s %-24s %8s %8s %6s %7s  %s\n", "KIND", "NAME", "TYPE", "UNREAD", "PENDING", "DEAD",
              "CLOSED", "BOUND");
  for (const std::string& n : scan(c, a.name, "m")) {
    const std::string p = "mproc:{" + n + "}:";
    const mr::detail::QueueCounts counts = mr::detail::queue_counts(c, n);
    const std::string max = field(c, p + "m", "max");
    std::printf("%-14s %-32s %-24s %8lld %8lld %6lld %7s  %s\n",
                field(c, p + "m", "kind") == "joinable" ? "JoinableQueue" : "Queue", n.c_str(),
                short_type(field(c, p + "m", "type")).c_str(), static_cast<long long>(counts.unread),
                static_cast<long long>(counts.pending), count(c, "XLEN", p + "dead"),
                field(c, p + "m", "closed") == "1" ? "yes" : "no", max == "0" ? "none" : max.c_str());
  }
  for (const std::string& n : scan(c, a.name, "fence")) {
    const std::string p = "mproc:{" + n + "}:";
    const long long ttl = count(c, "PTTL", p + "lease");
    const std::string state = ttl > 0 ? "held, lease " + std::to_string(ttl) + " ms left" : "free";
    std::printf("%-14s %-32s fence %-18s %s%s\n", "Lock", n.c_str(), get(c, p + "fence").c_str(),
                state.c_str(), count(c, "EXISTS", p + "incons") == 1 ? ", a holder died (inconsistent)" : "");
  }
  for (const std::string& n : scan(c, a.name, "flag")) {
    std::printf("%-14s %-32s %s\n", "Event", n.c_str(),
                get(c, "mproc:{" + n + "}:flag") == "1" ? "set" : "clear");
  }
  return kOk;
}

int redis_put(const std::string& address, const std::optional<std::string>& message, double timeout,
              bool lines) {
  auto q = TextQueue::open_or_create(address);
  auto put_one = [&](const std::string& text) {
    if (timeout < 0) {
      q.put(text);
      return true;
    }
    if (q.put_for(text, seconds(timeout))) return true;
    std::fprintf(stderr, "mproc queue put: timed out after %g s: \"%s\" stayed full\n", timeout,
                 q.address().c_str());
    return false;
  };
  if (message) return put_one(*message) ? kOk : kTimedOut;
  if (!lines) return put_one(std::string(std::istreambuf_iterator<char>(std::cin), {})) ? kOk : kTimedOut;
  for (std::string line; std::getline(std::cin, line);) {
    if (!put_one(line)) return kTimedOut;
  }
  return kOk;
}

int redis_get(const std::string& address, double timeout, bool create) {
  auto q = create ? TextQueue::open_or_create(address) : TextQueue::open(address);
  const auto got = timeout >= 0 ? q.get_for(seconds(timeout)) : q.get();
  if (!got) {
    std::fprintf(stderr, "mproc queue get: \"%s\" %s\n", q.address().c_str(),
                 q.closed() ? "is closed and empty" : "stayed empty until the timeout");
    return kTimedOut;
  }
  std::fwrite(got->data(), 1, got->size(), stdout);
  std::fputc('\n', stdout);
  return kOk;
}

int redis_lock(const std::string& address, double timeout, const std::vector<std::string>& command) {
  auto lock = mr::Lock::open(address);
  const mr::Held got = timeout >= 0 ? lock.acquire(seconds(timeout)) : lock.acquire();
  if (!got) {
    std::fprintf(stderr, "mproc lock: timed out after %g s waiting for lock \"%s\"\n", timeout,
                 lock.address().c_str());
    return kTimedOut;
  }
  if (got.owner_died()) {
    std::fprintf(stderr,
                 "mproc lock: the previous holder of \"%s\" died (its lease ran out) while holding it; the "
                 "state it guards may be inconsistent\n",
                 lock.address().c_str());
  }
  // The lease lives as long as this process renews it: if it is killed, the command dies with it
  // rather than run on beside the next holder (the fence covers a holder that is only paused).
  const int status = run_command(command, "MPROC_LOCK_FENCE", std::to_string(got.fence()), true);
  try {
    if (got.owner_died() && status == 0) lock.mark_consistent();
    lock.release();
  } catch (const mr::LeaseLost& e) {
    std::fprintf(stderr, "mproc lock: %s\n", e.what());
    return kError;
  }
  return status;
}

#endif  // MPROC_HAVE_REDIS

}  // namespace mproc_cli
