// The forkserver start method: the client side (start the server on first use, ask it for a
// child, restart it once if it died) and the server's loop (docs/design/start-methods.md).
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <mutex>
#include <vector>

#include "mproc/error.hpp"
#include "mproc/start_method.hpp"
#include "os/sys.hpp"
#include "process/start.hpp"

namespace mproc {

namespace detail {

namespace {

// ---- descriptors over a unix socket -----------------------------------------------------------

// The most descriptors one message carries: a request's spec, status socket and travelling ones.
constexpr std::size_t kMaxMessageFds = 2 + kMaxTravellingFds;

// Sends `len` bytes and up to kMaxMessageFds descriptors as one message. Returns -1 with errno
// on failure.
ssize_t send_with_fds(int sock, const void* data, std::size_t len, const int* fds,
                      std::size_t nfds) noexcept {
  iovec iov{const_cast<void*>(data), len};  // NOLINT(cppcoreguidelines-pro-type-const-cast): sendmsg's type
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxMessageFds * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > kMaxMessageFds) {
    errno = E2BIG;
    return -1;
  }
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  return sys::retry_eintr([&] { return ::sendmsg(sock, &msg, MSG_NOSIGNAL); });
}

// Receives one message and up to `max_fds` (at most kMaxMessageFds) descriptors, close-on-exec;
// unused slots stay -1; more are closed. `received` (optional) tells how many came.
ssize_t recv_with_fds(int sock, void* data, std::size_t len, int* fds, std::size_t max_fds,
                      std::size_t* received = nullptr, bool* truncated = nullptr) noexcept {
  for (std::size_t i = 0; i < max_fds; ++i) fds[i] = -1;
  if (received != nullptr) *received = 0;
  iovec iov{data, len};
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxMessageFds * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = sys::retry_eintr([&] { return ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); });
  if (n < 0) return n;
  // The kernel drops the descriptors that did not fit (this process at its descriptor limit).
  if (truncated != nullptr) *truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (i < max_fds) {
        fds[i] = fd;
        if (received != nullptr) *received = i + 1;
      } else {
        sys::close_fd(fd);
      }
    }
  }
  return n;
}

// ---- the server -------------------------------------------------------------------------------

struct ServedChild {
  pid_t pid;
  int pidfd;
  int status_fd;
  bool daemon;
};

void report(int status_fd, StatusMessage::Kind kind, int value, int pidfd = -1) noexcept {
  const StatusMessage m{kind, value};
  (void)send_with_fds(status_fd, &m, sizeof m, &pidfd, pidfd >= 0 ? 1 : 0);
}

// Forks the child a request asks for. Returns false when the parent has gone (end of stream).
bool serve_request(int control, std::vector<ServedChild>& children) noexcept {
  char daemon = 0;
  int fds[kMaxMessageFds];
  std::size_t count = 0;
  bool truncated = false;
  const ssize_t n = recv_with_fds(control, &daemon, 1, fds, kMaxMessageFds, &count, &truncated);
  if (n <= 0) return n < 0 && errno == EAGAIN;
  const int spec = fds[0];
  const int status = fds[1];
  // The descriptors the child's arguments travel with (the spec says what each is).
  std::vector<int> travelling;
  for (std::size_t i = 2; i < count; ++i) travelling.push_back(fds[i]);
  const auto close_travelling = [&] {
    for (const int f : travelling) sys::close_fd(f);
  };
  if (spec < 0 || status < 0 || truncated) {  // not a request of ours, or some of it lost: drop it
    if (truncated && status >= 0) report(status, StatusMessage::failed, EMFILE);  // the parent says why
    sys::close_fd(spec);
    sys::close_fd(status);
    close_travelling();
    return true;
  }
  const pid_t server = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    sys::close_fd(control);
    sys::close_fd(status);
    for (const ServedChild& c : children) {
      sys::close_fd(c.pidfd);
      sys::close_fd(c.status_fd);
    }
    run_spec(spec, server, &travelling);
  }
  const int fork_error = errno;
  sys::close_fd(spec);
  close_travelling();  // the child has its copies; a child that dies before using them frees them
  if (pid < 0) {
    report(status, StatusMessage::failed, fork_error);
    sys::close_fd(status);
    return true;
  }
  const int pidfd = sys::pidfd_open(pid);
  if (pidfd < 0) {
    const int err = errno;
    ::kill(pid, SIGKILL);
    (void)sys::retry_eintr([&] { return ::waitpid(pid, nullptr, 0); });
    report(status, StatusMessage::failed, err);
    sys::close_fd(status);
    return true;
  }
  report(status, StatusMessage::started, pid, pidfd);
  children.push_back(ServedChild{pid, pidfd, status, daemon != 0});
  return true;
}

// Reaps a child whose pidfd became readable and tells its parent how it ended.
void reap_served(const ServedChild& c) noexcept {
  siginfo_t info{};
  if (sys::retry_eintr([&] { return ::waitid(P_PIDFD, static_cast<id_t>(c.pidfd), &info, WEXITED); }) == 0) {
    report(c.status_fd, StatusMessage::exited, info.si_code == CLD_EXITED ? info.si_status : -info.si_status);
  }
  sys::close_fd(c.pidfd);
  sys::close_fd(c.status_fd);
}

// The parent is gone (or stopped us): daemons die with it, the others are waited for.
void kill_daemons(const std::vector<ServedChild>& children) noexcept {
  for (const ServedChild& c : children) {
    if (c.daemon) (void)sys::pidfd_send_signal(c.pidfd, SIGKILL);
  }
}

