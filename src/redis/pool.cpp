// redis::Pool and run_worker: tasks through a JoinableQueue, results through a Queue per Pool
// object, dead letters read back as WorkerDied (see <mproc/redis/pool.hpp>).
#include "mproc/redis/pool.hpp"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>
#include <typeinfo>

#include "mproc/detail/demangle.hpp"
#include "mproc/process.hpp"
#include "mproc/redis/queue.hpp"
#include "redis/client.hpp"

namespace mproc::redis {

namespace detail {

namespace {
std::map<std::string, TaskFn>& registry() {
  static std::map<std::string, TaskFn> tasks;
  return tasks;
}
}  // namespace

void register_task(const std::string& name, TaskFn fn) {
  registry()[name] = std::move(fn);
}

void throw_bad_value(const std::string& type) {
  throw mproc::Error(EBADMSG, "redis::Pool: a task's argument or result is not a " + type);
}

// What travels: a task (to the workers) and its result (back to the Pool that submitted it).
struct TaskMsg {
  std::string id, name, arg, reply;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(id, name, arg, reply);
  }
};
struct ResultMsg {
  std::string id;
  bool ok = false;
  std::string value, error_type, error;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(id, ok, value, error_type, error);
  }
};

}  // namespace detail

namespace {

QueueOptions task_queue_options(const PoolOptions& o) {
  QueueOptions q;
  q.visibility_timeout = o.visibility_timeout;
  q.max_deliveries = o.max_attempts;
  q.connection = o.connection;
  return q;
}

detail::ResultMsg run_task(const detail::TaskMsg& t) {
  detail::ResultMsg r;
  r.id = t.id;
  const auto& tasks = detail::registry();
  const auto it = tasks.find(t.name);
  if (it == tasks.end()) {
    r.error_type = "mproc::redis::UnknownTask";
    r.error = "no task named \"" + t.name + "\" is registered in this worker (MPROC_REDIS_TASK)";
    return r;
  }
  try {
    r.value = it->second(t.arg);
    r.ok = true;
  } catch (const std::exception& e) {
    r.error_type = mproc::detail::demangle(typeid(e).name());
    r.error = e.what();
  }
  return r;
}

}  // namespace

int run_worker(std::string_view address, const PoolOptions& options) {
  const Address a = Address::parse(address);
  auto tasks = JoinableQueue<detail::TaskMsg>::open_or_create(a.with_name(a.name + "-tasks").url(),
                                                              task_queue_options(options));
  std::map<std::string, Queue<detail::ResultMsg>> replies;
  while (auto t = tasks.get()) {
    const detail::ResultMsg r = run_task(*t);
    auto it = replies.find(t->reply);
    if (it == replies.end()) {
      QueueOptions o;
      o.connection = options.connection;
      it = replies.emplace(t->reply, Queue<detail::ResultMsg>::open_or_create(a.with_name(t->reply).url(), o))
               .first;
    }
    it->second.put(r);
    tasks.task_done();
  }
  return 0;
}

namespace {

// What worker_main was asked for.
struct WorkerArgs {
  std::string address;
  long processes = 1;
  PoolOptions options;
  bool help = false;
};

class UsageProblem : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

long positive(std::string_view option, std::string_view text) {
  long v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v < 1) {
    throw UsageProblem(std::string(option) + " needs a whole number of at least 1, not \"" +
                       std::string(text) + "\"");
  }
  return v;
}

void set_option(WorkerArgs& out, std::string_view option, std::string_view value) {
  if (option == "--processes") {
    out.processes = positive(option, value);
  } else if (option == "--max-attempts") {
    out.options.max_attempts = static_cast<unsigned>(positive(option, value));
  } else if (option == "--visibility-timeout") {
    out.options.visibility_timeout = std::chrono::milliseconds{positive(option, value)};
  } else {
    throw UsageProblem("unknown option " + std::string(option));
  }
}

