// mproc — the command-line tool: list and remove named objects, run a command under a named
// lock, and exchange messages with C++ programs through a named Queue<std::string>. A NAME may
// also be a Redis address (redis://host/name, unix:///path.sock?name=...): mproc_redis.cpp.
//
// Exit codes (for scripts): 0 success; 1 timed out (queue get/put, lock --timeout) or, for
// `queue get`, the queue is closed and empty — said on stderr either way; 2 usage error; 3 an
// error (no such object, wrong kind, permission...), described on stderr. `mproc lock` exits
// with its command's status (128 + N if the command was killed by signal N).
#include <mproc/inspect.hpp>
#include <mproc/lock.hpp>
#include <mproc/queue.hpp>

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "mproc_redis.hpp"
#include "run_command.hpp"
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {

constexpr int kOk = 0, kTimedOut = 1, kUsage = 2, kError = 3;

std::chrono::duration<double> seconds(double s) {
  return std::chrono::duration<double>(s);
}

std::string user_name(uid_t uid) {
  if (const passwd* pw = ::getpwuid(uid)) return pw->pw_name;
  return std::to_string(uid);
}

const char* yes_no(const std::optional<bool>& b) {
  return !b ? "?" : *b ? "yes" : "no";
}

int cmd_ls() {
  const auto objects = mproc::list_named_objects();
  std::printf("%-16s %-32s %10s %-10s %5s %-10s %8s %5s %6s  %s\n", "KIND", "NAME", "BYTES", "OWNER", "MODE",
              "LIFETIME", "CREATOR", "ALIVE", "IN-USE", "QUEUE");
  for (const auto& o : objects) {
    std::string queue;
    if (o.depth) {
      queue = std::to_string(*o.depth) + " waiting, capacity " + std::to_string(*o.capacity) + " B";
      if (o.consumer_waiting) queue += ", a consumer is blocked";
      if (o.producer_waiting) queue += ", a producer is blocked";
    }
    const std::string creator = o.creator_pid > 0 ? std::to_string(o.creator_pid) : "?";
    std::printf("%-16s %-32s %10zu %-10s %04o %-10s %8s %5s %6s  %s\n", o.kind.c_str(), o.name.c_str(),
                o.bytes, user_name(o.owner).c_str(), static_cast<unsigned>(o.mode),
                o.kind == "?"  ? "?"
                : o.persistent ? "persistent"
                               : "tracked",
                creator.c_str(), yes_no(o.creator_alive), yes_no(o.in_use), queue.c_str());
  }
  return kOk;
}

extern "C" void on_lock_alarm(int) {}

// Waits for an exclusive flock() on `fd`, at most `timeout` seconds (< 0: no limit). False on
// timeout. SIGALRM without SA_RESTART interrupts the wait.
bool flock_for(int fd, double timeout) {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
  if (errno != EWOULDBLOCK) throw mproc::Error(errno, "mproc lock: cannot lock the command's descriptor");
  if (timeout < 0) {
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) throw mproc::Error(errno, "mproc lock: cannot lock the command's descriptor");
    }
    return true;
  }
  struct sigaction sa {};
  sa.sa_handler = on_lock_alarm;  // no SA_RESTART: flock returns EINTR
  ::sigaction(SIGALRM, &sa, nullptr);
  const auto deadline = std::chrono::steady_clock::now() + seconds(timeout);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    itimerval t{};
    t.it_value.tv_sec = static_cast<time_t>(left.count() / 1'000'000);
    t.it_value.tv_usec = static_cast<suseconds_t>(left.count() % 1'000'000);
    ::setitimer(ITIMER_REAL, &t, nullptr);
    const int rc = ::flock(fd, LOCK_EX);
    const int err = errno;
    t = itimerval{};
    ::setitimer(ITIMER_REAL, &t, nullptr);
    if (rc == 0) return true;
    if (err != EINTR) throw mproc::Error(err, "mproc lock: cannot lock the command's descriptor");
  }
}

