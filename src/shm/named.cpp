#include "shm/named.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mproc/detail/demangle.hpp"
#include "mproc/error.hpp"
#include "os/sys.hpp"

namespace mproc::detail {
namespace {

constexpr const char* kShmDir = "/dev/shm";
constexpr std::string_view kFilePrefix = "/dev/shm/mproc.";
// The magic of version-1 headers (before creators and lifetimes were recorded).
constexpr std::uint64_t kMagicV1 = 0x31'43'4F'52'50'4D'00'00;

std::string quoted(std::string_view name) {
  return "\"" + std::string(name) + "\"";
}

std::string describe(SegmentKind kind, std::string_view name) {
  return std::string(kind_name(kind)) + " " + quoted(name);
}

// A whole-file OFD lock operation (F_OFD_SETLK / F_OFD_SETLKW / F_OFD_GETLK).
int ofd_lock(int fd, short type, int cmd, struct flock* out = nullptr) {
  struct flock fl {};
  fl.l_type = type;        // F_OFD_GETLK: the lock we would like; on return, what conflicts (or F_UNLCK)
  fl.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file; l_pid must be 0 for OFD locks
  const int rc = sys::retry_eintr([&] { return ::fcntl(fd, cmd, &fl); });
  if (out != nullptr) *out = fl;
  return rc;
}

struct ProcFdPath {
  char text[32];
  explicit ProcFdPath(int fd) noexcept { std::snprintf(text, sizeof text, "/proc/self/fd/%d", fd); }
};

// The header as plain data, read with pread from a file another process wrote.
struct HeaderSnapshot {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t kind;
  std::uint64_t payload_size;
  std::uint64_t type_hash;
  std::int32_t creator_pid;
  std::uint32_t flags;
  std::uint64_t creator_start;
};
static_assert(sizeof(HeaderSnapshot) == sizeof(SegmentHeader));
static_assert(offsetof(HeaderSnapshot, creator_start) == offsetof(SegmentHeader, creator_start));
static_assert(offsetof(HeaderSnapshot, flags) == offsetof(SegmentHeader, flags));

bool read_snapshot(int fd, HeaderSnapshot& h) noexcept {
  return sys::retry_eintr([&] { return ::pread(fd, &h, sizeof h, 0); }) == static_cast<ssize_t>(sizeof h);
}

// Where a remover moves a name before unlinking it: hidden (a leading dot: never listed,
// never taken for an object), and naming the remover, so that a sweep can clear one that a
// remover killed in between left behind: ".mproc-rm.<pid>.<n>.<name>", the object's name last,
// so that a program (a test run) can find what it left under its own names.
constexpr std::string_view kAsidePrefix = ".mproc-rm.";

// Unlinks `path` if it still names the file `mine`. The check and the unlink cannot be one
// step, and an explicit unlink plus a re-creation of the name in between would make us take
// the new object's name. So the name is first moved aside — atomically, never over anything —
// and what was moved is checked; if it is not ours, it is put back.
bool unlink_if_same(const char* path, const struct stat& mine) noexcept {
  static std::atomic<unsigned> counter{0};
  // The name, from path "/dev/shm/mproc.<name>" (validated: at most 200 characters).
  const char* base = std::strrchr(path, '/');
  base = base == nullptr ? path : base + 1;
  if (std::strncmp(base, "mproc.", 6) == 0) base += 6;
  char aside[320];
  std::snprintf(aside, sizeof aside, "%s/%.*s%d.%u.%.200s", kShmDir, static_cast<int>(kAsidePrefix.size()),
                kAsidePrefix.data(), static_cast<int>(::getpid()), counter.fetch_add(1), base);
  if (::renameat2(AT_FDCWD, path, AT_FDCWD, aside, RENAME_NOREPLACE) != 0) return false;
  struct stat moved {};
  if (::stat(aside, &moved) == 0 && moved.st_ino == mine.st_ino && moved.st_dev == mine.st_dev) {
    return ::unlink(aside) == 0;
  }
  // Not ours. Putting it back fails only if yet another object took the name meanwhile; the
  // one we moved then cannot get its name back, and its users keep it as after an unlink.
  if (::renameat2(AT_FDCWD, aside, AT_FDCWD, path, RENAME_NOREPLACE) != 0) (void)::unlink(aside);
  return false;
}

// Removes the file `path`, open here as `probe` (an open file description of its own), if no
// process holds a lease on it and `decide` agrees. The exclusive lock is what makes this safe:
// no lease holder lets us have it, and an opener that arrives meanwhile waits for it, then
// sees that the file it opened has no name any more (st_nlink == 0) and looks again. The
// inode check makes sure the name still refers to the file we locked. The lock goes with
// the probe descriptor, which the caller closes.
template <class Decide>
bool remove_if_unused(int probe, const char* path, Decide decide) noexcept {
  if (ofd_lock(probe, F_WRLCK, F_OFD_SETLK) != 0) return false;  // in use, or cannot tell
  struct stat mine {};
  struct stat named {};
  if (::fstat(probe, &mine) != 0 || mine.st_nlink == 0) return false;
  HeaderSnapshot h{};
  if (!read_snapshot(probe, h) || h.magic != SegmentHeader::kMagic || !decide(probe, h)) return false;
  if (::stat(path, &named) != 0 || named.st_ino != mine.st_ino || named.st_dev != mine.st_dev) return false;
  return unlink_if_same(path, mine);
}

// Messages put into a queue and not yet taken, in a segment that nobody has open (so nobody
// writes the words meanwhile). 0 for kinds that hold no messages; "very many" if the words
// cannot be read (such a queue is kept: better a leftover than a lost message).
std::uint32_t unread_messages(int fd, const HeaderSnapshot& h) noexcept {
  if (!holds_messages(static_cast<SegmentKind>(h.kind))) return 0;
  std::uint64_t head = 0, tail = 0;
  const auto read_word = [fd](std::uint64_t& w, std::size_t at) {
    return sys::retry_eintr([&] { return ::pread(fd, &w, sizeof w, static_cast<off_t>(at)); }) ==
           static_cast<ssize_t>(sizeof w);
  };
  if (!read_word(head, kQueueHeadOffset) || !read_word(tail, kQueueTailOffset)) return UINT32_MAX;
  return static_cast<std::uint32_t>(head >> 32) - static_cast<std::uint32_t>(tail >> 32);
}

// No automatic removal — last closer, sweep, `rm --stale` — ever discards a message whose put
// returned: a queue that still holds one is kept until it is drained or removed by name.
bool unused_tracked(int fd, const HeaderSnapshot& h) noexcept {
  return (h.flags & kSegmentPersistent) == 0 && unread_messages(fd, h) == 0;
}

// Opens `path` for a removal probe: only this user's files (root could open anyone's, and a
// sweep must not decide about other users' objects). -1 if not ours or not there. Hold a
// ForkFence from before this until the probe is closed: a child that inherited the probe's
// open file description would keep its exclusive lock, and every open would wait for it.
int open_probe(const char* path) noexcept {
  const int probe = ::open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (probe < 0) return -1;
  struct stat st {};
  if (::fstat(probe, &st) != 0 || st.st_uid != ::geteuid()) {
    sys::close_fd(probe);
    return -1;
  }
  return probe;
}

bool remove_path_if_unused_tracked(const std::string& path) noexcept {
  const sys::ForkFence no_fork;
  const int probe = open_probe(path.c_str());
  if (probe < 0) return false;
  const bool removed = remove_if_unused(probe, path.c_str(), unused_tracked);
  sys::close_fd(probe);
  return removed;
}

// If a remover (another process's sweep) holds `path` right now, waits until it is done and
// returns true: the name may be free now. False if nobody is removing it.
bool wait_for_remover(const std::string& path) noexcept {
  const sys::ForkFence no_fork;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return errno == ENOENT;
  struct flock fl {};
  bool waited = false;
  if (ofd_lock(fd, F_RDLCK, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_WRLCK) {
    waited = ofd_lock(fd, F_RDLCK, F_OFD_SETLKW) == 0;
  }
  sys::close_fd(fd);
  return waited;
}

// The lease descriptor of a just-linked segment still refers to the file by its nameless
// O_TMPFILE path ("/dev/shm/#123 (deleted)"), which release_lease cannot remove by. Swap it for
// a descriptor opened by name, with its own lease, in the same slot. Nobody else can hold an
// exclusive lock meanwhile (the old descriptor's lease is held until dup3 closes it). If the
// name no longer refers to our file (unlinked and re-created in between), keep the old one:
// this object is then simply never removed automatically.
void adopt_name(int lease_fd, const std::string& path) noexcept {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return;
  struct stat mine {};
  struct stat named {};
  if (::fstat(lease_fd, &mine) == 0 && ::fstat(fd, &named) == 0 && mine.st_ino == named.st_ino &&
      mine.st_dev == named.st_dev && ofd_lock(fd, F_RDLCK, F_OFD_SETLK) == 0) {
    (void)::dup3(fd, lease_fd, O_CLOEXEC);
  }
  sys::close_fd(fd);
}

}  // namespace

void validate_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 200 && name.front() != '.';
  for (char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         c == '.' || c == '_' || c == '-';
    ok = ok && allowed;
  }
  if (!ok) {
    throw Error(EINVAL, "invalid name " + quoted(name),
                "(a name is 1 to 200 letters, digits, '.', '_' or '-', and does not start with '.')");
  }
}

std::string shm_path(std::string_view name) {
  return "/mproc." + std::string(name);
}
std::string file_path(std::string_view name) {
  return std::string(kFilePrefix) + std::string(name);
}

const char* kind_name(SegmentKind kind) noexcept {
  switch (kind) {
    case SegmentKind::lock: return "Lock";
    case SegmentKind::rlock: return "RLock";
    case SegmentKind::queue: return "Queue";
    case SegmentKind::joinable_queue: return "JoinableQueue";
    case SegmentKind::pipe: return "Pipe";
    case SegmentKind::semaphore: return "Semaphore";
    case SegmentKind::bounded_semaphore: return "BoundedSemaphore";
    case SegmentKind::event: return "Event";
    case SegmentKind::condition: return "Condition";
    case SegmentKind::barrier: return "Barrier";
    case SegmentKind::shared_memory: return "SharedMemory";
    case SegmentKind::value: return "Value";
    case SegmentKind::array: return "Array";
  }
  return "unknown kind";
}

namespace {
// The element type's name recorded after the payload, or "" if none was (an older segment).
std::string recorded_type_name(const SegmentHeader& h, std::size_t size) {
  if ((h.flags & kSegmentTypeName) == 0 || h.payload_size > size - kSegmentDataOffset - kTypeNameBytes)
    return {};
  const char* at = reinterpret_cast<const char*>(&h) + kSegmentDataOffset + h.payload_size;
  return std::string(at, ::strnlen(at, kTypeNameBytes - 1));
}
}  // namespace

void check_segment_header(const void* mem, std::size_t size, SegmentKind kind, std::uint32_t version,
                          std::uint64_t type_hash, std::string_view what, std::string_view type_name) {
  const std::string op = "cannot open " + std::string(what);
  if (size < kSegmentDataOffset || mem == nullptr) {
    throw Error(EINVAL, op,
                "(the segment is " + std::to_string(size) +
                    " bytes, too small for an mproc header: truncated, or not created by mproc)");
  }
  const auto& h = *static_cast<const SegmentHeader*>(mem);
  const std::uint64_t magic = h.magic.load(std::memory_order_acquire);
  if (magic == kMagicV1) {
    throw Error(EINVAL, op, "(it was created by an older version of mproc, with layout-1 headers)");
  }
  if (magic != SegmentHeader::kMagic) throw Error(EINVAL, op, "(it is not an mproc object: no mproc header)");
  if (h.kind != kind) {
    const char* found = kind_name(h.kind);
    throw Error(EINVAL, op,
                std::strcmp(found, "unknown kind") == 0
                    ? "(its header names an unknown kind, " +
                          std::to_string(static_cast<std::uint32_t>(h.kind)) +
                          ": corrupted, or made by a newer mproc)"
                    : "(it is " + with_article(found) + ", not " + with_article(kind_name(kind)) + ")");
  }
  if (h.layout_version != version) {
    throw Error(EINVAL, op,
                "(it has layout version " + std::to_string(h.layout_version) + "; this program expects " +
                    std::to_string(version) + ")");
  }
  if (h.type_hash != type_hash) {
    std::string found =
        size >= kSegmentDataOffset + kTypeNameBytes ? recorded_type_name(h, size) : std::string();
    if (found.empty()) found = "another type (made by a program that did not record its name)";
    throw Error(EINVAL, op,
                "(its elements are " + found + "; this program expects " +
                    (type_name.empty() ? std::string("another type") : std::string(type_name)) + ")");
  }
  if (h.payload_size > size - kSegmentDataOffset) {
    throw Error(EINVAL, op,
                "(the header says " + std::to_string(h.payload_size) +
                    " bytes of payload but the segment has only " +
                    std::to_string(size - kSegmentDataOffset) + ": truncated)");
  }
}

NamedSegment create_unnamed_segment(std::size_t total, mode_t mode, std::string_view what) {
  sweep_now_and_then();
  // An unnamed file in /dev/shm: it gets its name (link_segment) only once it is complete, so
  // nobody ever sees a half-made object, and a creator that dies before that leaves nothing.
  const int fd = ::open(kShmDir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode & 07777);
  if (fd < 0) sys::throw_errno("cannot create shared memory for", what);
  const auto fail = [&](int err, const std::string& op) {
    sys::close_fd(fd);
    throw Error(err, op, what);
  };
  // The umask may have taken bits away: set exactly what was asked.
  if (::fchmod(fd, mode & 07777) != 0) fail(errno, "cannot set the mode of shared memory for");
  // Reserve the space now: on a full /dev/shm this fails with ENOSPC here instead of a SIGBUS
  // on first touch. posix_fallocate returns the error instead of setting errno.
  int rc;
  do {
    rc = ::posix_fallocate(fd, 0, static_cast<off_t>(total));  // EINTR: a signal; try again
  } while (rc == EINTR);
  if (rc != 0) {
    fail(rc, "cannot reserve " + std::to_string(total) + " bytes of shared memory for");
  }
  if (ofd_lock(fd, F_RDLCK, F_OFD_SETLK) != 0) fail(errno, "cannot take a lease on shared memory for");
  void* addr = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) fail(errno, "cannot map shared memory for");
  return NamedSegment{Mapping::adopt(addr, total, fd), true};
}

