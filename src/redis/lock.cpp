// redis::Lock: the lease, its renewal thread and the fencing counter (docs/design/redis.md).
#include "mproc/redis/lock.hpp"

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "redis/client.hpp"
#include "redis/lua.hpp"
#include "redis/wait.hpp"

namespace mproc::redis {

namespace {

using detail::Reply;
using detail::Retry;
using detail::Script;
using std::chrono::milliseconds;

// KEYS: lease, fence, held, incons, w. ARGV: token, lease ms.
const Script kAcquire(MPROC_REDIS_LUA_LAST_ID R"lua(
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('SET', KEYS[4], '1') end
  redis.call('SET', KEYS[3], ARGV[1])
  return {'ok', fence, redis.call('EXISTS', KEYS[4])}
end
return {'busy', last_id(KEYS[5]), redis.call('PTTL', KEYS[1])}
)lua");

// Renew (ARGV[3] = 'renew') or release (ARGV[3] = 'release'): ARGV token, lease ms, what, fence.
// The hold is still ours if the lease holds our token, or if it expired and nobody acquired
// since (the fence is still ours and `held` still names us). Returns 1 (ours) or 0 (lost).
const Script kRenewRelease(R"lua(
local mine = redis.call('GET', KEYS[1]) == ARGV[1]
if not mine then
  mine = redis.call('GET', KEYS[2]) == ARGV[4] and redis.call('GET', KEYS[3]) == ARGV[1]
         and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end
if not mine then return 0 end
if ARGV[3] == 'renew' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('XADD', KEYS[5], 'MAXLEN', 1, '*', 'released', 1)
end
return 1
)lua");

const Script kMarkConsistent(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[4])
return 1
)lua");

}  // namespace

struct Lock::Impl {
  detail::Connection conn;
  LockOptions options;
  std::string keys[5];
  std::string token;
  std::uint64_t fence = 0;
  bool held = false;
  std::atomic<bool> lost{false};

  std::mutex mu;  // guards stop and the renewal's wake-up
  std::condition_variable cv;
  bool stop = false;
  std::thread renewer;

  Impl(const Address& a, const LockOptions& o) : conn(a, o.connection), options(o) {
    const std::string p = "mproc:{" + a.name + "}:";
    keys[0] = p + "lease";
    keys[1] = p + "fence";
    keys[2] = p + "held";
    keys[3] = p + "incons";
    keys[4] = p + "w";
  }
  ~Impl() { stop_renewal(); }

  std::string object() const { return conn.object("redis::Lock"); }
  Reply run(const Script& s, std::span<const std::string_view> args, Retry retry, std::string_view what) {
    const std::string_view k[] = {keys[0], keys[1], keys[2], keys[3], keys[4]};
    Reply r = s.run(conn, k, args, retry, what);
    detail::check(r, what, object());
    return r;
  }

  void start_renewal();
  void stop_renewal() noexcept;
};

void Lock::Impl::start_renewal() {
  {
    const std::scoped_lock g(mu);
    stop = false;
  }
  lost = false;
  renewer = std::thread([this, c = detail::Connection(conn.address(), conn.options()), token = token,
                         fence = std::to_string(fence)]() mutable {
    const milliseconds period = std::max(milliseconds{1}, options.lease / 3);
    const std::string lease_ms = std::to_string(options.lease.count());
    auto last_ok = std::chrono::steady_clock::now();
    std::unique_lock g(mu);
    while (!cv.wait_for(g, period, [&] { return stop; })) {
      g.unlock();
      try {
        const std::string_view k[] = {keys[0], keys[1], keys[2], keys[3], keys[4]};
        const std::string_view args[] = {token, lease_ms, "renew", fence};
        const Reply r = kRenewRelease.run(c, k, args, Retry::safe, "renew the lease");
        if (!r.is_error() && r.integer() == 0) lost = true;
        if (!r.is_error()) last_ok = std::chrono::steady_clock::now();
      } catch (const std::exception&) {
        // Unreachable server: the lease may run out meanwhile; release() will tell.
      }
      g.lock();
      if (lost) break;
    }
    (void)last_ok;
  });
}

