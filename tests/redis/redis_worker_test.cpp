// MPROC_REDIS_WORKER_MAIN: the worker program (redis_worker_program) run as users run it —
// `program worker ADDRESS --processes N` — serves a Pool and exits 0 when the pool is closed;
// --help, usage errors and bad addresses get clear messages and their own exit codes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/redis/pool.hpp"
#include "redis_server.hpp"

namespace {

using mproc_test::RedisServer;
namespace mr = mproc::redis;

// Starts the worker program with `args`; its stdout and stderr go to the pipe `out` (when given).
mproc::Process start_program(std::vector<std::string> args, int out = -1) {
  mproc::Process p([args, out] {
    if (out >= 0) {
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
    }
    std::vector<char*> argv;
    std::string program = MPROC_REDIS_WORKER_PROGRAM;
    argv.push_back(program.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  });
  p.start();
  return p;
}

// Runs the program to its end; returns its exit code and what it printed.
std::pair<int, std::string> run_program(std::vector<std::string> args) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  mproc::Process p = start_program(std::move(args), fds[1]);
  ::close(fds[1]);
  std::string out = mproc_test::read_all(fds[0]);
  ::close(fds[0]);
  return {mproc_test::exit_code_of(p), out};
}

class RedisWorker : public testing::Test {
 protected:
  RedisServer server;
};

TEST_F(RedisWorker, the_program_serves_a_pool_with_several_processes_and_exits_0_when_it_is_closed) {
  const std::string url = server.url("served");
  mproc::Process worker = start_program({"worker", url, "--processes", "2", "--max-attempts", "4"});
  mr::Pool pool(url);
  std::vector<long> in;
  for (long i = 0; i < 40; ++i) in.push_back(i);
  const std::vector<long> out = pool.map<long>("cube", in);
  for (long i = 0; i < 40; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i * i * i);
  pool.close();
  EXPECT_EQ(mproc_test::exit_code_of(worker), 0);
}

TEST_F(RedisWorker, help_prints_the_usage_and_the_registered_tasks) {
  const auto [code, out] = run_program({"--help"});
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("usage: "), std::string::npos) << out;
  EXPECT_NE(out.find("--processes N"), std::string::npos) << out;
  EXPECT_NE(out.find("tasks: cube"), std::string::npos) << out;
}

TEST_F(RedisWorker, usage_errors_and_bad_addresses_exit_2_saying_what_is_wrong) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"worker"}, "which pool?"},
      {{"worker", "redis://h/p", "--processes", "0"},
       "--processes needs a whole number of at least 1, not \"0\""},
      {{"worker", "redis://h/p", "--processes"}, "--processes needs a value"},
      {{"worker", "redis://h/p", "--fast"}, "unknown option --fast"},
      {{"worker", "rediss://h/p"}, "TLS"},
      {{"worker", "redis://h/"}, "name"},
  };
  for (const auto& [args, says] : cases) {
    const auto [code, out] = run_program(args);
    EXPECT_EQ(code, 2) << out;
    EXPECT_NE(out.find(says), std::string::npos) << "expected \"" << says << "\" in: " << out;
    EXPECT_NE(out.find("usage: "), std::string::npos) << out;
  }
}

TEST_F(RedisWorker, a_server_that_cannot_be_reached_is_exit_1_with_the_reason) {
  const std::string url = "unix://" + server.socket() + ".missing?name=nowhere";
  const auto [code, out] = run_program({"worker", url});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot connect to Redis"), std::string::npos) << out;
}

}  // namespace