// Mutual exclusion that survives the death of this process: the named Lock reports a holder's
// death, and the command holds the lock too, the way flock(1)'s command does — a descriptor of
// the lock's file, with an exclusive flock() on it, that the command inherits. If this process
// is SIGKILLed, the command (and whatever it started that kept the descriptor) still holds the
// flock, and the next `mproc lock NAME`, told that the holder died, waits for them to finish
// before it runs its own command. The descriptor also holds a lease on the file, so `mproc rm
// --stale` does not remove the lock from under a command that still runs.
int cmd_lock(const std::string& name, double timeout, const std::vector<std::string>& command) {
  // Persistent: the lock outlives this command, so that a holder's death reaches the next one.
  auto lock = mproc::Lock::open_or_create(name, mproc::Lifetime::persistent);
  const auto start = std::chrono::steady_clock::now();
  const mproc::Acquired got = timeout >= 0 ? lock.acquire(seconds(timeout)) : lock.acquire();
  if (!got) {
    std::fprintf(stderr, "mproc lock: timed out after %g s waiting for lock \"%s\"\n", timeout, name.c_str());
    return kTimedOut;
  }
  // Not close-on-exec: the command inherits it.
  const std::string path = "/dev/shm/mproc." + name;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW);
  if (fd < 0) throw mproc::Error(errno, "mproc lock: cannot open", path);
  struct flock lease {};
  lease.l_type = F_RDLCK;  // shared, like every user's lease (whole file)
  lease.l_whence = SEEK_SET;
  if (::fcntl(fd, F_OFD_SETLK, &lease) != 0)
    throw mproc::Error(errno, "mproc lock: cannot take a lease on", path);
  if (got.owner_died()) {
    // A script cannot repair what the dead holder left; say so, and treat the command as the
    // repair (the lock is marked consistent only if the command succeeds).
    std::fprintf(stderr,
                 "mproc lock: the previous holder of \"%s\" died while holding it; the state it "
                 "guards may be inconsistent\n",
                 name.c_str());
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    std::fprintf(stderr, "mproc lock: a command that held \"%s\" still runs; waiting for it to end\n",
                 name.c_str());
    const double left =
        timeout < 0
            ? -1.0
            : timeout - std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!flock_for(fd, left < 0 && timeout >= 0 ? 0.0 : left)) {
      std::fprintf(stderr, "mproc lock: timed out after %g s waiting for lock \"%s\"\n", timeout,
                   name.c_str());
      ::close(fd);
      return kTimedOut;  // the Lock is released as `lock` goes; the dead holder's report stays
    }
  }
  // The command knows which descriptor holds the lock (to close it in a daemon it starts). The
  // lock lives on that descriptor, which the command inherits: it outlives this process.
  const int status = mproc_cli::run_command(command, "MPROC_LOCK_FD", std::to_string(fd), false);
  ::close(fd);  // this process's hold of the flock; a process the command left behind keeps its own
  if (got.owner_died() && status == 0) lock.mark_consistent();
  lock.release();
  return status;
}

// A queue this tool creates is persistent: a message put by a script that then exits must wait
// for its reader (`mproc rm` removes the queue). `put` creates the queue it names if missing
// (the producer makes the mailbox); `get` creates it only with --create, so that a typo is an
// error instead of a new queue nobody ever fills.
using TextQueue = mproc::Queue<std::string>;

TextQueue open_queue(const std::string& name, bool create, const char* who) {
  if (create)
    return TextQueue::open_or_create(name, TextQueue::kDefaultCapacity, 0, mproc::Lifetime::persistent);
  try {
    return TextQueue::open(name);
  } catch (const mproc::Error& e) {
    if (e.code().value() != ENOENT) throw;
    throw mproc::Error(ENOENT, std::string(who) + ": there is no queue named \"" + name + "\"",
                       "(`mproc ls` lists the queues; --create makes a new one)");
  }
}

// Puts one message; false (after saying so) if the queue stayed full for `timeout` seconds.
bool put_one(TextQueue& q, const std::string& name, const std::string& text, double timeout) {
  if (timeout < 0) {
    q.put(text);
    return true;
  }
  if (q.put_for(text, seconds(timeout))) return true;
  std::fprintf(stderr, "mproc queue put: timed out after %g s: \"%s\" stayed full\n", timeout, name.c_str());
  return false;
}