// Reaps the first `count` children whose pidfd (polled as `fds[j]`) became readable.
void reap_ended(std::vector<ServedChild>& children, const pollfd* fds, std::size_t count) noexcept {
  for (std::size_t j = count; j-- > 0;) {
    if (fds[j].revents == 0) continue;
    reap_served(children[j]);
    children.erase(children.begin() + static_cast<std::ptrdiff_t>(j));
  }
}

// ---- the client -------------------------------------------------------------------------------

struct Client {
  std::mutex mutex;  // serialises requests and guards the fields
  pid_t owner = 0;   // the process these belong to: a forked child starts its own server
  pid_t pid = 0;
  int pidfd = -1;
  int control = -1;
};

Client& client() {
  static Client c;
  return c;
}

struct ServerGone {};

// A forked child inherited the fields, not the descriptors (closed in children): forget them.
void forget_if_inherited(Client& c) noexcept {
  if (c.owner == ::getpid()) return;
  c.owner = ::getpid();
  c.pid = 0;
  c.pidfd = -1;
  c.control = -1;
}

void start_server(Client& c) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    sys::throw_errno("cannot start", "the forkserver (socketpair)");
  }
  pid_t pid = 0;
  try {
    pid = exec_self(kForkserverVariable, sv[1], "the forkserver");
  } catch (...) {
    sys::close_fd(sv[0]);
    sys::close_fd(sv[1]);
    throw;
  }
  sys::close_fd(sv[1]);
  c.control = sv[0];
  c.pid = pid;
  c.pidfd = track_child(pid, "the forkserver");
  sys::close_in_children(c.control);  // only this process may hold it: its end of stream stops the server
  if (c.pidfd >= 0) sys::close_in_children(c.pidfd);
}

// Closes the control socket and reaps the server (which first waits for its children).
void stop_server(Client& c) noexcept {
  if (c.control < 0) return;
  sys::stop_closing_in_children(c.control);
  sys::close_fd(c.control);
  c.control = -1;
  if (c.pidfd >= 0) {
    siginfo_t info{};
    (void)sys::retry_eintr([&] { return ::waitid(P_PIDFD, static_cast<id_t>(c.pidfd), &info, WEXITED); });
    sys::stop_closing_in_children(c.pidfd);
    sys::close_fd(c.pidfd);
  }
  c.pidfd = -1;
  c.pid = 0;
}

Started request(const Client& c, const ChildSpec& spec) {
  const int spec_file = spec_fd(spec);
  int st[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, st) != 0) {
    const int err = errno;
    sys::close_fd(spec_file);
    throw Error(err, "cannot start", spec.name + " (socketpair for the forkserver)");
  }
  const char daemon = spec.daemon ? 1 : 0;
  std::vector<int> fds{spec_file, st[1]};
  fds.insert(fds.end(), spec.fds.begin(), spec.fds.end());
  const ssize_t sent = send_with_fds(c.control, &daemon, 1, fds.data(), fds.size());
  const int send_error = errno;
  sys::close_fd(spec_file);
  sys::close_fd(st[1]);
  if (sent < 0) {
    sys::close_fd(st[0]);
    if (send_error == EPIPE || send_error == ECONNRESET || send_error == ENOTCONN) throw ServerGone{};
    throw Error(send_error, "cannot start", spec.name + " (request to the forkserver)");
  }
  StatusMessage m;
  int pidfd[1];
  const ssize_t n = recv_with_fds(st[0], &m, sizeof m, pidfd, 1);
  if (n != sizeof m || (m.kind != StatusMessage::started && m.kind != StatusMessage::failed)) {
    sys::close_fd(pidfd[0]);
    sys::close_fd(st[0]);
    throw ServerGone{};  // it died while serving us
  }
  if (m.kind == StatusMessage::failed) {
    sys::close_fd(st[0]);
    throw Error(m.value, "cannot start", spec.name + " (fork in the forkserver)");
  }
  return Started{static_cast<pid_t>(m.value), pidfd[0], st[0]};
}

}  // namespace

void serve_forks(int control) noexcept {
  std::vector<ServedChild> children;
  bool parent_gone = false;
  std::vector<pollfd> fds;
  for (;;) {
    if (parent_gone && children.empty()) ::_exit(0);
    fds.clear();
    if (!parent_gone) fds.push_back(pollfd{control, POLLIN, 0});
    for (const ServedChild& c : children) fds.push_back(pollfd{c.pidfd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    const std::size_t first_child = parent_gone ? 0 : 1;
    const std::size_t before = children.size();
    if (!parent_gone && fds[0].revents != 0 && !serve_request(control, children)) {
      parent_gone = true;
      sys::close_fd(control);
      kill_daemons(children);
    }
    reap_ended(children, fds.data() + first_child, before);
  }
}

Started forkserver_child(const ChildSpec& spec) {
  Client& c = client();
  std::scoped_lock hold{c.mutex};
  forget_if_inherited(c);
  for (int attempt = 0;; ++attempt) {
    if (c.control < 0) start_server(c);
    try {
      return request(c, spec);
    } catch (const ServerGone&) {
      stop_server(c);  // reaps the dead one; the next turn starts a new one
      if (attempt > 0) {
        throw Error(ECHILD, "cannot start",
                    spec.name +
                        " with the forkserver start method: the forkserver died twice in a row (is "
                        "something killing it?); use the spawn start method");
      }
    }
  }
}

int forkserver_pid() noexcept {
  Client& c = client();
  std::scoped_lock hold{c.mutex};
  return c.owner == ::getpid() ? c.pid : 0;
}

}  // namespace detail

void stop_forkserver() noexcept {
  detail::Client& c = detail::client();
  std::scoped_lock hold{c.mutex};
  if (c.owner == ::getpid()) detail::stop_server(c);
}

}  // namespace mproc
