#include "mproc/inspect.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"
#include "shm/named.hpp"
#include "os/sys.hpp"

namespace mproc {
namespace {

constexpr std::string_view kPrefix = "mproc.";

// Fills in what the header (and, for a queue, the ring) says. Reads only; never blocks.
void read_header(const std::string& file, NamedObjectInfo& info) {
  const int fd = ::shm_open(("/" + file).c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return;  // another user's, or gone: leave kind "?"
  void* addr = info.bytes >= detail::kSegmentDataOffset
                   ? ::mmap(nullptr, info.bytes, PROT_READ, MAP_SHARED, fd, 0)
                   : MAP_FAILED;
  if (addr == MAP_FAILED) {
    sys::close_fd(fd);
    return;
  }
  const auto& h = *static_cast<const detail::SegmentHeader*>(addr);
  if (h.magic.load(std::memory_order_acquire) == detail::SegmentHeader::kMagic) {
    info.kind = detail::kind_name(h.kind);
    info.persistent = (h.flags & detail::kSegmentPersistent) != 0;
    info.creator_pid = h.creator_pid;
    info.creator_alive = sys::process_alive(h.creator_pid, h.creator_start);
    // In use = some process holds a lease (a shared OFD lock): ask whether an exclusive lock
    // could be placed, without placing it.
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (::fcntl(fd, F_OFD_GETLK, &fl) == 0) info.in_use = fl.l_type != F_UNLCK;
    const bool ring = h.kind == detail::SegmentKind::queue || h.kind == detail::SegmentKind::joinable_queue;
    if (ring && info.bytes >= detail::RingView::kControlSize) {
      try {
        detail::RingView::check_mapped(addr, info.bytes, "queue");  // a capacity that fits, or throws
        const detail::RingView view(addr);
        info.depth = view.size();
        info.capacity = view.capacity();
        info.consumer_waiting = view.consumer_waiting();
        info.producer_waiting = view.producer_waiting();
      } catch (const Error&) {
        // A damaged queue: list it without its depth.
      }
    }
  }
  ::munmap(addr, info.bytes);
  sys::close_fd(fd);
}

}  // namespace

std::vector<NamedObjectInfo> list_named_objects() {
  std::vector<NamedObjectInfo> out;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) sys::throw_errno("cannot list", "/dev/shm");
  while (const dirent* e = ::readdir(dir)) {
    const std::string file = e->d_name;
    if (file.rfind(kPrefix, 0) != 0) continue;
    struct stat st {};
    if (::stat(("/dev/shm/" + file).c_str(), &st) != 0) continue;  // removed meanwhile
    NamedObjectInfo info;
    info.name = file.substr(kPrefix.size());
    info.kind = "?";
    info.bytes = static_cast<std::size_t>(st.st_size);
    info.owner = st.st_uid;
    info.mode = st.st_mode & 07777;
    read_header(file, info);
    out.push_back(std::move(info));
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::vector<std::string> remove_stale_named_objects(std::string_view prefix) {
  std::vector<std::string> names;
  for (auto& o : detail::sweep_named(detail::Sweep::stale, prefix)) names.push_back(std::move(o.name));
  return names;
}

std::vector<RemovedObject> remove_stale_named_objects(std::string_view prefix, DiscardUnread discard) {
  std::vector<RemovedObject> out;
  const auto which = discard == DiscardUnread::yes ? detail::Sweep::stale_discarding : detail::Sweep::stale;
  for (auto& o : detail::sweep_named(which, prefix)) {
    out.push_back(RemovedObject{std::move(o.name), detail::kind_name(o.kind), o.unread});
  }
  return out;
}

void remove_named_object(std::string_view name) {
  detail::validate_name(name);
  const std::string path = detail::shm_path(name);
  // Find its kind first, to know whether it has a companion lock.
  NamedObjectInfo info;
  struct stat st {};
  if (::stat(("/dev/shm" + path).c_str(), &st) == 0) {
    info.bytes = static_cast<std::size_t>(st.st_size);
    read_header(path.substr(1), info);
  }
  if (::shm_unlink(path.c_str()) != 0) sys::throw_errno("cannot remove", "\"" + std::string(name) + "\"");
  if (info.kind == "Value" || info.kind == "Array" || info.kind == "Condition") {
    (void)::shm_unlink((path + ".lock").c_str());
  }
}

}  // namespace mproc
