// redis::Queue and JoinableQueue: the client side of the scripts in queue_scripts.hpp.
// docs/design/redis.md says what each step does in the server, and why.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <deque>
#include <exception>
#include <string>
#include <vector>

#include "mproc/redis/queue.hpp"
#include "redis/client.hpp"
#include "redis/queue_counts.hpp"
#include "redis/queue_scripts.hpp"
#include "redis/wait.hpp"

namespace mproc::redis::detail {

namespace {

using mproc::detail::Deadline;
using std::chrono::milliseconds;

const Script& script(const char* source) {
  // One Script per source for the whole process: its SHA1 is the same on every connection.
  static const Script create(kCreateScript), put(kPutScript), get(kGetScript), done(kDoneScript),
      join(kJoinScript), close(kCloseScript), dead(kDeadScript), queue_put(kQueuePutScript),
      queue_empty(kQueueEmptyScript), queue_size(kQueueSizeScript);
  if (source == kCreateScript) return create;
  if (source == kQueuePutScript) return queue_put;
  if (source == kQueueEmptyScript) return queue_empty;
  if (source == kQueueSizeScript) return queue_size;
  if (source == kPutScript) return put;
  if (source == kGetScript) return get;
  if (source == kDoneScript) return done;
  if (source == kJoinScript) return join;
  if (source == kCloseScript) return close;
  return dead;
}

// One stream entry taken from the group and not yet handed to the caller.
struct Entry {
  std::string id;
  bool well_formed = false;
  std::uint32_t tag = 0;
  std::string data;
  std::vector<std::string> fields;  // as received, for the dead-letter stream
};

Entry parse_entry(ReplyView e) {
  Entry out;
  out.id = e[0].str();
  const ReplyView f = e[1];
  bool have_t = false;
  bool have_d = false;
  for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
    const std::string_view k = f[i].str();
    const std::string_view v = f[i + 1].str();
    out.fields.emplace_back(k);
    out.fields.emplace_back(v);
    if (k == "t") {
      unsigned long tag = 0;
      const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), tag);
      have_t = ec == std::errc{} && p == v.data() + v.size() && tag <= 0xffffffffUL;
      out.tag = static_cast<std::uint32_t>(tag);
    } else if (k == "d") {
      out.data = v;
      have_d = true;
    }
  }
  out.well_formed = have_t && have_d;
  return out;
}

}  // namespace

struct QueueCore::Impl {
  Connection conn;
  std::string q, m, e, dead, pw;
  bool joinable;
  bool bounded = false;  // max_messages > 0, as the queue was created
  QueueOptions options;
  std::string type_name;
  std::string consumer;
  pid_t pid = ::getpid();
  std::deque<Entry> buffered;         // taken from the group, not yet returned by get
  std::deque<std::string> delivered;  // JoinableQueue: returned by get, not yet task_done
  // Queue: the last id this object took, and how many it took since it last trimmed the stream
  // up to one it took (every entry before an id the group delivered was delivered).
  std::string trim_id;
  std::size_t untrimmed = 0;

  Impl(const Address& a, bool j, const QueueOptions& o, std::string type)
      : conn(a, o.connection),
        q("mproc:{" + a.name + "}:q"),
        m("mproc:{" + a.name + "}:m"),
        e("mproc:{" + a.name + "}:e"),
        dead("mproc:{" + a.name + "}:dead"),
        pw("mproc:{" + a.name + "}:pw"),
        joinable(j),
        options(o),
        type_name(std::move(type)),
        consumer(consumer_name()) {}

  std::string object() const { return conn.object(joinable ? "redis::JoinableQueue" : "redis::Queue"); }

  Reply run(const char* source, std::span<const std::string_view> args, Retry retry, std::string_view what) {
    after_fork();
    const std::string_view keys[] = {q, m, e, dead, pw};
    Reply r = script(source).run(conn, keys, args, retry, what);
    check(r, what, object());
    return r;
  }

  // A forked child is another consumer: what the parent was given stays the parent's.
  void after_fork() {
    if (pid == ::getpid()) return;
    pid = ::getpid();
    consumer = consumer_name();
    buffered.clear();
    delivered.clear();
  }

  [[noreturn]] void gone() const {
    throw mproc::Error(ENOENT,
                       "cannot use it: its keys are gone (was it unlinked, or was the server restarted "
                       "without persistence?)",
                       object());
  }

