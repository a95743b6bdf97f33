// The seam behind fault_injection.hpp: libc functions defined in the test executable, which
// either fail (when an armed FaultPlan says so) or forward to the definition that would have
// been called without them.
//
// Forwarding. For each function we look up, once, `__interceptor_<name>` (the entry point of a
// sanitizer's interceptor: in libasan.so/libtsan.so with GCC, or inside the executable itself
// when clang links the sanitizer runtime statically, where plain RTLD_NEXT would skip it), and
// failing that `dlsym(RTLD_NEXT, name)`, the next definition after the executable's: libc's, or
// a sanitizer runtime's weak alias of its interceptor. Either way ASan and TSan keep seeing
// every call. The pointers are resolved by a constructor before main, so that the fast path
// (and any call from a signal handler) is a plain atomic load; a call made before that resolves
// lazily.
//
// Matching. Rules live in a fixed table of slots, each guarded by a sequence word (a seqlock):
// a checker reads the word, the fields, then the word again, and ignores a rule that changed
// meanwhile. No lock, no allocation: safe in a signal handler and in a forked child.
#include "support/fault_injection.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

namespace mproc::test {
namespace {

// ---- what can fail ----------------------------------------------------------------------------
// Fault names as a plan spells them. Several libc symbols map to one (open and open64).
// clang-format 14 never settles on an X-macro list: it moves one more X() each pass.
// clang-format off
#define MPROC_FAULTS(X) \
  X(open) X(openat) X(shm_open) X(memfd_create) X(fchmod) X(fstat) X(ftruncate) X(posix_fallocate) \
  X(fallocate) X(mmap) X(linkat) X(fcntl) X(pread) X(pwrite) X(read) X(write) X(eventfd) \
  X(eventfd_read) X(eventfd_write) X(socketpair) X(send) X(recv) X(sendmsg) X(recvmsg) X(poll) \
  X(ppoll) X(waitid) X(waitpid) X(fork) X(nanosleep) X(clock_nanosleep) X(futex_wait) X(futex_wake) \
  X(pidfd_open) X(pidfd_send_signal) X(membarrier)
// clang-format on

enum Fn : int {
#define MPROC_X(name) f_##name,
  MPROC_FAULTS(MPROC_X)
#undef MPROC_X
      kFnCount
};

constexpr std::array<std::string_view, kFnCount> kFnNames = {
#define MPROC_X(name) #name,
    MPROC_FAULTS(MPROC_X)
#undef MPROC_X
};

int fn_of(std::string_view name) {
  for (int i = 0; i < kFnCount; ++i) {
    if (kFnNames[static_cast<std::size_t>(i)] == name) return i;
  }
  throw std::invalid_argument("fault injection: no interposed function named \"" + std::string(name) +
                              "\" (see interposed_functions())");
}

// ---- where calls go when they do not fail ------------------------------------------------------
// clang-format 14 never settles on an X-macro list: it moves one more X() each pass.
// clang-format off
#define MPROC_SYMBOLS(X) \
  X(open) X(open64) X(openat) X(openat64) X(shm_open) X(memfd_create) X(fchmod) X(fstat) X(fstat64) \
  X(ftruncate) X(ftruncate64) X(posix_fallocate) X(posix_fallocate64) X(fallocate) X(fallocate64) \
  X(mmap) X(mmap64) X(linkat) X(fcntl) X(fcntl64) X(pread) X(pread64) X(pwrite) X(pwrite64) X(read) \
  X(write) X(eventfd) X(eventfd_read) X(eventfd_write) X(socketpair) X(send) X(recv) X(sendmsg) \
  X(recvmsg) X(poll) X(ppoll) X(waitid) X(waitpid) X(fork) X(nanosleep) X(clock_nanosleep) \
  X(syscall)
// clang-format on

enum Sym : int {
#define MPROC_X(name) s_##name,
  MPROC_SYMBOLS(MPROC_X)
#undef MPROC_X
      kSymCount
};

constexpr std::array<const char*, kSymCount> kSymNames = {
#define MPROC_X(name) #name,
    MPROC_SYMBOLS(MPROC_X)
#undef MPROC_X
};

std::atomic<void*> g_real[kSymCount];

void* resolve(Sym s) noexcept {
  const char* name = kSymNames[static_cast<std::size_t>(s)];
  char interceptor[64];
  std::snprintf(interceptor, sizeof interceptor, "__interceptor_%s", name);
  void* p = ::dlsym(RTLD_DEFAULT, interceptor);
  if (p == nullptr) p = ::dlsym(RTLD_NEXT, name);
  if (p == nullptr) {
    // Nothing to forward to is a broken test binary, not a test failure: say so and stop.
    std::fprintf(stderr, "fault injection: cannot find the real %s to forward to\n", name);
    std::abort();
  }
  return p;
}

template <class F>
F real(Sym s) noexcept {
  void* p = g_real[s].load(std::memory_order_acquire);
  if (p == nullptr) {
    p = resolve(s);
    g_real[s].store(p, std::memory_order_release);
  }
  return reinterpret_cast<F>(p);
}

__attribute__((constructor(101))) void resolve_all() noexcept {
  for (int s = 0; s < kSymCount; ++s) (void)real<void*>(static_cast<Sym>(s));
}

// ---- the rules -------------------------------------------------------------------------------
constexpr int kSlots = 64;
constexpr std::uint32_t kFree = 0, kWriting = 1, kArmed = 2;  // low two bits of Slot::state

struct Slot {
  // (generation << 2) | phase. Every change of phase bumps the generation, so a checker that
  // reads the same word before and after reading the fields read one rule's fields.
  std::atomic<std::uint32_t> state{0};
  std::atomic<int> fn{-1};
  std::atomic<int> error{0};
  std::atomic<int> fd{kAnyFd};
  std::atomic<unsigned> after{0};
  std::atomic<unsigned> times{0};
  std::atomic<pid_t> owner{0};
  std::atomic<int> plan{-1};
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> injected{0};
};

// What a plan as a whole knows: injections so far, and whom to tell after how many.
struct PlanRecord {
  std::atomic<bool> in_use{false};
  std::atomic<std::uint64_t> injected{0};
  std::atomic<std::uint64_t> notify_at{0};  // 0: nobody to tell
  std::atomic<int> notify_fd{-1};
};

Slot g_slots[kSlots];
PlanRecord g_plans[kSlots];
std::atomic<int> g_armed{0};  // armed slots, in whatever process: a zero skips every check

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<void*>::is_always_lock_free,
              "the checks must be lock-free to be async-signal-safe");

// This file is not instrumented (see tests/CMakeLists.txt), so ThreadSanitizer does not see its
// atomics order anything. Where that matters — a notification written, from whichever thread
// failed a call, to a descriptor the arming thread created — say so through TSan's annotations,
// when its runtime is there.
extern "C" void __tsan_acquire(void* addr) __attribute__((weak));
extern "C" void __tsan_release(void* addr) __attribute__((weak));
void tsan_acquire(void* addr) noexcept {
  if (&__tsan_acquire != nullptr) __tsan_acquire(addr);
}
void tsan_release(void* addr) noexcept {
  if (&__tsan_release != nullptr) __tsan_release(addr);
}

void note_injection(int plan) noexcept {
  if (plan < 0) return;
  PlanRecord& r = g_plans[plan];
  const std::uint64_t n = r.injected.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (n == r.notify_at.load(std::memory_order_acquire)) {
    const int fd = r.notify_fd.load(std::memory_order_acquire);
    tsan_acquire(&r);  // pairs with the release in notify_after()
    if (fd >= 0) (void)real<ssize_t (*)(int, const void*, size_t)>(s_write)(fd, "!", 1);
  }
}

// The error to fail this call with, or 0 to let it through.
int check(Fn fn, int fd = kAnyFd) noexcept {
  if (g_armed.load(std::memory_order_acquire) == 0) return 0;
  const pid_t self = ::getpid();
  int fail_with = 0;
  for (Slot& s : g_slots) {
    // Acquire loads throughout: each keeps the loads after it (the final re-read of the state
    // word above all) from moving before it, as a seqlock needs. (Not a fence: TSan cannot see
    // fences.)
    const std::uint32_t st = s.state.load(std::memory_order_acquire);
    if ((st & 3) != kArmed || s.fn.load(std::memory_order_acquire) != fn) continue;
    const pid_t owner = s.owner.load(std::memory_order_acquire);
    const int want_fd = s.fd.load(std::memory_order_acquire);
    const unsigned after = s.after.load(std::memory_order_acquire);
    const unsigned times = s.times.load(std::memory_order_acquire);
    const int error = s.error.load(std::memory_order_acquire);
    const int plan = s.plan.load(std::memory_order_acquire);
    if (s.state.load(std::memory_order_relaxed) != st) continue;  // rewritten meanwhile
    if (owner != self || (want_fd != kAnyFd && want_fd != fd)) continue;
    const std::uint64_t n = s.calls.fetch_add(1, std::memory_order_relaxed);
    if (fail_with == 0 && n >= after && n - after < times) {
      s.injected.fetch_add(1, std::memory_order_relaxed);
      fail_with = error;
      note_injection(plan);
    }
  }
  return fail_with;
}

int claim_plan_record() {
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (g_plans[i].in_use.compare_exchange_strong(expected, true)) {
      g_plans[i].injected.store(0);
      g_plans[i].notify_at.store(0);
      g_plans[i].notify_fd.store(-1);
      return i;
    }
  }
  throw std::length_error("fault injection: too many FaultPlans armed at once");
}

