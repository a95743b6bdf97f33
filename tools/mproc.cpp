// mproc — the command-line tool: list and remove named objects, run a command under a named
// lock, and exchange messages with C++ programs through a named Queue<std::string>.
//
// Exit codes (for scripts): 0 success; 1 timed out (queue get/put, lock --timeout) or, for
// `queue get`, the queue is closed and empty; 2 usage error; 3 an error (no such object, wrong
// kind, permission...), described on stderr. `mproc lock` exits with its command's status
// (128 + N if the command was killed by signal N).
#include <mproc/inspect.hpp>
#include <mproc/lock.hpp>
#include <mproc/queue.hpp>

#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {

constexpr int kOk = 0, kTimedOut = 1, kUsage = 2, kError = 3;

std::chrono::duration<double> seconds(double s) { return std::chrono::duration<double>(s); }

std::string user_name(uid_t uid) {
  if (const passwd* pw = ::getpwuid(uid)) return pw->pw_name;
  return std::to_string(uid);
}

const char* yes_no(const std::optional<bool>& b) { return !b ? "?" : *b ? "yes" : "no"; }

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
    std::printf("%-16s %-32s %10zu %-10s %04o %-10s %8s %5s %6s  %s\n", o.kind.c_str(), o.name.c_str(), o.bytes,
                user_name(o.owner).c_str(), static_cast<unsigned>(o.mode),
                o.kind == "?" ? "?" : o.persistent ? "persistent" : "tracked", creator.c_str(),
                yes_no(o.creator_alive), yes_no(o.in_use), queue.c_str());
  }
  return kOk;
}

int run_command(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("mproc lock: fork");
    return kError;
  }
  if (pid == 0) {
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "mproc lock: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int cmd_lock(const std::string& name, double timeout, const std::vector<std::string>& command) {
  // Persistent: the lock outlives this command, so that a holder's death reaches the next one.
  auto lock = mproc::Lock::open_or_create(name, mproc::Lifetime::persistent);
  const mproc::Acquired got = timeout >= 0 ? lock.acquire(seconds(timeout)) : lock.acquire();
  if (!got) {
    std::fprintf(stderr, "mproc lock: timed out waiting for lock \"%s\"\n", name.c_str());
    return kTimedOut;
  }
  if (got.owner_died()) {
    // A script cannot repair what the dead holder left; say so, and treat the command as the
    // repair (the lock is marked consistent only if the command succeeds).
    std::fprintf(stderr,
                 "mproc lock: the previous holder of \"%s\" died while holding it; the state it "
                 "guards may be inconsistent\n",
                 name.c_str());
  }
  const int status = run_command(command);
  if (got.owner_died() && status == 0) lock.mark_consistent();
  lock.release();
  return status;
}

// A queue this tool creates is persistent: a message put by a script that then exits must wait
// for its reader (`mproc rm` removes the queue).
mproc::Queue<std::string> open_queue(const std::string& name) {
  using Q = mproc::Queue<std::string>;
  return Q::open_or_create(name, Q::kDefaultCapacity, 0, mproc::Lifetime::persistent);
}

int cmd_put(const std::string& name, const std::optional<std::string>& message, double timeout) {
  std::string text;
  if (message) {
    text = *message;
  } else {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  }
  auto q = open_queue(name);
  if (timeout >= 0) {
    if (!q.put_for(text, seconds(timeout))) {
      std::fprintf(stderr, "mproc queue put: timed out: \"%s\" stayed full\n", name.c_str());
      return kTimedOut;
    }
  } else {
    q.put(text);
  }
  return kOk;
}

int cmd_get(const std::string& name, double timeout) {
  auto q = open_queue(name);
  const auto got = timeout >= 0 ? q.get_for(seconds(timeout)) : q.get();
  if (!got) {
    if (q.closed()) std::fprintf(stderr, "mproc queue get: \"%s\" is closed and empty\n", name.c_str());
    return kTimedOut;
  }
  std::fwrite(got->data(), 1, got->size(), stdout);
  std::fputc('\n', stdout);
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mproc: list, remove and use mproc's named objects (locks, queues, ...)"};
  app.require_subcommand(1);

  auto* ls = app.add_subcommand(
      "ls", "List named objects: kind, name, size, owner, mode, lifetime, creator pid and whether it is alive, "
            "whether any process has it open, queue depth and blocked processes");

  auto* rm = app.add_subcommand("rm", "Remove a named object (and its companion lock, if any), or the stale ones");
  std::string rm_name;
  bool rm_stale = false;
  auto* rm_name_opt = rm->add_option("NAME", rm_name, "The object's name");
  auto* rm_stale_opt = rm->add_flag(
      "--stale", rm_stale,
      "Remove every object of yours that no process has open and that is tracked or whose creator is dead");
  rm_name_opt->excludes(rm_stale_opt);
  std::string rm_prefix;
  rm->add_option("--prefix", rm_prefix, "With --stale: only names that start with this")->needs(rm_stale_opt);
  rm->callback([&] {
    if (rm_name.empty() && !rm_stale) throw CLI::ValidationError("rm", "give a NAME or --stale");
  });

  auto* lock = app.add_subcommand("lock", "Run a command while holding a named Lock (like flock(1))");
  std::string lock_name;
  double lock_timeout = -1;
  std::vector<std::string> command;
  lock->add_option("NAME", lock_name, "The lock's name (created if missing)")->required();
  lock->add_option("--timeout", lock_timeout, "Give up after this many seconds (exit 1)");
  lock->add_option("COMMAND", command, "The command and its arguments, after --")->required();

  auto* queue = app.add_subcommand("queue", "Exchange messages through a named Queue<std::string>");
  queue->require_subcommand(1);
  auto* put = queue->add_subcommand("put", "Put MESSAGE (or all of standard input) into the queue");
  std::string put_name;
  std::optional<std::string> put_message;
  double put_timeout = -1;
  put->add_option("NAME", put_name, "The queue's name (created if missing)")->required();
  put->add_option("MESSAGE", put_message, "The message; standard input if absent");
  put->add_option("--timeout", put_timeout, "Give up after this many seconds if full (exit 1)");
  auto* get = queue->add_subcommand("get", "Take one message and print it");
  std::string get_name;
  double get_timeout = -1;
  get->add_option("NAME", get_name, "The queue's name (created if missing)")->required();
  get->add_option("--timeout", get_timeout, "Give up after this many seconds (exit 1)");

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
    if (*ls) return cmd_ls();
    if (*rm) {
      if (rm_stale) {
        for (const auto& name : mproc::remove_stale_named_objects(rm_prefix)) std::printf("removed %s\n", name.c_str());
      } else {
        mproc::remove_named_object(rm_name);
      }
      return kOk;
    }
    if (*lock) return cmd_lock(lock_name, lock_timeout, command);
    if (*put) return cmd_put(put_name, put_message, put_timeout);
    if (*get) return cmd_get(get_name, get_timeout);
  } catch (const mproc::Error& e) {
    std::fprintf(stderr, "mproc: %s\n", e.what());
    return kError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mproc: %s\n", e.what());
    return kError;
  }
  return kUsage;
}