  void open(OpenHow how, std::uint32_t tag);
  bool fetch(std::size_t max, std::string& last_q, std::string& last_e);
  bool fetch_plain(std::size_t max, std::string& last_q, std::string& last_e);
  std::size_t read_plain(std::size_t max);
  // How long a putter that finds the queue full waits before it runs the put script again
  // (one slice and the round trip after it): its "waiting" flag lasts that long. 0: no wait.
  std::string_view wait_arg(Deadline deadline, char (&buf)[24]) const {
    if (deadline.when() <= mproc::detail::Clock::now()) return "0";
    return decimal((conn.options().wait_slice + conn.options().command_timeout).count(), buf);
  }
  const char* put_script() const { return joinable ? kPutScript : kQueuePutScript; }
  void dead_letter(const Entry& entry, std::string_view why);
  [[noreturn]] void report(const Entry& entry, const std::exception_ptr& err);
  bool fill(std::size_t max, Deadline deadline);
  std::size_t deliver(mproc::detail::BatchTaker take, std::size_t max);
};

void QueueCore::Impl::open(OpenHow how, std::uint32_t tag) {
  char tag_buf[24];
  char max_buf[24];
  const std::string_view how_s = how == OpenHow::create ? "create"
                                 : how == OpenHow::open ? "open"
                                                        : "open_or_create";
  const std::string_view kind = joinable ? "joinable" : "queue";
  const std::string_view args[] = {how_s, kind, decimal(tag, tag_buf), type_name,
                                   decimal(static_cast<long long>(options.max_messages), max_buf)};
  const Reply r = run(kCreateScript, args, Retry::safe, "cannot open");
  const std::string_view st = r[0].str();
  if (st == "exists") throw mproc::Error(EEXIST, "cannot create", object());
  if (st == "missing") throw mproc::Error(ENOENT, "cannot open", object());
  if (st == "wrongtype") {
    throw mproc::Error(EPROTOTYPE,
                       "cannot open: key " + std::string(r[1].str()) + " holds a Redis " +
                           std::string(r[2].str()) + ", not what a queue keeps there",
                       object());
  }
  bounded = options.max_messages > 0;
  if (st == "opened") {
    bounded = r[4].str() != "0";
    if (r[1].str() != kind) {
      throw mproc::Error(EINVAL,
                         "cannot open: it is a " + std::string(r[1].str()) + ", not a " + std::string(kind),
                         object());
    }
    if (r[2].str() != decimal(tag, tag_buf)) {
      // EINVAL, as a named shared-memory queue of another type (one contract, two backends).
      throw mproc::Error(EINVAL,
                         "cannot open (its elements are " + std::string(r[3].str()) +
                             "; this program expects " + type_name + ")",
                         object());
    }
    if (!joinable && r[5].str() != "2") {
      throw mproc::Error(EINVAL,
                         "cannot open: it was made by an mproc whose Queue counted its unread messages in " +
                             m + " (layout " + std::string(r[5].str()) +
                             "); this one counts them with the stream's consumer group (layout 2). Drain it "
                             "with the program that made it, then unlink it",
                         object());
    }
  }
}

// Runs the get script for up to `max` entries into `buffered`. False: none; then `last_q`
// and `last_e` say where a wait starts, and the return of closed-and-drained is signalled by
// last_q being empty.
bool QueueCore::Impl::fetch(std::size_t max, std::string& last_q, std::string& last_e) {
  if (!joinable) return fetch_plain(max, last_q, last_e);
  char count[24];
  char vis[24];
  char deliveries[24];
  const std::string_view args[] = {consumer, decimal(static_cast<long long>(max), count),
                                   joinable ? "1" : "0", decimal(options.visibility_timeout.count(), vis),
                                   decimal(options.max_deliveries, deliveries)};
  const Reply r = run(kGetScript, args, Retry::never, "get");
  const std::string_view st = r[0].str();
  if (st == "gone") gone();
  if (st == "empty") {
    last_q = r[1].str() == "1" ? std::string() : std::string(r[2].str());
    last_e = r[3].str();
    return false;
  }
  const ReplyView list = r[1];
  for (std::size_t i = 0; i < list.size(); ++i) buffered.push_back(parse_entry(list[i]));
  return true;
}