int arm_slot(const Fault& f, int fn, int plan) {
  for (int i = 0; i < kSlots; ++i) {
    Slot& s = g_slots[i];
    std::uint32_t st = s.state.load();
    if ((st & 3) != kFree) continue;
    if (!s.state.compare_exchange_strong(st, ((st >> 2) + 1) << 2 | kWriting)) continue;
    // Release stores: a checker that reads one of these new values also sees the state word
    // changed since it last read it (it pairs with the acquire loads in check()).
    s.fn.store(fn, std::memory_order_release);
    s.error.store(f.error, std::memory_order_release);
    s.fd.store(f.fd, std::memory_order_release);
    s.after.store(f.after, std::memory_order_release);
    s.times.store(f.times, std::memory_order_release);
    s.owner.store(::getpid(), std::memory_order_release);
    s.plan.store(plan, std::memory_order_release);
    s.calls.store(0, std::memory_order_release);
    s.injected.store(0, std::memory_order_release);
    const std::uint32_t now = s.state.load(std::memory_order_relaxed);
    s.state.store(((now >> 2) + 1) << 2 | kArmed, std::memory_order_release);
    g_armed.fetch_add(1, std::memory_order_acq_rel);
    return i;
  }
  throw std::length_error("fault injection: all 64 rule slots are armed");
}

