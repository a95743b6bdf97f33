// redis::Event: a flag and a wake-up stream (docs/design/redis.md, "Event").
#include "mproc/redis/event.hpp"

#include "redis/client.hpp"
#include "redis/lua.hpp"
#include "redis/wait.hpp"

namespace mproc::redis {

namespace {

using detail::Reply;
using detail::Retry;
using detail::Script;

// KEYS: flag, w.
const Script kSet(R"lua(
redis.call('SET', KEYS[1], '1')
redis.call('XADD', KEYS[2], 'MAXLEN', 1, '*', 'set', 1)
return 1
)lua");

const Script kCheck(MPROC_REDIS_LUA_LAST_ID R"lua(
if redis.call('GET', KEYS[1]) == '1' then return {1, ''} end
return {0, last_id(KEYS[2])}
)lua");

}  // namespace

struct Event::Impl {
  detail::Connection conn;
  std::string flag, w;
  Impl(const Address& a, const Options& o)
      : conn(a, o), flag("mproc:{" + a.name + "}:flag"), w("mproc:{" + a.name + "}:w") {}
  Reply run(const Script& s, std::string_view what) {
    const std::string_view k[] = {flag, w};
    Reply r = s.run(conn, k, {}, Retry::safe, what);
    detail::check(r, what, conn.object("redis::Event"));
    return r;
  }
};

Event::Event(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Event::Event(Event&&) noexcept = default;
Event& Event::operator=(Event&&) noexcept = default;
Event::~Event() = default;

Event Event::open(std::string_view address, Options options) {
  return Event(std::make_unique<Impl>(Address::parse(address), options));
}

void Event::unlink(std::string_view address, const Options& options) {
  const Address a = Address::parse(address);
  detail::Connection c(a, options);
  const std::string flag = "mproc:{" + a.name + "}:flag";
  const std::string w = "mproc:{" + a.name + "}:w";
  const std::string_view args[] = {"DEL", flag, w};
  detail::check(c.run(args, Retry::safe, "unlink"), "unlink", c.object("redis::Event"));
}

void Event::set() {
  (void)impl_->run(kSet, "set");
}

void Event::clear() {
  const std::string_view args[] = {"SET", impl_->flag, "0"};
  detail::check(impl_->conn.run(args, Retry::safe, "clear"), "clear", impl_->conn.object("redis::Event"));
}

bool Event::is_set() {
  const std::string_view args[] = {"GET", impl_->flag};
  const Reply r = impl_->conn.run(args, Retry::safe, "is_set");
  detail::check(r, "is_set", impl_->conn.object("redis::Event"));
  return r.str() == "1";
}

bool Event::wait_until(mproc::detail::Deadline deadline) {
  for (;;) {
    const Reply r = impl_->run(kCheck, "wait");
    if (r[0].integer() == 1) return true;
    const std::string last(r[1].str());
    const std::string_view key = impl_->w;
    if (!detail::wait_streams(impl_->conn, {&key, 1}, {&last, 1}, deadline,
                              impl_->conn.options().wait_slice)) {
      return false;
    }
  }
}

}  // namespace mproc::redis