void publish_segment(NamedSegment& seg, SegmentKind kind, std::uint32_t version, std::uint64_t payload,
                     std::uint64_t type_hash, Lifetime lifetime, std::string_view type_name) {
  auto* h = static_cast<SegmentHeader*>(seg.mapping.data());
  const pid_t self = ::getpid();
  h->creator_pid = self;
  h->creator_start = sys::process_start_ticks(self);
  h->flags = lifetime == Lifetime::persistent ? kSegmentPersistent : 0;
  if (!type_name.empty() && seg.mapping.size() >= kSegmentDataOffset + payload + kTypeNameBytes) {
    char* at = static_cast<char*>(seg.mapping.data()) + kSegmentDataOffset + payload;
    const std::size_t n = std::min(type_name.size(), kTypeNameBytes - 1);
    std::memcpy(at, type_name.data(), n);  // the rest is zero: a new segment is zeroed
    h->flags |= kSegmentTypeName;
  }
  h->publish(kind, version, payload, type_hash);  // magic last
}

void link_segment(NamedSegment& seg, std::string_view name, SegmentKind kind) {
  const std::string path = file_path(name);
  const ProcFdPath self(seg.mapping.lease_fd());
  for (int attempt = 0;; ++attempt) {
    if (::linkat(AT_FDCWD, self.text, AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0) {
      adopt_name(seg.mapping.lease_fd(), path);
      return;
    }
    const int err = errno;
    // A tracked object of this name that nobody uses is garbage (its last user died): clear
    // it, or wait for another process's sweep that is clearing it, and try again.
    if (err == EEXIST && attempt < 3 && (remove_path_if_unused_tracked(path) || wait_for_remover(path)))
      continue;
    throw Error(err, "cannot create " + describe(kind, name),
                err == EEXIST   ? "(the name exists)"
                : err == ENOENT ? "(is /proc mounted?)"
                                : "");
  }
}

NamedSegment open_segment(std::string_view name, SegmentKind kind, std::uint32_t version,
                          std::uint64_t type_hash, std::string_view type_name) {
  validate_name(name);
  const std::string path = file_path(name);
  const std::string what = describe(kind, name);
  for (;;) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) sys::throw_errno("cannot open " + what);
    const auto fail = [&](int err, const char* op) {
      sys::close_fd(fd);
      throw Error(err, op, what);
    };
    // The lease: held for as long as this process (or a child it forks) has the object open.
    if (ofd_lock(fd, F_RDLCK, F_OFD_SETLKW) != 0) fail(errno, "cannot take a lease on");
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail(errno, "cannot inspect");
    if (st.st_nlink == 0) {  // removed as unused while we were opening it: look again
      sys::close_fd(fd);
      continue;
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size < kSegmentDataOffset) {
      sys::close_fd(fd);
      check_segment_header(nullptr, size, kind, version, type_hash, what);  // throws
    }
    void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) fail(errno, "cannot map");
    try {
      check_segment_header(addr, size, kind, version, type_hash, what, type_name);
    } catch (...) {
      ::munmap(addr, size);
      sys::close_fd(fd);  // not release_lease: a failed open never removes anything
      throw;
    }
    return NamedSegment{Mapping::adopt(addr, size, fd), false};
  }
}