int cmd_put(const std::string& name, const std::optional<std::string>& message, double timeout, bool lines) {
  auto q = open_queue(name, true, "mproc queue put");
  if (message) return put_one(q, name, *message, timeout) ? kOk : kTimedOut;
  if (!lines) {
    const std::string text(std::istreambuf_iterator<char>(std::cin), {});
    return put_one(q, name, text, timeout) ? kOk : kTimedOut;
  }
  // One message per line, as each line arrives (`tail -f log | mproc queue put --lines q`),
  // without its newline; a last line without one counts too.
  std::size_t put = 0;
  for (std::string line; std::getline(std::cin, line); ++put) {
    if (!put_one(q, name, line, timeout)) {
      std::fprintf(stderr, "mproc queue put: %zu line(s) were put before that one; the rest were not read\n",
                   put);
      return kTimedOut;
    }
  }
  return kOk;
}

int cmd_get(const std::string& name, double timeout, bool create) {
  auto q = open_queue(name, create, "mproc queue get");
  const auto got = timeout >= 0 ? q.get_for(seconds(timeout)) : q.get();
  if (!got) {
    if (q.closed()) {
      std::fprintf(stderr, "mproc queue get: \"%s\" is closed and empty\n", name.c_str());
    } else {
      std::fprintf(stderr, "mproc queue get: timed out after %g s: \"%s\" stayed empty\n", timeout,
                   name.c_str());
    }
    return kTimedOut;
  }
  std::fwrite(got->data(), 1, got->size(), stdout);
  std::fputc('\n', stdout);
  return kOk;
}

int cmd_rm_stale(const std::string& prefix, bool discard) {
  const auto removed = mproc::remove_stale_named_objects(
      prefix, discard ? mproc::DiscardUnread::yes : mproc::DiscardUnread::no);
  for (const auto& o : removed) {
    if (o.unread_messages != 0) {
      std::printf("removed %s (a %s; discarded %zu unread message%s)\n", o.name.c_str(), o.kind.c_str(),
                  o.unread_messages, o.unread_messages == 1 ? "" : "s");
    } else {
      std::printf("removed %s\n", o.name.c_str());
    }
  }
  if (!discard) {
    // Say what was kept for its messages, so that nobody wonders why it is still there.
    for (const auto& o : mproc::list_named_objects()) {
      if (o.name.rfind(prefix, 0) != 0 || !o.depth || *o.depth == 0 || o.in_use.value_or(true)) continue;
      const bool stale = !o.persistent || !o.creator_alive.value_or(true);
      if (stale) {
        std::printf("kept %s: it holds %zu unread message%s (drain it, `mproc rm %s`, or --discard)\n",
                    o.name.c_str(), *o.depth, *o.depth == 1 ? "" : "s", o.name.c_str());
      }
    }
  }
  return kOk;
}

// CLI11 answers an unknown subcommand with "A subcommand is required": find it first, and name
// the ones that exist.
bool unknown_subcommand(CLI::App& app, int argc, char** argv) {
  CLI::App* at = &app;
  std::string path = "mproc";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.empty() || arg[0] == '-') return false;
    const auto subs = at->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return false;
    CLI::App* next = nullptr;
    std::string names;
    for (CLI::App* sub : subs) {
      if (sub->check_name(arg)) next = sub;
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (next == nullptr) {
      std::fprintf(
          stderr,
          "%s: unknown subcommand \"%s\"; the subcommands are: %s\nRun with --help for more information.\n",
          path.c_str(), arg.c_str(), names.c_str());
      return true;
    }
    at = next;
    path += " " + arg;
  }
  return false;
}

