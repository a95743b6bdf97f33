// Built against an installed mproc with find_package(mproc COMPONENTS redis): parses an address
// and refuses a bad one (code of the installed library, no server needed); exit code checked.
#include <mproc/redis/address.hpp>
#include <mproc/redis/queue.hpp>

#include <cstdio>

int main() {
  const auto a = mproc::redis::Address::parse("redis://example.org:6380/jobs");
  if (a.name != "jobs" || a.port != 6380) return 1;
  try {
    (void)mproc::redis::Queue<int>::open("rediss://example.org/jobs");  // no TLS: refused
    return 1;
  } catch (const mproc::UsageError& e) {
    std::printf("redis consumer: %s\n", e.what());
  }
  return 0;
}