void Lock::Impl::stop_renewal() noexcept {
  if (!renewer.joinable()) return;
  {
    const std::scoped_lock g(mu);
    stop = true;
  }
  cv.notify_all();
  renewer.join();
}

Lock::Lock(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Lock::Lock(Lock&&) noexcept = default;
Lock& Lock::operator=(Lock&&) noexcept = default;
Lock::~Lock() {
  if (impl_ && impl_->held) {
    try {
      release();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor reports nothing
    }
  }
}

Lock Lock::open(std::string_view address, LockOptions options) {
  return Lock(std::make_unique<Impl>(Address::parse(address), options));
}

void Lock::unlink(std::string_view address, const Options& options) {
  const Address a = Address::parse(address);
  detail::Connection c(a, options);
  const std::string p = "mproc:{" + a.name + "}:";
  const std::string k[] = {p + "lease", p + "fence", p + "held", p + "incons", p + "w"};
  const std::string_view args[] = {"DEL", k[0], k[1], k[2], k[3], k[4]};
  detail::check(c.run(args, Retry::safe, "unlink"), "unlink", c.object("redis::Lock"));
}

Held Lock::acquire_until(mproc::detail::Deadline deadline) {
  Impl& s = *impl_;
  if (s.held) throw UsageError("redis::Lock acquired again by the object that holds it (" + s.object() + ")");
  s.token = detail::random_token();
  const std::string lease_ms = std::to_string(s.options.lease.count());
  const std::string_view args[] = {s.token, lease_ms};
  for (;;) {
    const Reply r = s.run(kAcquire, args, Retry::never, "acquire");
    if (r[0].str() == "ok") {
      s.fence = static_cast<std::uint64_t>(r[1].integer());
      s.held = true;
      s.start_renewal();
      return {r[2].integer() == 1 ? Acquired::Status::owner_died : Acquired::Status::ok, s.fence};
    }
    const std::string last(r[1].str());
    const long long pttl = r[2].integer();
    const std::string_view key = s.keys[4];
    // Wake for a release, or when the lease would run out (an expiry adds nothing to w).
    const milliseconds cap{pttl > 0 ? pttl + 1 : 1};
    if (!detail::wait_streams(s.conn, {&key, 1}, {&last, 1}, deadline, cap)) {
      return {Acquired::Status::timed_out, 0};
    }
  }
}

void Lock::release() {
  Impl& s = *impl_;
  if (!s.held)
    throw UsageError("redis::Lock released by an object that does not hold it (" + s.object() + ")");
  s.stop_renewal();
  s.held = false;
  const std::string lease_ms = std::to_string(s.options.lease.count());
  const std::string fence = std::to_string(s.fence);
  const std::string_view args[] = {s.token, lease_ms, "release", fence};
  const Reply r = s.run(kRenewRelease, args, Retry::never, "release");
  const std::uint64_t f = s.fence;
  s.fence = 0;
  if (r.integer() == 0) {
    s.lost = true;
    throw LeaseLost("redis::Lock \"" + s.conn.address().str() + "\": the lease of the hold with fence " +
                    std::to_string(f) +
                    " ran out and another holder acquired the lock; work done under it may have overlapped "
                    "theirs");
  }
}

void Lock::mark_consistent() {
  Impl& s = *impl_;
  if (!s.held)
    throw UsageError("redis::Lock::mark_consistent() without holding the lock (" + s.object() + ")");
  const std::string_view args[] = {s.token};
  if (s.run(kMarkConsistent, args, Retry::safe, "mark_consistent").integer() == 0) {
    s.lost = true;
    throw LeaseLost("redis::Lock \"" + s.conn.address().str() +
                    "\": mark_consistent() after the lease was lost");
  }
}

bool Lock::held() const noexcept {
  return impl_ && impl_->held;
}
bool Lock::lost() const noexcept {
  return impl_ && impl_->lost;
}
std::uint64_t Lock::fence() const noexcept {
  return impl_ ? impl_->fence : 0;
}
std::string Lock::address() const {
  return impl_->conn.address().str();
}

}  // namespace mproc::redis