// A Queue's get: one XREADGROUP NOACK (atomic on its own: a delivered entry is out of the
// group at once), in the same round trip as the trim of entries delivered earlier (every 64
// taken) and, for a bounded queue, GETDEL of the flag a waiting putter raised: a get that finds
// it posts "room" on e. docs/design/redis.md, "Queue", says why no putter is stranded.
std::size_t QueueCore::Impl::read_plain(std::size_t max) {
  constexpr std::size_t kTrimEvery = 64;
  char count[24];
  const std::string_view read[] = {
      "XREADGROUP", "GROUP",   "mproc", consumer, "COUNT", decimal(static_cast<long long>(max), count),
      "NOACK",      "STREAMS", q,       ">"};
  const std::string_view trim[] = {"XTRIM", q, "MINID", "~", trim_id};
  const std::string_view flag[] = {"GETDEL", pw};
  std::span<const std::string_view> cmds[3];
  std::size_t k = 0;
  const bool trimming = untrimmed >= kTrimEvery;
  if (trimming) cmds[k++] = trim;
  const std::size_t at = k;
  cmds[k++] = read;
  if (bounded) cmds[k++] = flag;
  const std::vector<Reply> rs = conn.run_many({cmds, k}, Retry::never, "get");
  // The entries first: they are delivered already, so nothing below may throw them away.
  const Reply& r = rs[at];
  if (r.is_error() && r.str().starts_with("NOGROUP")) gone();
  check(r, "get", object());
  const std::size_t got = r.is_nil() || r.size() == 0 ? 0 : r[0][1].size();
  for (std::size_t i = 0; i < got; ++i) buffered.push_back(parse_entry(r[0][1][i]));
  if (trimming) untrimmed = 0;
  if (got > 0) {
    trim_id = buffered.back().id;
    untrimmed += got;
  }
  if (bounded && !check(rs[at + 1], "get", object()).is_nil()) {
    // A putter waits for room (its flag is taken now: post before anything below may throw).
    // Posting it twice is harmless: it runs its script again.
    const std::string_view wake[] = {"XADD", e, "MAXLEN", "1", "*", "room", "1"};
    check(conn.run(wake, Retry::safe, "wake a putter"), "wake a putter", object());
  }
  if (trimming) check(rs[0], "trim the stream", object());
  return got;
}

bool QueueCore::Impl::fetch_plain(std::size_t max, std::string& last_q, std::string& last_e) {
  for (;;) {
    if (read_plain(max) > 0) return true;
    const Reply st = run(kQueueEmptyScript, {}, Retry::safe, "get");
    const std::string_view what = st[0].str();
    if (what == "gone") gone();
    if (what == "again") continue;
    last_q = st[1].str() == "1" ? std::string() : std::string(st[2].str());
    last_e = st[3].str();
    return false;
  }
}

void QueueCore::Impl::dead_letter(const Entry& entry, std::string_view why) {
  std::vector<std::string_view> args = {joinable ? "1" : "0", entry.id, why, consumer};
  for (const std::string& f : entry.fields) args.emplace_back(f);
  (void)run(kDeadScript, args, Retry::never, "move an entry to the dead-letter stream");
}

void QueueCore::Impl::report(const Entry& entry, const std::exception_ptr& err) {
  const std::string where = "; it was moved to the dead-letter stream " + dead;
  if (!entry.well_formed) {
    throw mproc::Error(
        EBADMSG,
        "cannot receive: stream entry " + entry.id + " is not an mproc message (no t/d fields)" + where,
        object());
  }
  if (err) {
    try {
      std::rethrow_exception(err);
    } catch (const mproc::Error& ex) {
      throw mproc::Error(EBADMSG, std::string(ex.what()) + " (entry " + entry.id + where + ")", object());
    }
  }
  throw mproc::Error(EBADMSG,
                     "cannot receive a message of type " + type_name + ": entry " + entry.id +
                         " was sent as another type (tag " + std::to_string(entry.tag) + ")" + where,
                     object());
}

QueueCore::QueueCore(std::string_view address, OpenHow how, bool joinable, const QueueOptions& options,
                     std::uint32_t tag, const std::string& type_name)
    : impl_(std::make_unique<Impl>(Address::parse(address), joinable, options, type_name)) {
  impl_->open(how, tag);
}
QueueCore::QueueCore(QueueCore&&) noexcept = default;
QueueCore& QueueCore::operator=(QueueCore&&) noexcept = default;
QueueCore::~QueueCore() = default;

bool QueueCore::put(std::uint32_t tag, const void* data, std::size_t size, Deadline deadline) {
  Impl& s = *impl_;
  char tag_buf[24];
  char wait_buf[24];
  const std::string_view args[] = {
      s.wait_arg(deadline, wait_buf), decimal(tag, tag_buf), {static_cast<const char*>(data), size}};
  for (;;) {
    const Reply r = s.run(s.put_script(), args, Retry::never, "put");
    const std::string_view st = r[0].str();
    if (st == "ok") return true;
    if (st == "closed") throw Closed("put into a closed " + s.object());
    if (st == "gone") s.gone();
    const std::string last_e(r[1].str());
    const std::string_view key = s.e;
    if (!wait_streams(s.conn, {&key, 1}, {&last_e, 1}, deadline, s.conn.options().wait_slice)) return false;
  }
}