void free_slot(int i) noexcept {
  Slot& s = g_slots[i];
  const std::uint32_t st = s.state.load();
  s.state.store(((st >> 2) + 1) << 2 | kFree, std::memory_order_release);
  g_armed.fetch_sub(1, std::memory_order_acq_rel);
}

}  // namespace

FaultPlan& FaultPlan::inject(const Fault& fault) {
  const int fn = fn_of(fault.function);
  if (n_ == kMaxRules) throw std::length_error("fault injection: at most 16 rules per FaultPlan");
  if (!armed_ && n_ != 0) throw std::logic_error("fault injection: this FaultPlan was disarmed");
  const bool first = record_ < 0;
  if (first) record_ = claim_plan_record();
  try {
    slots_[n_] = arm_slot(fault, fn, record_);
  } catch (...) {
    if (first) {
      g_plans[record_].in_use.store(false);
      record_ = -1;
    }
    throw;
  }
  function_[n_] = fn;
  ++n_;
  armed_ = true;
  return *this;
}

void FaultPlan::notify_after(unsigned n, int fd) {
  if (!armed_) throw std::logic_error("fault injection: inject() before notify_after()");
  PlanRecord& r = g_plans[record_];
  tsan_release(&r);
  r.notify_fd.store(fd, std::memory_order_release);
  r.notify_at.store(n, std::memory_order_release);
  if (n != 0 && r.injected.load() >= n)
    (void)real<ssize_t (*)(int, const void*, size_t)>(s_write)(fd, "!", 1);
}

std::uint64_t FaultPlan::calls(std::string_view function) const {
  const int fn = fn_of(function);
  std::uint64_t total = 0;
  for (int i = 0; i < n_; ++i) {
    if (function_[i] != fn) continue;
    total += armed_ ? g_slots[slots_[i]].calls.load() : final_calls_[i];
  }
  return total;
}

