#pragma once
// A redis-server of the test's own, in a fresh temporary directory, reached by a unix socket
// only (--port 0): started by the constructor, stopped (and its directory removed) by the
// destructor, so the runner's child audit finds no server left. PR_SET_PDEATHSIG kills it if
// the runner dies (a watchdog exit included). Persistence is chosen per test.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "redis/client.hpp"
#include "support/test_support.hpp"

namespace mproc_test {

enum class Persistence { none, aof_always };

class RedisServer {
 public:
  /// `tcp`: also listen on a free loopback port (tcp_url()), for TCP tests and benchmarks.
  explicit RedisServer(Persistence p = Persistence::none, std::string password = {}, bool tcp = false)
      : persistence_(p), password_(std::move(password)), port_(tcp ? free_port() : 0) {
    start();
  }
  ~RedisServer() {
    if (pid_ > 0 && ::getpid() == owner_) stop();
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::string socket() const { return (dir_ / "redis.sock").string(); }
  /// The address of object `name` on this server (unique per test process, as every name).
  std::string url(const std::string& stem) const {
    std::string u = "unix://" + socket() + "?name=" + unique_name(stem);
    if (!password_.empty()) u += "&password=" + password_;
    return u;
  }
  std::string tcp_url(const std::string& stem) const {
    return "redis://" + (password_.empty() ? "" : ":" + password_ + "@") +
           "127.0.0.1:" + std::to_string(port_) + "/" + unique_name(stem);
  }
  /// A raw connection for what the library would never do (wrong types, malformed entries).
  mproc::redis::detail::Connection raw() const {
    mproc::redis::Address a;
    a.unix_path = socket();
    a.password = password_;
    a.name = "raw";
    return mproc::redis::detail::Connection(a, {});
  }
  /// Runs one command on a raw connection; returns its reply as a string (or integer text).
  std::string cmd(std::vector<std::string> args) const {
    auto c = raw();
    std::vector<std::string_view> v(args.begin(), args.end());
    const auto r = c.run(v, mproc::redis::detail::Retry::safe, "test command");
    if (r.is_integer()) return std::to_string(r.integer());
    return std::string(r.str());
  }

  void start() {
    const std::string sock = socket();
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int log = ::open((dir_ / "redis.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (log >= 0) {
        ::dup2(log, 1);
        ::dup2(log, 2);
      }
      std::vector<std::string> args = {"redis-server",
                                       "--port",
                                       std::to_string(port_),
                                       "--bind",
                                       "127.0.0.1",
                                       "--unixsocket",
                                       sock,
                                       "--unixsocketperm",
                                       "700",
                                       "--dir",
                                       dir_.path().string(),
                                       "--save",
                                       "",
                                       "--daemonize",
                                       "no",
                                       "--loglevel",
                                       "warning"};
      if (persistence_ == Persistence::aof_always) {
        args.insert(args.end(), {"--appendonly", "yes", "--appendfsync", "always"});
      } else {
        args.insert(args.end(), {"--appendonly", "no"});
      }
      if (!password_.empty()) args.insert(args.end(), {"--requirepass", password_});
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    wait_ready();
  }
  /// Waits until some client is blocked in XREAD (a blocked get/put/acquire/wait): polls
  /// CLIENT LIST, a condition, with back-off. False after kPatience.
  bool wait_for_blocked_client() const {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    auto pause = std::chrono::milliseconds{1};
    while (std::chrono::steady_clock::now() < give_up) {
      const std::string list = cmd({"CLIENT", "LIST"});
      std::size_t at = 0;
      while ((at = list.find(" flags=b", at)) != std::string::npos) {
        const std::size_t eol = list.find('\n', at);
        if (list.substr(at, eol - at).find("cmd=xread") != std::string::npos) return true;
        at = eol;
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds{20});
    }
    return false;
  }
  /// SIGKILL: no chance to save anything.
  void kill() { end(SIGKILL); }
  /// SIGTERM: a clean shutdown (with no persistence configured, nothing is saved).
  void stop() { end(SIGTERM); }
  pid_t pid() const noexcept { return pid_; }

 private:
  // A port nobody listens on now (the kernel's choice for a bound, closed socket).
  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::system_error(errno, std::generic_category(), "free port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
  }
  void end(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
    pid_ = -1;
    // A stale socket file would let wait_ready() connect to nothing; the server removes it on
    // a clean exit only.
    ::unlink(socket().c_str());
  }
  // Waits until the server answers PING (polling a condition with back-off, bounded).
  void wait_ready() {
    mproc::redis::Options o;
    o.reconnect_timeout = std::chrono::milliseconds{0};
    o.connect_timeout = std::chrono::milliseconds{1000};
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    auto pause = std::chrono::milliseconds{1};
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start (is it installed? see " +
                                 (dir_ / "redis.log").string() + ")");
      }
      try {
        mproc::redis::Address a;
        a.unix_path = socket();
        a.password = password_;
        a.name = "ping";
        mproc::redis::detail::Connection c(a, o);
        const std::string_view ping[] = {"PING"};
        const auto r = c.run(ping, mproc::redis::detail::Retry::never, "PING");
        if (r.str() == "PONG") return;
      } catch (const std::exception&) {  // not up yet
      }
      if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error("redis-server did not start");
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds{50});
    }
  }

  Persistence persistence_;
  std::string password_;
  int port_;
  TempDir dir_;
  pid_t pid_ = -1;
  pid_t owner_ = ::getpid();
};

}  // namespace mproc_test