void unlink_named(std::string_view name, const char* kind) {
  validate_name(name);
  if (::shm_unlink(shm_path(name).c_str()) != 0) {
    sys::throw_errno(std::string("cannot unlink ") + kind, quoted(name));
  }
}

Mapping attach_named(const NamedSpec& spec, SegmentKind kind, std::uint32_t version, std::size_t size,
                     std::uint64_t type_hash, void (*init)(void* mem, const void* ctx), const void* ctx,
                     bool* created, std::string_view type_name) {
  validate_name(spec.name);
  const std::string what = describe(kind, spec.name);
  // open_or_create opens first (the usual case, and it costs no initialisation), creates when
  // the name does not exist, and opens again if another process won the creation meanwhile.
  for (int round = 0;; ++round) {
    if (spec.how != OpenHow::create) {
      try {
        NamedSegment seg = open_segment(spec.name, kind, version, type_hash, type_name);
        if (created != nullptr) *created = false;
        return std::move(seg.mapping);
      } catch (const Error& e) {
        if (spec.how == OpenHow::open || e.code().value() != ENOENT) throw;
      }
    }
    const std::size_t total = std::max(size, kSegmentDataOffset);
    const std::size_t name_bytes = type_name.empty() ? 0 : kTypeNameBytes;
    NamedSegment seg = create_unnamed_segment(total + name_bytes, spec.options.mode, what);
    init(seg.mapping.data(), ctx);  // if it throws, the unnamed file goes with seg
    publish_segment(seg, kind, version, total - kSegmentDataOffset, type_hash, spec.options.lifetime,
                    type_name);
    try {
      link_segment(seg, spec.name, kind);
      if (created != nullptr) *created = true;
      return std::move(seg.mapping);
    } catch (const Error& e) {
      // Lost the race to another creator: open theirs (unless it vanished again, then retry).
      if (spec.how == OpenHow::create || e.code().value() != EEXIST || round > 100) throw;
    }
  }
}

