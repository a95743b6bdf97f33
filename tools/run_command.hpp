#pragma once
// `mproc lock ... -- COMMAND`: runs the command as a child and returns its status, for the
// shared-memory lock (mproc.cpp) and the Redis lock (mproc_redis.cpp) alike.
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace mproc_cli {

/// Forks and execs `argv` with `env_name=env_value` in its environment, waits for it, and returns
/// its exit status (128 + N if a signal N killed it; 127 if it could not be run). With
/// `die_with_holder`, the command is SIGKILLed when this process dies: for a lock that this
/// process keeps alive itself (a Redis lease it renews), which ends with it, so the command must
/// not outlive it and overlap the next holder's.
inline int run_command(const std::vector<std::string>& argv, const char* env_name,
                       const std::string& env_value, bool die_with_holder) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t holder = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("mproc lock: fork");
    return 3;
  }
  if (pid == 0) {
    // If the holder died before prctl took effect, the parent is already someone else.
    if (die_with_holder && (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != holder)) ::_exit(127);
    ::setenv(env_name, env_value.c_str(), 1);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "mproc lock: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace mproc_cli