std::uint64_t FaultPlan::injected(std::string_view function) const {
  const int fn = fn_of(function);
  std::uint64_t total = 0;
  for (int i = 0; i < n_; ++i) {
    if (function_[i] != fn) continue;
    total += armed_ ? g_slots[slots_[i]].injected.load() : final_injected_[i];
  }
  return total;
}

std::uint64_t FaultPlan::injected() const {
  std::uint64_t total = 0;
  for (int i = 0; i < n_; ++i) total += armed_ ? g_slots[slots_[i]].injected.load() : final_injected_[i];
  return total;
}

void FaultPlan::disarm() noexcept {
  if (!armed_) return;
  for (int i = 0; i < n_; ++i) {
    // Stop it firing first, then read what it did.
    free_slot(slots_[i]);
    final_calls_[i] = g_slots[slots_[i]].calls.load();
    final_injected_[i] = g_slots[slots_[i]].injected.load();
  }
  if (record_ >= 0) g_plans[record_].in_use.store(false);
  record_ = -1;
  armed_ = false;
}

std::span<const std::string_view> interposed_functions() {
  return kFnNames;
}

std::string forwarded_to(std::string_view function) {
  for (int s = 0; s < kSymCount; ++s) {
    if (function != kSymNames[static_cast<std::size_t>(s)]) continue;
    Dl_info info{};
    if (::dladdr(real<void*>(static_cast<Sym>(s)), &info) == 0 || info.dli_fname == nullptr) return "?";
    const char* slash = std::strrchr(info.dli_fname, '/');
    return slash != nullptr ? slash + 1 : info.dli_fname;
  }
  throw std::invalid_argument("fault injection: no interposed libc symbol named \"" + std::string(function) +
                              "\"");
}

}  // namespace mproc::test

// ---- the interposed functions ---------------------------------------------------------------
// Each: ask check(), fail the way the real function fails (-1 and errno, or an error number
// for the posix_* and clock_* functions, MAP_FAILED for mmap), or forward.
namespace {

using mproc::test::kAnyFd;
using namespace mproc::test;  // Fn, Sym, check, real (the unnamed namespace is in here)

template <class R>
R fail(int err) noexcept {
  errno = err;
  return static_cast<R>(-1);
}

bool takes_mode(int flags) noexcept {
  return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
}

}  // namespace