WorkerArgs parse_worker_args(int argc, char** argv) {
  WorkerArgs out;
  int i = 1;
  if (i < argc && std::string_view(argv[i]) == "worker") ++i;
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      out.help = true;
      return out;
    }
    if (a.starts_with("-")) {
      if (a != "--processes" && a != "--max-attempts" && a != "--visibility-timeout")
        throw UsageProblem("unknown option " + std::string(a));
      if (i + 1 >= argc) throw UsageProblem(std::string(a) + " needs a value");
      set_option(out, a, argv[++i]);
      continue;
    }
    if (!out.address.empty())
      throw UsageProblem("one address only (got " + out.address + " and " + std::string(a) + ")");
    out.address = a;
  }
  if (out.address.empty()) throw UsageProblem("which pool? give its address, e.g. redis://host/pool");
  (void)Address::parse(out.address);  // a bad address is a usage error, before anything starts
  return out;
}

void worker_usage(std::FILE* to, const char* program) {
  std::fprintf(
      to,
      "usage: %s [worker] ADDRESS [--processes N] [--max-attempts N] [--visibility-timeout MS]\n"
      "Runs the tasks this program registers (MPROC_REDIS_TASK) for the mproc::redis::Pool at ADDRESS\n"
      "(redis://[user[:password]@]host[:port]/pool or unix:///path.sock?name=pool) until the pool is\n"
      "closed.\n"
      "  --processes N           worker processes (default 1)\n"
      "  --max-attempts N        deliveries of a task before it is dead-lettered (default 3)\n"
      "  --visibility-timeout MS a task not finished within MS goes to another worker (default 30000)\n",
      program);
}

}  // namespace

int worker_main(int argc, char** argv) {
  const char* program = argc > 0 ? argv[0] : "worker";
  WorkerArgs args;
  try {
    args = parse_worker_args(argc, argv);
  } catch (const std::exception& e) {  // UsageProblem, or mproc::Error from Address::parse
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    worker_usage(stderr, program);
    return 2;
  }
  if (args.help) {
    worker_usage(stdout, program);
    std::printf("tasks:");
    for (const auto& [name, fn] : detail::registry()) std::printf(" %s", name.c_str());
    std::printf("\n");
    return 0;
  }
  auto one = [program](const std::string& address, const PoolOptions& options) {
    try {
      return run_worker(address, options);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", program, e.what());
      return 1;
    }
  };
  if (args.processes == 1) return one(args.address, args.options);
  std::vector<Process> workers;
  int rc = 0;
  try {
    for (long i = 0; i < args.processes; ++i) {
      Process w([one, address = args.address, options = args.options] {
        const int code = one(address, options);
        std::fflush(nullptr);
        ::_exit(code);  // the exit code is the outcome; the parent's atexit work is not the child's
      });
      w.start();
      workers.push_back(std::move(w));
    }
  } catch (const std::exception& e) {  // out of processes (EAGAIN), ...: the others still run
    std::fprintf(stderr, "%s: cannot start worker process %zu of %ld: %s\n", program, workers.size() + 1,
                 args.processes, e.what());
    rc = 1;
  }
  for (Process& w : workers) {
    w.join();
    const int code = w.exitcode().value_or(1);
    if (code != 0) {
      std::fprintf(stderr, "%s: worker process %d ended with %s %d\n", program,
                   static_cast<int>(w.pid().value_or(0)), code < 0 ? "signal" : "exit code",
                   code < 0 ? -code : code);
      rc = 1;
    }
  }
  return rc;
}

struct Pool::Impl {
  Address address;
  PoolOptions options;
  std::string reply;
  JoinableQueue<detail::TaskMsg> tasks;
  Queue<detail::ResultMsg> results;
  detail::Connection conn;                         // reads the dead-letter stream
  std::map<std::string, detail::ResultMsg> early;  // results that came before they were waited for
  std::string dead_seen = "-";                     // dead letters read so far (exclusive start)
  std::map<std::string, bool> died;                // task ids found in the dead-letter stream

  Impl(const Address& a, const PoolOptions& o, std::string r)
      : address(a),
        options(o),
        reply(std::move(r)),
        tasks(JoinableQueue<detail::TaskMsg>::open_or_create(a.with_name(a.name + "-tasks").url(),
                                                             task_queue_options(o))),
        results(Queue<detail::ResultMsg>::open_or_create(a.with_name(reply).url(), queue_options(o))),
        conn(a, o.connection) {}

