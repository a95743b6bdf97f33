// FileLock: an OFD lock on a lock file plus a 64-byte owner record at its start, which tells
// the next owner whether an exclusive holder died inside its critical section.
// Layout and invariants: docs/design/locks.md.
#include "mproc/file_lock.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "os/sys.hpp"

namespace mproc {
namespace {

struct Record {
  static constexpr char kMagic[8] = {'M', 'P', 'R', 'O', 'C', 'F', 'L', '\1'};
  static constexpr std::uint32_t kVersion = 1;

  char magic[8];
  std::uint32_t version;
  std::uint32_t held;       // 1 while an exclusive holder is between acquire and release
  std::uint32_t poisoned;   // 1 from an exclusive holder's death until mark_consistent()
  std::int32_t holder_pid;  // the last exclusive holder, for people reading the file
  std::uint8_t reserved[40];
};
static_assert(sizeof(Record) == 64);
static_assert(std::is_trivially_copyable_v<Record>);

std::string quoted(const std::string& path) {
  return "FileLock \"" + path + "\"";
}

// Reads the owner record. An empty file is a lock file nobody has held yet.
// Returns false when the file holds something else.
bool read_record(int fd, Record& r) {
  std::memset(&r, 0, sizeof r);
  const ssize_t n = sys::retry_eintr([&] { return ::pread(fd, &r, sizeof r, 0); });
  if (n < 0) return false;
  if (n == 0) return true;
  return n == static_cast<ssize_t>(sizeof r) && std::memcmp(r.magic, Record::kMagic, 8) == 0 &&
         r.version == Record::kVersion;
}

[[noreturn]] void throw_not_a_lock_file(const std::string& path) {
  throw Error(EINVAL, "cannot use " + quoted(path),
              "(the file holds other data, not an mproc lock record; FileLock writes into its "
              "file, so lock a separate path such as \"" +
                  path + ".lock\")");
}

bool write_record(int fd, bool held, bool poisoned) {
  Record r{};
  std::memcpy(r.magic, Record::kMagic, 8);
  r.version = Record::kVersion;
  r.held = held ? 1 : 0;
  r.poisoned = poisoned ? 1 : 0;
  r.holder_pid = ::getpid();
  const ssize_t n = sys::retry_eintr([&] { return ::pwrite(fd, &r, sizeof r, 0); });
  return n == static_cast<ssize_t>(sizeof r);
}

int set_lock(int fd, short type, bool wait) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // the whole file, however large it grows
  return sys::retry_eintr([&] { return ::fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl); });
}

// Takes the OFD lock of `type` on fd by `deadline` (max(): waits as long as it takes).
// Returns false when the deadline passed first; throws on any other failure.
bool lock_until(int fd, short type, detail::Clock::time_point deadline, const std::string& path) {
  if (deadline == detail::Clock::time_point::max()) {
    if (set_lock(fd, type, true) == -1) sys::throw_errno("cannot lock", quoted(path));
    return true;
  }
  // The kernel has no timed OFD lock: poll, backing off from 100 us to 10 ms.
  auto backoff = std::chrono::microseconds(100);
  while (set_lock(fd, type, false) == -1) {
    if (errno != EAGAIN && errno != EACCES) sys::throw_errno("cannot lock", quoted(path));
    const auto now = detail::Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<detail::Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::microseconds(10'000));
  }
  return true;
}

}  // namespace

FileLock::FileLock(std::string path, mode_t mode) : path_(std::move(path)), mode_(mode) {
  open_file();
  Record r;
  if (!read_record(fd_, r)) {
    close_file();
    throw_not_a_lock_file(path_);
  }
}

FileLock::~FileLock() {
  if (held()) {
    try {
      release();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mproc: %s\n", e.what());  // destructors report, never throw
    }
  }
  close_file();
}

void FileLock::open_file() {
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode_);
  read_only_ = false;
  if (fd < 0 && (errno == EACCES || errno == EROFS)) {
    // Readers may only need shared locks, which a read-only descriptor can take.
    fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    read_only_ = fd >= 0;
  }
  if (fd < 0) sys::throw_errno("cannot open", quoted(path_));
  try {
    sys::close_in_children(fd);
  } catch (...) {
    sys::close_fd(fd);
    throw;
  }
  fd_ = fd;
  fork_generation_ = sys::fork_generation();
}

