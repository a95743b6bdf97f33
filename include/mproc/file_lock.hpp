#pragma once
/// mproc::FileLock — a lock on a file path, for data that processes share through files.
///
/// The seed's third point: processes that share data through a file must lock it themselves.
/// FileLock takes an exclusive (writer) or shared (reader) lock on a *lock file* — a path that
/// mproc owns, conventionally the data file's name plus ".lock":
///
///   mproc::FileLock guard{"tickets.json.lock"};
///   std::scoped_lock hold{guard};            // exclusive
///   std::shared_lock read{guard};            // shared, many readers at once
///
/// The lock file is created (mode 0600 unless a mode is given) if missing, never removed, and
/// holds a 64-byte owner record: that is how the next owner learns that a holder died. FileLock
/// refuses a path whose contents are not such a record, so pointing it at the data file itself
/// is an error instead of silent corruption.
///
/// Mechanism: Linux open-file-description locks (fcntl F_OFD_SETLK/F_OFD_SETLKW) on the
/// whole file. Unlike POSIX record locks they belong to the open file, not the process, so two
/// FileLock objects exclude each other even between threads of one process, and closing some
/// other descriptor of the same file does not drop the lock.
///
/// Thread safety: distinct FileLock objects — on the same path or not — may be used from any
///   threads and exclude each other. One FileLock object is held by at most one owner at a
///   time: acquiring an object that is already held throws mproc::UsageError (use one object
///   per thread, as with std::unique_lock).
/// Process safety: any processes that can open the path, related or not. An object created
///   before fork() is reopened by the child on first use: after fork the child does not
///   share the parent's lock (the inherited descriptor is closed in the child).
/// Memory ordering: the data file's contents are ordered by the kernel's file locking: what
///   a holder wrote before release() is read by the next holder.
/// If the owner dies: the kernel releases the lock when its holder exits, however it exits.
///   The next exclusive or shared acquirer gets `owner_died()` if an exclusive holder died
///   inside its critical section, and so does every acquirer after it until an exclusive
///   holder calls mark_consistent(). A dead *shared* holder changes nothing: readers are not
///   expected to modify the guarded data.
/// Waiting: a blocking acquire() sleeps in the kernel and wakes as soon as the lock is free.
///   A timed acquire polls with a back-off capped at 10 ms (the kernel has no timed form of
///   this lock), so it may wake up to 10 ms after the lock became free.
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "mproc/acquired.hpp"
#include "mproc/detail/deadline.hpp"
#include "mproc/detail/std_lockable.hpp"

namespace mproc {

class FileLock : public detail::StdLockable<FileLock> {
 public:
  /// Opens (creating if needed, with `mode`) the lock file at `path`. Throws mproc::Error when
  /// it cannot be opened or created, or (EINVAL) when it holds something other than an mproc
  /// owner record. Symbolic links are not followed (O_NOFOLLOW), so a link planted in a shared
  /// directory cannot redirect the lock's writes.
  explicit FileLock(std::string path, mode_t mode = 0600);
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  /// Releases the lock if this object holds it, then closes the file. Never throws.
  ~FileLock();

  // ---- exclusive -----------------------------------------------------------------------------
  Acquired acquire() { return acquire_until(detail::Deadline::forever()); }
  Acquired acquire_for(detail::Timeout timeout) { return acquire_until(timeout); }
  /// Until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  Acquired acquire_until(detail::Deadline deadline);
  /// Python-style spelling of acquire_for().
  Acquired acquire(detail::Timeout timeout) { return acquire_until(timeout); }

  // ---- shared --------------------------------------------------------------------------------
  /// A shared lock: any number of shared holders, no exclusive holder. Reports `owner_died()`
  /// as described above; a shared holder cannot mark the state consistent.
  Acquired acquire_shared() { return acquire_shared_until(detail::Deadline::forever()); }
  Acquired acquire_shared_for(detail::Timeout timeout) { return acquire_shared_until(timeout); }
  Acquired acquire_shared_until(detail::Deadline deadline);
  /// Python-style spelling of acquire_shared_for().
  Acquired acquire_shared(detail::Timeout timeout) { return acquire_shared_until(timeout); }

  /// Releases whichever lock (exclusive or shared) this object holds. Throws
  /// mproc::UsageError when it holds none.
  void release();

  /// After an `owner_died()` exclusive acquire: the guarded data is repaired. Requires the
  /// exclusive lock (mproc::UsageError otherwise).
  void mark_consistent();

  // std SharedLockable, so std::shared_lock works (owner_died -> mproc::OwnerDied as for lock()).
  void lock_shared() { (void)held_or_throw_owner_died(acquire_shared()); }
  bool try_lock_shared() { return held_or_throw_owner_died(acquire_shared_until(detail::Deadline::now())); }
  bool try_lock_shared_for(detail::Timeout timeout) { return try_lock_shared_until(timeout); }
  bool try_lock_shared_until(detail::Deadline deadline) {
    return held_or_throw_owner_died(acquire_shared_until(deadline));
  }
  void unlock_shared() { release(); }

  /// Whether this object holds the lock (exclusive or shared) in the calling process.
  bool held() const noexcept;
  const std::string& path() const noexcept { return path_; }
  const char* kind_name() const noexcept { return "FileLock"; }

 private:
  enum : std::uint8_t { kFree, kAcquiring, kShared, kExclusive };

  Acquired acquire_impl(bool exclusive, detail::Clock::time_point deadline);
  int descriptor();  // the fd of this process, reopened after fork
  void open_file();
  void close_file() noexcept;

  std::string path_;
  mode_t mode_;
  int fd_ = -1;
  std::uint64_t fork_generation_ = 0;  // the generation fd_ was opened in
  bool read_only_ = false;
  bool poisoned_ = false;  // of the record, while this object holds the lock
  // kFree -> kAcquiring (CAS, claims the object) -> kShared/kExclusive -> kFree. Relaxed is
  // enough: the state only detects misuse of one object from two threads; the file lock itself
  // orders the guarded data.
  std::atomic<std::uint8_t> state_{kFree};
};

}  // namespace mproc
