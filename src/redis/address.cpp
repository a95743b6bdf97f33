// Parsing object addresses: see <mproc/redis/address.hpp>.
#include <charconv>
#include <string>
#include <string_view>

#include "mproc/redis/address.hpp"

namespace mproc::redis {

namespace {

[[noreturn]] void bad(std::string_view url, const std::string& why) {
  throw UsageError("not a Redis object address: \"" + std::string(url) + "\" (" + why + ")");
}

int to_int(std::string_view url, std::string_view s, const char* what) {
  int v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty() || v < 0) {
    bad(url, std::string(what) + " \"" + std::string(s) + "\" is not a number");
  }
  return v;
}

void check_name(std::string_view url, std::string_view name) {
  if (name.empty()) bad(url, "no object name");
  for (const char c : name) {
    if (c <= ' ' || c > '~' || c == '{' || c == '}')
      bad(url, "the name holds a space, brace or control character");
  }
}

// key=value&key=value: name, password, user, db.
void parse_query(std::string_view url, std::string_view q, Address& a) {
  while (!q.empty()) {
    const std::size_t amp = q.find('&');
    const std::string_view kv = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    const std::size_t eq = kv.find('=');
    if (eq == std::string_view::npos) bad(url, "query item \"" + std::string(kv) + "\" has no '='");
    const std::string_view k = kv.substr(0, eq);
    const std::string_view v = kv.substr(eq + 1);
    if (k == "name") {
      a.name = v;
    } else if (k == "password") {
      a.password = v;
    } else if (k == "user") {
      a.user = v;
    } else if (k == "db") {
      a.db = to_int(url, v, "db");
    } else {
      bad(url, "unknown query item \"" + std::string(k) + "\"");
    }
  }
}

}  // namespace

bool is_address(std::string_view s) noexcept {
  return s.starts_with("redis://") || s.starts_with("unix://") || s.starts_with("rediss://");
}

Address Address::parse(std::string_view url) {
  Address a;
  if (url.starts_with("rediss://")) {
    bad(url, "TLS is not available: Debian's hiredis 0.14 has no TLS support (hiredis_ssl came in 1.0)");
  }
  std::string_view rest;
  std::string_view query;
  if (url.starts_with("unix://")) {
    rest = url.substr(7);
    const std::size_t qm = rest.find('?');
    if (qm != std::string_view::npos) query = rest.substr(qm + 1);
    a.unix_path = rest.substr(0, qm);
    if (a.unix_path.empty() || a.unix_path[0] != '/') bad(url, "a unix socket needs an absolute path");
    parse_query(url, query, a);
    check_name(url, a.name);
    return a;
  }
  if (!url.starts_with("redis://")) bad(url, "it starts with neither redis:// nor unix://");
  rest = url.substr(8);
  const std::size_t qm = rest.find('?');
  if (qm != std::string_view::npos) {
    query = rest.substr(qm + 1);
    rest = rest.substr(0, qm);
  }
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) a.name = rest.substr(slash + 1);
  const std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view cred = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const std::size_t colon = cred.find(':');
    if (colon == std::string_view::npos) {
      a.password = cred;  // redis://secret@host: a password alone
    } else {
      a.user = cred.substr(0, colon);
      a.password = cred.substr(colon + 1);
    }
  }
  const std::size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    a.port = to_int(url, authority.substr(colon + 1), "port");
    authority = authority.substr(0, colon);
  }
  a.host = authority.empty() ? "127.0.0.1" : std::string(authority);
  parse_query(url, query, a);
  check_name(url, a.name);
  return a;
}

std::string Address::str() const {
  std::string s = unix_path.empty() ? "redis://" + host + ":" + std::to_string(port) + "/" + name
                                    : "unix://" + unix_path + "?name=" + name;
  if (db != 0) s += (unix_path.empty() ? "?db=" : "&db=") + std::to_string(db);
  return s;
}

std::string Address::url() const {
  std::string q = "name=" + name;
  if (!password.empty()) q += "&password=" + password;
  if (!user.empty()) q += "&user=" + user;
  if (db != 0) q += "&db=" + std::to_string(db);
  if (!unix_path.empty()) return "unix://" + unix_path + "?" + q;
  std::string cred;
  if (!password.empty()) cred = user + ":" + password + "@";
  return "redis://" + cred + host + ":" + std::to_string(port) + "/" + name +
         (db != 0 ? "?db=" + std::to_string(db) : "");
}

Address Address::with_name(std::string_view other) const {
  Address a = *this;
  a.name = other;
  return a;
}

}  // namespace mproc::redis