void FileLock::close_file() noexcept {
  // In a forked child the descriptor was already closed by the fork handler (and its number
  // may since have been reused): leave it alone.
  if (fd_ >= 0 && fork_generation_ == sys::fork_generation()) {
    sys::stop_closing_in_children(fd_);
    sys::close_fd(fd_);
  }
  fd_ = -1;
}

bool FileLock::held() const noexcept {
  // A copy inherited through fork never holds what the parent held.
  return fork_generation_ == sys::fork_generation() && state_.load(std::memory_order_relaxed) != kFree;
}

int FileLock::descriptor() {
  if (fork_generation_ != sys::fork_generation()) {
    // This object was inherited through fork(). The child does not hold what the parent held,
    // and its inherited descriptor was closed at the fork: start afresh with its own.
    state_.store(kFree, std::memory_order_relaxed);
    fd_ = -1;
    open_file();
  }
  return fd_;
}

Acquired FileLock::acquire_until(detail::Deadline deadline) {
  return acquire_impl(true, deadline);
}

Acquired FileLock::acquire_shared_until(detail::Deadline deadline) {
  return acquire_impl(false, deadline);
}

Acquired FileLock::acquire_impl(bool exclusive, detail::Clock::time_point deadline) {
  const int fd = descriptor();
  std::uint8_t expected = kFree;
  if (!state_.compare_exchange_strong(expected, kAcquiring, std::memory_order_relaxed)) {
    throw UsageError("cannot acquire " + quoted(path_) +
                     ": this object already holds it or another thread is acquiring it "
                     "(use one FileLock object per thread)");
  }
  try {
    if (exclusive && read_only_) {
      throw Error(EBADF, "cannot lock exclusively", quoted(path_) + " (no write permission)");
    }
    if (!lock_until(fd, exclusive ? F_WRLCK : F_RDLCK, deadline, path_)) {
      state_.store(kFree, std::memory_order_relaxed);
      return Acquired::Status::timed_out;
    }

    // Locked. The record tells whether an exclusive holder died inside its critical section.
    Record r;
    const bool valid = read_record(fd, r);
    const bool died = valid && (r.held != 0 || r.poisoned != 0);
    if (!valid || (exclusive && !write_record(fd, true, died))) {
      const int err = valid ? errno : EINVAL;
      (void)set_lock(fd, F_UNLCK, false);
      if (!valid) throw_not_a_lock_file(path_);
      throw Error(err, "cannot record the owner in", quoted(path_));
    }
    poisoned_ = died;
    state_.store(exclusive ? kExclusive : kShared, std::memory_order_relaxed);
    return died ? Acquired::Status::owner_died : Acquired::Status::ok;
  } catch (...) {
    state_.store(kFree, std::memory_order_relaxed);
    throw;
  }
}

void FileLock::release() {
  const int fd = descriptor();
  const auto state = state_.load(std::memory_order_relaxed);
  if (state != kShared && state != kExclusive) {
    throw UsageError("cannot release " + quoted(path_) + ": this object does not hold it");
  }
  int err = 0;
  // Clear "held" before unlocking: dying between the two leaves a record that says "free",
  // which is true, since the critical section had ended.
  if (state == kExclusive && !write_record(fd, false, poisoned_)) err = errno;
  if (set_lock(fd, F_UNLCK, false) == -1 && err == 0) err = errno;
  state_.store(kFree, std::memory_order_relaxed);
  if (err != 0) throw Error(err, "cannot release", quoted(path_));
}

void FileLock::mark_consistent() {
  const int fd = descriptor();
  if (state_.load(std::memory_order_relaxed) != kExclusive) {
    throw UsageError("cannot mark " + quoted(path_) +
                     " consistent: this object does not hold it exclusively");
  }
  if (!write_record(fd, true, false)) sys::throw_errno("cannot record consistency in", quoted(path_));
  poisoned_ = false;
}

}  // namespace mproc