std::size_t QueueCore::put_many(std::uint32_t tag, mproc::detail::MessageSource source, std::size_t count,
                                Deadline deadline) {
  Impl& s = *impl_;
  constexpr std::size_t kChunk = 256;  // messages per script call: bounds one script's run time
  char tag_buf[24];
  char wait_buf[24];
  std::vector<std::string> encoded;
  std::vector<std::string_view> args;
  std::size_t done = 0;
  while (done < count) {
    const std::size_t n = std::min(kChunk, count - done);
    encoded.resize(n);
    args.assign({s.wait_arg(deadline, wait_buf), decimal(tag, tag_buf)});
    for (std::size_t i = 0; i < n; ++i) {
      const void* data = nullptr;
      std::size_t size = 0;
      source(done + i, data, size);
      encoded[i].assign(static_cast<const char*>(data), size);
      args.emplace_back(encoded[i]);
    }
    const Reply r = s.run(s.put_script(), args, Retry::never, "put_many");
    const std::string_view st = r[0].str();
    if (st == "ok") {
      done += static_cast<std::size_t>(r[1].integer());
      continue;
    }
    if (st == "closed")
      throw Closed("put_many into a closed " + s.object() + " after " + std::to_string(done) + " messages");
    if (st == "gone") s.gone();
    const std::string last_e(r[1].str());
    const std::string_view key = s.e;
    if (!wait_streams(s.conn, {&key, 1}, {&last_e, 1}, deadline, s.conn.options().wait_slice)) break;
  }
  return done;
}

// Waits until `buffered` holds entries. False: timed out, or closed and drained.
bool QueueCore::Impl::fill(std::size_t max, Deadline deadline) {
  // A JoinableQueue's waiter wakes to look for work to reclaim: a dead consumer adds nothing.
  const milliseconds cap =
      joinable ? std::max(milliseconds{1}, options.visibility_timeout / 2) : conn.options().wait_slice;
  while (buffered.empty()) {
    std::string last[2];
    if (fetch(max, last[0], last[1])) break;
    if (last[0].empty()) return false;  // closed and drained
    const std::string_view keys[] = {q, e};
    if (!wait_streams(conn, keys, last, deadline, cap)) return false;
  }
  return true;
}

// Offers the buffered entries to `take`, in order.
std::size_t QueueCore::Impl::deliver(mproc::detail::BatchTaker take, std::size_t max) {
  std::size_t n = 0;
  while (n < max && !buffered.empty()) {
    const Entry& entry = buffered.front();
    bool took = false;
    std::exception_ptr err;
    if (entry.well_formed) {
      const mproc::detail::RecordView rv{reinterpret_cast<const std::byte*>(entry.data.data()),
                                         entry.data.size(), nullptr, 0, entry.tag};
      try {
        took = take(n, rv);
      } catch (const mproc::Error&) {
        err = std::current_exception();
      }
    }
    if (took) {
      if (joinable) delivered.push_back(entry.id);
      buffered.pop_front();
      ++n;
      continue;
    }
    if (n > 0) break;  // return what was taken; the next call reports this one
    Entry bad = std::move(buffered.front());
    buffered.pop_front();
    dead_letter(bad, !bad.well_formed ? "malformed" : err ? "undecodable" : "type");
    report(bad, err);
  }
  return n;
}

std::size_t QueueCore::get(mproc::detail::BatchTaker take, std::size_t max, Deadline deadline) {
  Impl& s = *impl_;
  s.after_fork();
  if (!s.fill(max, deadline)) return 0;
  return s.deliver(take, max);
}

std::size_t QueueCore::qsize() {
  if (!impl_->joinable) {
    const Reply r = impl_->run(kQueueSizeScript, {}, Retry::safe, "qsize");
    if (r[0].str() == "gone") impl_->gone();
    return static_cast<std::size_t>(r[1].integer());
  }
  const std::string_view args[] = {"HGET", impl_->m, "unread"};
  const Reply r = impl_->conn.run(args, Retry::safe, "qsize");
  check(r, "qsize", impl_->object());
  if (r.is_nil()) impl_->gone();
  return static_cast<std::size_t>(r.to_integer());
}

