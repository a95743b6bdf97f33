// Replaces the global operator new of the binary it is linked into, to count allocations and
// to remember the largest one and the bytes requested.
// In its own translation unit so that the compiler cannot inline it into a test.
#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long> g_allocations{0};
std::atomic<std::size_t> g_largest{0};
std::atomic<std::size_t> g_bytes{0};
}  // namespace

long allocations_so_far() {
  return g_allocations.load(std::memory_order_relaxed);
}
/// The largest single allocation requested since the last call.
std::size_t take_largest_allocation() {
  return g_largest.exchange(0, std::memory_order_relaxed);
}
/// The bytes requested since the last call (freed or not).
std::size_t take_allocated_bytes() {
  return g_bytes.exchange(0, std::memory_order_relaxed);
}

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(n, std::memory_order_relaxed);
  std::size_t seen = g_largest.load(std::memory_order_relaxed);
  while (n > seen && !g_largest.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {}
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