  static QueueOptions queue_options(const PoolOptions& o) {
    QueueOptions q;
    q.connection = o.connection;
    return q;
  }

  // Reads new dead letters; remembers those of this Pool's tasks.
  void read_dead_letters() {
    const std::string key = "mproc:{" + address.name + "-tasks}:dead";
    const std::string start = dead_seen == "-" ? "-" : "(" + dead_seen;  // exclusive after the first
    const std::string_view args[] = {"XRANGE", key, start, "+"};
    const detail::Reply r = conn.run(args, detail::Retry::safe, "read dead letters");
    detail::check(r, "read dead letters", conn.object("redis::Pool"));
    for (std::size_t i = 0; i < r.size(); ++i) {
      dead_seen = r[i][0].str();
      const detail::ReplyView f = r[i][1];
      for (std::size_t k = 0; k + 1 < f.size(); k += 2) {
        if (f[k].str() != "d") continue;
        try {
          const auto t = detail::decode_string<detail::TaskMsg>(std::string(f[k + 1].str()));
          if (t.reply == reply) died[t.id] = true;
        } catch (const mproc::Error&) {  // not a task of ours
        }
      }
    }
  }
};

Pool::Pool(std::string_view address, PoolOptions options) {
  const Address a = Address::parse(address);
  impl_ = std::make_unique<Impl>(a, options, a.name + "-results-" + detail::random_token().substr(0, 12));
}
Pool::Pool(Pool&&) noexcept = default;
Pool& Pool::operator=(Pool&&) noexcept = default;
Pool::~Pool() {
  if (!impl_) return;
  try {
    Queue<detail::ResultMsg>::unlink(impl_->address.with_name(impl_->reply).url(), impl_->options.connection);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor reports nothing
  }
}

std::string Pool::submit(const std::string& task, std::string arg) {
  const std::vector<std::string> ids = submit_many(task, {std::move(arg)});
  return ids.front();
}

std::vector<std::string> Pool::submit_many(const std::string& task, const std::vector<std::string>& args) {
  std::vector<detail::TaskMsg> msgs;
  std::vector<std::string> ids;
  msgs.reserve(args.size());
  for (const std::string& a : args) {
    msgs.push_back({detail::random_token(), task, a, impl_->reply});
    ids.push_back(msgs.back().id);
  }
  impl_->tasks.put_many(msgs);
  return ids;
}

std::string Pool::wait(const std::string& id, std::size_t index) {
  std::map<std::string, std::size_t> one{{id, index}};
  return wait_any(one);
}

std::string Pool::wait_any(std::map<std::string, std::size_t>& outstanding) {
  Impl& s = *impl_;
  if (outstanding.empty()) throw UsageError("redis::Pool: imap_unordered has yielded every result already");
  // One outstanding task's outcome: removed from `outstanding`, returned or thrown.
  auto finish = [&](std::map<std::string, std::size_t>::iterator task, detail::ResultMsg r) {
    const std::size_t index = task->second;
    outstanding.erase(task);
    if (!r.ok) throw RemoteError(r.error_type, r.error, index);
    return std::move(r.value);
  };
  // A result that arrived while another was awaited. Only this once: below, `early` grows by
  // results of no outstanding task.
  for (auto it = s.early.begin(); it != s.early.end(); ++it) {
    if (auto task = outstanding.find(it->first); task != outstanding.end()) {
      detail::ResultMsg r = std::move(it->second);
      s.early.erase(it);
      return finish(task, std::move(r));
    }
  }
  for (;;) {
    if (auto r = s.results.get_for(s.options.connection.wait_slice)) {
      if (auto task = outstanding.find(r->id); task != outstanding.end()) return finish(task, std::move(*r));
      s.early.emplace(r->id, std::move(*r));
      continue;
    }
    // A slice without a result: has a worker died on one of them for the last time?
    s.read_dead_letters();
    for (auto task = outstanding.begin(); task != outstanding.end(); ++task) {
      if (s.died.contains(task->first)) {
        const std::size_t index = task->second;
        outstanding.erase(task);
        throw WorkerDied(0, 0, index);
      }
    }
  }
}

void Pool::close() {
  impl_->tasks.close();
}

}  // namespace mproc::redis