std::byte* attach_typed(const NamedSpec& spec, bool array, std::size_t bytes, std::uint64_t type_hash,
                        void (*init)(void* data, const void* ctx), const void* ctx, Mapping& mapping,
                        std::size_t& payload, bool* created, std::string_view type_name) {
  struct Ctx {
    void (*init)(void*, const void*);
    const void* ctx;
  } c{init, ctx};
  mapping = attach_named(
      spec, array ? SegmentKind::array : SegmentKind::value, 1, kSegmentDataOffset + bytes, type_hash,
      [](void* mem, const void* raw) {
        const auto& cc = *static_cast<const Ctx*>(raw);
        cc.init(static_cast<std::byte*>(mem) + kSegmentDataOffset, cc.ctx);
      },
      &c, created, type_name);
  payload = static_cast<const SegmentHeader*>(mapping.data())->payload_size;
  return static_cast<std::byte*>(mapping.data()) + kSegmentDataOffset;
}

void discard_named_if_unused(std::string_view name) noexcept {
  try {
    const std::string path = file_path(name);
    const sys::ForkFence no_fork;  // see open_probe
    const int probe = open_probe(path.c_str());
    if (probe < 0) return;
    (void)remove_if_unused(probe, path.c_str(), [](int, const HeaderSnapshot&) { return true; });
    sys::close_fd(probe);
  } catch (...) {
    // Best effort (an allocation failed): the object stays, as if this process had crashed.
  }
}

