#pragma once
// A redis-server of the benchmark's own: unix socket and a free loopback port in a temporary
// directory, no persistence, output discarded; killed (and the directory removed) at the end.
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

namespace bench_redis {

// A redis-server of our own in a temporary directory; killed at exit.
class Server {
 public:
  Server() {
    char tmpl[] = "/tmp/mproc-redis-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
    port_ = free_port();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      const std::string port = std::to_string(port_);
      const std::string sock = socket();
      ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--unixsocket",
               sock.c_str(), "--dir", dir_.c_str(), "--save", "", "--appendonly", "no", "--loglevel",
               "warning", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 500; ++i) {  // up to ~5 s for the server to answer
      redisContext* c = redisConnectUnix(socket().c_str());
      const bool up = c != nullptr && c->err == 0;
      if (c != nullptr) redisFree(c);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    throw std::runtime_error("redis-server did not start");
  }
  ~Server() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    std::filesystem::remove_all(dir_);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  std::string socket() const { return dir_ + "/redis.sock"; }
  int port() const { return port_; }

 private:
  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    (void)::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    (void)::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace bench_redis