// The whole tool; main() adds only a last word for what escapes it (a failed allocation while
// the command line is set up, say).
int run(int argc, char** argv) {
  CLI::App app{"mproc: list, remove and use mproc's named objects (locks, queues, ...)"};
  app.require_subcommand(1);

  auto* ls = app.add_subcommand(
      "ls",
      "List named objects: kind, name, size, owner, mode, lifetime, creator pid and whether it is alive, "
      "whether any process has it open, queue depth and blocked processes");
  std::string ls_address;
  ls->add_option("ADDRESS", ls_address,
                 "A Redis server (redis://host:port/ or unix:///path.sock, with an optional name glob after "
                 "the / or in name=): list the mproc objects there instead");

  auto* rm =
      app.add_subcommand("rm", "Remove a named object (and its companion lock, if any), or the stale ones");
  std::string rm_name;
  bool rm_stale = false, rm_discard = false;
  auto* rm_name_opt =
      rm->add_option("NAME", rm_name, "The object's name (a queue goes with its unread messages)");
  auto* rm_stale_opt = rm->add_flag(
      "--stale", rm_stale,
      "Remove every object of yours that no process has open and that is tracked or whose creator is dead, "
      "except queues that still hold unread messages");
  rm_name_opt->excludes(rm_stale_opt);
  std::string rm_prefix;
  rm->add_option("--prefix", rm_prefix, "With --stale: only names that start with this")->needs(rm_stale_opt);
  rm->add_flag("--discard", rm_discard,
               "With --stale: remove stale queues that hold unread messages too, and say how many")
      ->needs(rm_stale_opt);
  rm->callback([&] {
    if (rm_name.empty() && !rm_stale) throw CLI::ValidationError("rm", "give a NAME or --stale");
  });

  auto* lock = app.add_subcommand("lock", "Run a command while holding a named Lock (like flock(1))");
  std::string lock_name;
  double lock_timeout = -1;
  std::vector<std::string> command;
  lock->add_option("NAME", lock_name, "The lock's name (created if missing), or a redis:// address")
      ->required();
  lock->add_option("--timeout", lock_timeout, "Give up after this many seconds (exit 1)");
  lock->add_option("COMMAND", command, "The command and its arguments, after --")->required();

  auto* queue = app.add_subcommand("queue", "Exchange messages through a named Queue<std::string>");
  queue->require_subcommand(1);
  auto* put = queue->add_subcommand("put", "Put MESSAGE (or all of standard input) into the queue");
  std::string put_name;
  std::optional<std::string> put_message;
  double put_timeout = -1;
  bool put_lines = false;
  put->add_option("NAME", put_name,
                  "The queue's name (created, persistent, if missing), or a redis:// address")
      ->required();
  auto* put_message_opt = put->add_option("MESSAGE", put_message, "The message; standard input if absent");
  put->add_option("--timeout", put_timeout, "Give up after this many seconds if full (exit 1)");
  put->add_flag("--lines", put_lines,
                "Put each line of standard input as a message of its own (without its newline)")
      ->excludes(put_message_opt);
  auto* get = queue->add_subcommand("get", "Take one message and print it");
  std::string get_name;
  double get_timeout = -1;
  bool get_create = false;
  get->add_option("NAME", get_name,
                  "The queue's name (it must exist, unless --create), or a redis:// address")
      ->required();
  get->add_option("--timeout", get_timeout, "Give up after this many seconds (exit 1)");
  get->add_flag("--create", get_create, "Create the queue (persistent) if it does not exist, and wait on it");

  if (unknown_subcommand(app, argc, argv)) return kUsage;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    (void)app.exit(e);
    return kUsage;
  }

  try {
    if (*ls) return ls_address.empty() ? cmd_ls() : mproc_cli::redis_ls(ls_address);
    if (*rm) {
      if (rm_stale) return cmd_rm_stale(rm_prefix, rm_discard);
      { mproc::remove_named_object(rm_name); }
      return kOk;
    }
    if (*lock && mproc_cli::is_redis(lock_name))
      return mproc_cli::redis_lock(lock_name, lock_timeout, command);
    if (*put && mproc_cli::is_redis(put_name)) {
      return mproc_cli::redis_put(put_name, put_message, put_timeout, put_lines);
    }
    if (*get && mproc_cli::is_redis(get_name)) return mproc_cli::redis_get(get_name, get_timeout, get_create);
    if (*lock) return cmd_lock(lock_name, lock_timeout, command);
    if (*put) return cmd_put(put_name, put_message, put_timeout, put_lines);
    if (*get) return cmd_get(get_name, get_timeout, get_create);
  } catch (const mproc::Error& e) {
    std::fprintf(stderr, "mproc: %s\n", e.what());
    return kError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mproc: %s\n", e.what());
    return kError;
  }
  return kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mproc: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "mproc: an unknown exception\n");
  }
  return kError;
}