extern "C" {

int open(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (takes_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (const int e = check(f_open)) return fail<int>(e);
  return real<int (*)(const char*, int, ...)>(s_open)(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (takes_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (const int e = check(f_open)) return fail<int>(e);
  return real<int (*)(const char*, int, ...)>(s_open64)(path, flags, mode);
}

int openat(int dirfd, const char* path, int flags, ...) {
  mode_t mode = 0;
  if (takes_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (const int e = check(f_openat)) return fail<int>(e);
  return real<int (*)(int, const char*, int, ...)>(s_openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
  mode_t mode = 0;
  if (takes_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (const int e = check(f_openat)) return fail<int>(e);
  return real<int (*)(int, const char*, int, ...)>(s_openat64)(dirfd, path, flags, mode);
}

int shm_open(const char* name, int flags, mode_t mode) {
  if (const int e = check(f_shm_open)) return fail<int>(e);
  return real<int (*)(const char*, int, mode_t)>(s_shm_open)(name, flags, mode);
}

int memfd_create(const char* name, unsigned int flags) noexcept {
  if (const int e = check(f_memfd_create)) return fail<int>(e);
  return real<int (*)(const char*, unsigned int)>(s_memfd_create)(name, flags);
}

int fchmod(int fd, mode_t mode) noexcept {
  if (const int e = check(f_fchmod, fd)) return fail<int>(e);
  return real<int (*)(int, mode_t)>(s_fchmod)(fd, mode);
}

int fstat(int fd, struct stat* st) noexcept {
  if (const int e = check(f_fstat, fd)) return fail<int>(e);
  return real<int (*)(int, struct stat*)>(s_fstat)(fd, st);
}

int fstat64(int fd, struct stat64* st) noexcept {
  if (const int e = check(f_fstat, fd)) return fail<int>(e);
  return real<int (*)(int, struct stat64*)>(s_fstat64)(fd, st);
}

int ftruncate(int fd, off_t length) noexcept {
  if (const int e = check(f_ftruncate, fd)) return fail<int>(e);
  return real<int (*)(int, off_t)>(s_ftruncate)(fd, length);
}

int ftruncate64(int fd, off64_t length) noexcept {
  if (const int e = check(f_ftruncate, fd)) return fail<int>(e);
  return real<int (*)(int, off64_t)>(s_ftruncate64)(fd, length);
}

int posix_fallocate(int fd, off_t offset, off_t len) {
  if (const int e = check(f_posix_fallocate, fd)) return e;
  return real<int (*)(int, off_t, off_t)>(s_posix_fallocate)(fd, offset, len);
}

int posix_fallocate64(int fd, off64_t offset, off64_t len) {
  if (const int e = check(f_posix_fallocate, fd)) return e;
  return real<int (*)(int, off64_t, off64_t)>(s_posix_fallocate64)(fd, offset, len);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
  if (const int e = check(f_fallocate, fd)) return fail<int>(e);
  return real<int (*)(int, int, off_t, off_t)>(s_fallocate)(fd, mode, offset, len);
}

int fallocate64(int fd, int mode, off64_t offset, off64_t len) {
  if (const int e = check(f_fallocate, fd)) return fail<int>(e);
  return real<int (*)(int, int, off64_t, off64_t)>(s_fallocate64)(fd, mode, offset, len);
}

void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) noexcept {
  if (const int e = check(f_mmap, fd)) {
    errno = e;
    return MAP_FAILED;
  }
  return real<void* (*)(void*, size_t, int, int, int, off_t)>(s_mmap)(addr, length, prot, flags, fd, offset);
}

void* mmap64(void* addr, size_t length, int prot, int flags, int fd, off64_t offset) noexcept {
  if (const int e = check(f_mmap, fd)) {
    errno = e;
    return MAP_FAILED;
  }
  return real<void* (*)(void*, size_t, int, int, int, off64_t)>(s_mmap64)(addr, length, prot, flags, fd,
                                                                          offset);
}

int linkat(int olddirfd, const char* oldpath, int newdirfd, const char* newpath, int flags) noexcept {
  if (const int e = check(f_linkat)) return fail<int>(e);
  return real<int (*)(int, const char*, int, const char*, int)>(s_linkat)(olddirfd, oldpath, newdirfd,
                                                                          newpath, flags);
}

// fcntl's third argument is an int or a pointer, by command; both travel in one register, and
// glibc itself reads it as a pointer.
int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (const int e = check(f_fcntl, fd)) return fail<int>(e);
  return real<int (*)(int, int, ...)>(s_fcntl)(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (const int e = check(f_fcntl, fd)) return fail<int>(e);
  return real<int (*)(int, int, ...)>(s_fcntl64)(fd, cmd, arg);
}

ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  if (const int e = check(f_pread, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, void*, size_t, off_t)>(s_pread)(fd, buf, count, offset);
}

ssize_t pread64(int fd, void* buf, size_t count, off64_t offset) {
  if (const int e = check(f_pread, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, void*, size_t, off64_t)>(s_pread64)(fd, buf, count, offset);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  if (const int e = check(f_pwrite, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, const void*, size_t, off_t)>(s_pwrite)(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
  if (const int e = check(f_pwrite, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, const void*, size_t, off64_t)>(s_pwrite64)(fd, buf, count, offset);
}

ssize_t read(int fd, void* buf, size_t count) {
  if (const int e = check(f_read, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, void*, size_t)>(s_read)(fd, buf, count);
}

ssize_t write(int fd, const void* buf, size_t count) {
  if (const int e = check(f_write, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, const void*, size_t)>(s_write)(fd, buf, count);
}

int eventfd(unsigned int initval, int flags) noexcept {
  if (const int e = check(f_eventfd)) return fail<int>(e);
  return real<int (*)(unsigned int, int)>(s_eventfd)(initval, flags);
}

int eventfd_read(int fd, eventfd_t* value) {
  if (const int e = check(f_eventfd_read, fd)) return fail<int>(e);
  return real<int (*)(int, eventfd_t*)>(s_eventfd_read)(fd, value);
}

int eventfd_write(int fd, eventfd_t value) {
  if (const int e = check(f_eventfd_write, fd)) return fail<int>(e);
  return real<int (*)(int, eventfd_t)>(s_eventfd_write)(fd, value);
}

int socketpair(int domain, int type, int protocol, int sv[2]) noexcept {
  if (const int e = check(f_socketpair)) return fail<int>(e);
  return real<int (*)(int, int, int, int*)>(s_socketpair)(domain, type, protocol, sv);
}

ssize_t send(int fd, const void* buf, size_t len, int flags) {
  if (const int e = check(f_send, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, const void*, size_t, int)>(s_send)(fd, buf, len, flags);
}

ssize_t recv(int fd, void* buf, size_t len, int flags) {
  if (const int e = check(f_recv, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, void*, size_t, int)>(s_recv)(fd, buf, len, flags);
}

ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  if (const int e = check(f_sendmsg, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, const struct msghdr*, int)>(s_sendmsg)(fd, msg, flags);
}

ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  if (const int e = check(f_recvmsg, fd)) return fail<ssize_t>(e);
  return real<ssize_t (*)(int, struct msghdr*, int)>(s_recvmsg)(fd, msg, flags);
}

// poll and ppoll match a rule's descriptor against their first one. (glibc declares their array
// write-only, which is not so: the kernel reads the descriptors. Hence the pragma.)
#pragma GCC diagnostic push
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
int poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  if (const int e = check(f_poll, nfds > 0 ? fds[0].fd : -1)) return fail<int>(e);
  return real<int (*)(struct pollfd*, nfds_t, int)>(s_poll)(fds, nfds, timeout);
}

int ppoll(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout, const sigset_t* mask) {
  if (const int e = check(f_ppoll, nfds > 0 ? fds[0].fd : -1)) return fail<int>(e);
  return real<int (*)(struct pollfd*, nfds_t, const struct timespec*, const sigset_t*)>(s_ppoll)(
      fds, nfds, timeout, mask);
}
#pragma GCC diagnostic pop

// waitid matches a pidfd (P_PIDFD) as its descriptor.
int waitid(idtype_t idtype, id_t id, siginfo_t* info, int options) {
  if (const int e = check(f_waitid, idtype == P_PIDFD ? static_cast<int>(id) : -1)) return fail<int>(e);
  return real<int (*)(idtype_t, id_t, siginfo_t*, int)>(s_waitid)(idtype, id, info, options);
}

pid_t waitpid(pid_t pid, int* status, int options) {
  if (const int e = check(f_waitpid)) return fail<pid_t>(e);
  return real<pid_t (*)(pid_t, int*, int)>(s_waitpid)(pid, status, options);
}

pid_t fork() noexcept {
  if (const int e = check(f_fork)) return fail<pid_t>(e);
  return real<pid_t (*)()>(s_fork)();
}

int nanosleep(const struct timespec* req, struct timespec* rem) {
  if (const int e = check(f_nanosleep)) {
    // As a real interruption would: report the whole request as still to sleep.
    if (rem != nullptr) *rem = *req;
    return fail<int>(e);
  }
  return real<int (*)(const struct timespec*, struct timespec*)>(s_nanosleep)(req, rem);
}

int clock_nanosleep(clockid_t clock, int flags, const struct timespec* req, struct timespec* rem) {
  if (const int e = check(f_clock_nanosleep)) {
    if (rem != nullptr && (flags & TIMER_ABSTIME) == 0) *rem = *req;
    return e;
  }
  return real<int (*)(clockid_t, int, const struct timespec*, struct timespec*)>(s_clock_nanosleep)(
      clock, flags, req, rem);
}

// syscall(2) passes up to six register-sized arguments; forward all six whatever the call.
long syscall(long number, ...) noexcept {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (long& x : a) x = va_arg(ap, long);
  va_end(ap);
  int e = 0;
  if (number == SYS_futex) {
    const long cmd = a[1] & FUTEX_CMD_MASK;
    if (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) e = check(f_futex_wait);
    if (cmd == FUTEX_WAKE || cmd == FUTEX_WAKE_BITSET) e = check(f_futex_wake);
  } else if (number == SYS_pidfd_open) {
    e = check(f_pidfd_open);
  } else if (number == SYS_pidfd_send_signal) {
    e = check(f_pidfd_send_signal, static_cast<int>(a[0]));
  } else if (number == SYS_membarrier) {
    e = check(f_membarrier);
  }
  if (e != 0) return fail<long>(e);
  return real<long (*)(long, ...)>(s_syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

}  // extern "C"