bool segment_is_tracked(const void* mem, std::size_t size) noexcept {
  if (mem == nullptr || size < sizeof(SegmentHeader)) return false;
  const auto& h = *static_cast<const SegmentHeader*>(mem);
  return h.magic.load(std::memory_order_acquire) == SegmentHeader::kMagic &&
         (h.flags & kSegmentPersistent) == 0;
}

void release_lease(int fd, bool tracked) noexcept {
  if (!tracked) {
    sys::close_fd(fd);
    return;
  }
  // Our descriptor's open file description may be shared with forked children, and the lease
  // (an OFD lock) lives as long as any of them keeps it open: so ask "does anybody else use
  // it?" through a new open file description of the same file, after closing ours.
  const ProcFdPath self(fd);
  char target[PATH_MAX];
  const ssize_t n = ::readlink(self.text, target, sizeof target - 1);
  const sys::ForkFence no_fork;  // see open_probe
  const int probe = ::open(self.text, O_RDWR | O_CLOEXEC);
  sys::close_fd(fd);
  if (probe < 0) return;
  if (n > 0) {
    target[n] = '\0';
    if (std::string_view(target).rfind(kFilePrefix, 0) == 0)
      (void)remove_if_unused(probe, target, unused_tracked);
  }
  sys::close_fd(probe);
}

