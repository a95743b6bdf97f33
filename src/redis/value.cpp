// redis::Value: a hash with the type tag and the bytes; scripts for the writes that must check
// something in the same step (docs/design/redis.md, "Value").
#include "mproc/redis/value.hpp"

#include <cerrno>

#include "redis/client.hpp"

namespace mproc::redis::detail {

namespace {

// KEYS: the hash. ARGV: how (create|open|open_or_create), tag, type name, initial bytes.
// {'created'} | {'opened', tag, type} | {'exists'} | {'missing'} | {'wrongtype', type}
const Script kCreate(R"lua(
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'hash' then
  if ARGV[1] == 'create' then return {'exists'} end
  local m = redis.call('HMGET', KEYS[1], 'tag', 'type')
  return {'opened', m[1] or '', m[2] or ''}
end
if t ~= 'none' then return {'wrongtype', t} end
if ARGV[1] == 'open' then return {'missing'} end
redis.call('HSET', KEYS[1], 'tag', ARGV[2], 'type', ARGV[3], 'd', ARGV[4])
return {'created'}
)lua");

// ARGV: tag, bytes. {'ok'} | {'gone'} | {'type', type name}
const Script kSet(R"lua(
local m = redis.call('HMGET', KEYS[1], 'tag', 'type')
if not m[1] then return {'gone'} end
if m[1] ~= ARGV[1] then return {'type', m[2] or ''} end
redis.call('HSET', KEYS[1], 'd', ARGV[2])
return {'ok'}
)lua");

// ARGV: tag, expected bytes, desired bytes. {'ok'} | {'differs', current bytes} | {'gone'} |
// {'type', type name}
const Script kCas(R"lua(
local m = redis.call('HMGET', KEYS[1], 'tag', 'type', 'd')
if not m[1] then return {'gone'} end
if m[1] ~= ARGV[1] then return {'type', m[2] or ''} end
if m[3] ~= ARGV[2] then return {'differs', m[3] or ''} end
redis.call('HSET', KEYS[1], 'd', ARGV[3])
return {'ok'}
)lua");

}  // namespace

struct ValueCore::Impl {
  Connection conn;
  std::string key;
  std::string tag;
  std::string type_name;

  Impl(const Address& a, const Options& o, std::uint32_t t, std::string type)
      : conn(a, o), key("mproc:{" + a.name + "}:val"), tag(std::to_string(t)), type_name(std::move(type)) {}

  std::string object() const { return conn.object("redis::Value"); }

  Reply run(const Script& s, std::span<const std::string_view> args, Retry retry, std::string_view what) {
    const std::string_view keys[] = {key};
    Reply r = s.run(conn, keys, args, retry, what);
    check(r, what, object());
    return r;
  }

  [[noreturn]] void gone() const {
    throw mproc::Error(ENOENT,
                       "cannot use it: its key is gone (was it unlinked, or was the server restarted "
                       "without persistence?)",
                       object());
  }
  [[noreturn]] void other_type(std::string_view what, std::string_view theirs) const {
    // EINVAL, as a named shared-memory Value of another type.
    throw mproc::Error(EINVAL,
                       std::string(what) + " (its value is " + std::string(theirs) +
                           "; this program expects " + type_name + ")",
                       object());
  }
  // The status of a write script's reply: gone and another type become errors.
  std::string_view status(const Reply& r, std::string_view what) const {
    const std::string_view st = r[0].str();
    if (st == "gone") gone();
    if (st == "type") other_type(what, r[1].str());
    return st;
  }
};

ValueCore::ValueCore(std::string_view address, ValueHow how, const Options& options, std::uint32_t tag,
                     std::string type_name, std::string_view initial)
    : impl_(std::make_unique<Impl>(Address::parse(address), options, tag, std::move(type_name))) {
  Impl& s = *impl_;
  const std::string_view how_s = how == ValueHow::create ? "create"
                                 : how == ValueHow::open ? "open"
                                                         : "open_or_create";
  const std::string_view args[] = {how_s, s.tag, s.type_name, initial};
  const Reply r = s.run(kCreate, args, Retry::safe, "cannot open");
  const std::string_view st = r[0].str();
  if (st == "exists") throw mproc::Error(EEXIST, "cannot create", s.object());
  if (st == "missing") throw mproc::Error(ENOENT, "cannot open", s.object());
  if (st == "wrongtype") {
    throw mproc::Error(EPROTOTYPE,
                       "cannot open: key " + s.key + " holds a Redis " + std::string(r[1].str()) +
                           ", not the hash a Value keeps there",
                       s.object());
  }
  if (st == "opened" && r[1].str() != s.tag) s.other_type("cannot open", r[2].str());
}
ValueCore::ValueCore(ValueCore&&) noexcept = default;
ValueCore& ValueCore::operator=(ValueCore&&) noexcept = default;
ValueCore::~ValueCore() = default;

std::string ValueCore::get(std::size_t size) {
  Impl& s = *impl_;
  const std::string_view args[] = {"HMGET", s.key, "tag", "type", "d"};
  const Reply r = s.conn.run(args, Retry::safe, "get");
  check(r, "get", s.object());
  if (r[0].is_nil()) s.gone();
  if (r[0].str() != s.tag) s.other_type("cannot get", r[1].str());
  std::string bytes(r[2].str());
  if (bytes.size() != size) {
    throw mproc::Error(EBADMSG,
                       "cannot get: it holds " + std::to_string(bytes.size()) + " bytes, not the " +
                           std::to_string(size) + " of a " + s.type_name,
                       s.object());
  }
  return bytes;
}

void ValueCore::set(std::string_view bytes) {
  Impl& s = *impl_;
  const std::string_view args[] = {s.tag, bytes};
  (void)s.status(s.run(kSet, args, Retry::never, "set"), "cannot set");
}

bool ValueCore::compare_exchange(std::string_view expected, std::string_view desired, std::string& current) {
  Impl& s = *impl_;
  const std::string_view args[] = {s.tag, expected, desired};
  const Reply r = s.run(kCas, args, Retry::never, "compare_exchange");
  if (s.status(r, "cannot compare_exchange") == "ok") return true;
  current = r[1].str();
  if (current.size() != expected.size()) {
    throw mproc::Error(EBADMSG,
                       "cannot compare_exchange: it holds " + std::to_string(current.size()) +
                           " bytes, not the " + std::to_string(expected.size()) + " of a " + s.type_name,
                       s.object());
  }
  return false;
}

std::string ValueCore::address() const {
  return impl_->conn.address().str();
}

void ValueCore::unlink(std::string_view address, const Options& options) {
  const Address a = Address::parse(address);
  Connection c(a, options);
  const std::string key = "mproc:{" + a.name + "}:val";
  const std::string_view args[] = {"DEL", key};
  check(c.run(args, Retry::safe, "unlink"), "unlink", c.object("redis::Value"));
}

}  // namespace mproc::redis::detail