bool QueueCore::full() {
  if (!impl_->joinable) {
    const Reply r = impl_->run(kQueueSizeScript, {}, Retry::safe, "full");
    if (r[0].str() == "gone") impl_->gone();
    return r[2].integer() > 0 && r[1].integer() >= r[2].integer();
  }
  const std::string_view args[] = {"HMGET", impl_->m, "max", "unread"};
  const Reply r = impl_->conn.run(args, Retry::safe, "full");
  check(r, "full", impl_->object());
  if (r[0].is_nil()) impl_->gone();
  const long long max = r[0].to_integer();
  return max > 0 && r[1].to_integer() >= max;
}

void QueueCore::close() {
  const Reply r = impl_->run(kCloseScript, {}, Retry::safe, "close");
  if (r.integer() == 0) impl_->gone();
}

bool QueueCore::closed() {
  const std::string_view args[] = {"HGET", impl_->m, "closed"};
  const Reply r = impl_->conn.run(args, Retry::safe, "closed");
  check(r, "closed", impl_->object());
  if (r.is_nil()) impl_->gone();
  return r.str() == "1";
}

std::size_t QueueCore::dead_letters() {
  const std::string_view args[] = {"XLEN", impl_->dead};
  const Reply r = impl_->conn.run(args, Retry::safe, "dead_letters");
  check(r, "dead_letters", impl_->object());
  return static_cast<std::size_t>(r.integer());
}

std::string QueueCore::address() const {
  return impl_->conn.address().str();
}
const std::string& QueueCore::consumer() const noexcept {
  return impl_->consumer;
}

void QueueCore::task_done() {
  Impl& s = *impl_;
  s.after_fork();
  if (s.delivered.empty()) {
    throw UsageError("task_done() called more times than get() returned messages (" + s.object() + ")");
  }
  const std::string id = std::move(s.delivered.front());
  s.delivered.pop_front();  // even if the reply is lost: then the message is redelivered
  const std::string_view args[] = {id};
  (void)s.run(kDoneScript, args, Retry::never, "task_done");
}

bool QueueCore::join(Deadline deadline) {
  Impl& s = *impl_;
  for (;;) {
    const Reply r = s.run(kJoinScript, {}, Retry::safe, "join");
    if (r[0].integer() == 0) return true;
    const std::string last(r[1].str());
    const std::string_view key = s.e;
    if (!wait_streams(s.conn, {&key, 1}, {&last, 1}, deadline, s.conn.options().wait_slice)) return false;
  }
}

std::size_t QueueCore::unfinished() {
  const std::string_view args[] = {"XLEN", impl_->q};
  const Reply r = impl_->conn.run(args, Retry::safe, "unfinished_tasks");
  check(r, "unfinished_tasks", impl_->object());
  return static_cast<std::size_t>(r.integer());
}

QueueCounts queue_counts(Connection& c, const std::string& name) {
  const std::string p = "mproc:{" + name + "}:";
  const std::string q = p + "q";
  const std::string m = p + "m";
  const std::string_view kind_args[] = {"HMGET", m, "kind", "unread"};
  const Reply meta = c.run(kind_args, Retry::safe, "ls");
  check(meta, "ls", c.object("redis::Queue"));
  const std::string_view len_args[] = {"XLEN", q};
  const Reply len = c.run(len_args, Retry::safe, "ls");
  QueueCounts out;
  if (meta[0].str() == "joinable") {
    out.unread = static_cast<std::size_t>(std::max(0LL, meta[1].is_nil() ? 0LL : meta[1].to_integer()));
    if (len.is_integer())
      out.pending =
          static_cast<std::size_t>(std::max(0LL, len.integer() - static_cast<long long>(out.unread)));
    return out;
  }
  const std::string_view keys[] = {q, m};
  const Reply r = script(kQueueSizeScript).run(c, keys, {}, Retry::safe, "ls");
  if (!r.is_error() && r[0].str() == "ok") out.unread = static_cast<std::size_t>(r[1].integer());
  return out;
}

void QueueCore::unlink(std::string_view address, const Options& options) {
  const Address a = Address::parse(address);
  Connection c(a, options);
  const std::string p = "mproc:{" + a.name + "}:";
  const std::string keys[] = {p + "q", p + "m", p + "e", p + "dead", p + "pw"};
  const std::string_view args[] = {"DEL", keys[0], keys[1], keys[2], keys[3], keys[4]};
  check(c.run(args, Retry::safe, "unlink"), "unlink", c.object("redis::Queue"));
}

}  // namespace mproc::redis::detail