std::vector<SweptObject> sweep_named(Sweep which, std::string_view name_prefix) {
  std::vector<SweptObject> removed;
  DIR* dir = ::opendir(kShmDir);
  if (dir == nullptr) sys::throw_errno("cannot list", kShmDir);
  SweptObject last;  // what decide() saw of the object it agreed to remove
  const auto decide = [which, &last](int fd, const HeaderSnapshot& h) {
    last.kind = static_cast<SegmentKind>(h.kind);
    last.unread = unread_messages(fd, h);
    const bool stale =
        (h.flags & kSegmentPersistent) == 0 ||
        (which != Sweep::unused_tracked && !sys::process_alive(h.creator_pid, h.creator_start));
    return stale && (last.unread == 0 || which == Sweep::stale_discarding);
  };
  const std::string_view prefix = kFilePrefix.substr(std::strlen(kShmDir) + 1);  // "mproc."
  while (const dirent* e = ::readdir(dir)) {
    const std::string_view file = e->d_name;
    const std::string path = std::string(kShmDir) + "/" + std::string(file);
    if (file.rfind(kAsidePrefix, 0) == 0) {
      // A name moved aside by a remover that was killed before it unlinked it.
      const auto pid =
          static_cast<pid_t>(std::strtol(std::string(file.substr(kAsidePrefix.size())).c_str(), nullptr, 10));
      struct stat st {};
      if (!sys::process_alive(pid, 0) && ::stat(path.c_str(), &st) == 0 && st.st_uid == ::geteuid()) {
        (void)::unlink(path.c_str());
      }
      continue;
    }
    if (file.rfind(prefix, 0) != 0 || file.substr(prefix.size()).rfind(name_prefix, 0) != 0) continue;
    const sys::ForkFence no_fork;
    const int probe = open_probe(path.c_str());
    if (probe < 0) continue;  // another user's, or gone meanwhile
    if (remove_if_unused(probe, path.c_str(), decide)) {
      last.name = file.substr(prefix.size());
      removed.push_back(last);
    }
    sys::close_fd(probe);
  }
  ::closedir(dir);
  std::sort(removed.begin(), removed.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return removed;
}

void sweep_now_and_then() noexcept {
  static std::atomic<std::int64_t> last_ns{0};
  static std::atomic<pid_t> last_pid{0};
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  const pid_t self = ::getpid();  // a forked child sweeps on its own account
  if (last_pid.load(std::memory_order_relaxed) == self &&
      now - last_ns.load(std::memory_order_relaxed) <
          std::chrono::nanoseconds(std::chrono::seconds(1)).count()) {
    return;
  }
  last_pid.store(self, std::memory_order_relaxed);
  last_ns.store(now, std::memory_order_relaxed);
  try {
    (void)sweep_named(Sweep::unused_tracked);
  } catch (...) {
    // A sweep is housekeeping: a creation never fails because of it.
  }
}

}  // namespace mproc::detail

namespace mproc::detail {
void unlink_named_public(std::string_view name, const char* kind) {
  unlink_named(name, kind);
}
}  // namespace mproc::detail
