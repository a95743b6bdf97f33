// The seed's ticket counter across machines: buyers are separate programs, the tickets live in
// a file, and a Redis Lock keeps two buyers from selling the same ticket. The file also keeps
// the highest fencing token that wrote it: a buyer whose lease ran out while it was paused (and
// who therefore may no longer hold the lock) is refused by the file itself.
//
//   redis_tickets ADDRESS FILE       one buyer: buys one ticket if any is left
//   (FILE holds "TICKETS FENCE"; start with "3 0")
// Exit status: 0 bought or sold out, 1 an error (a stale fence included).
#include <mproc/redis/lock.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: redis_tickets ADDRESS FILE\n");
    return 2;
  }
  try {
    auto lock = mproc::redis::Lock::open(argv[1]);
    const auto got = lock.acquire();
    if (got.owner_died())
      std::printf("buyer %d: the last holder died; the file is checked anyway\n", ::getpid());
    long tickets = 0;
    unsigned long long fence = 0;
    std::ifstream(argv[2]) >> tickets >> fence;
    if (fence > got.fence()) {
      std::fprintf(stderr, "buyer %d: stale fence %llu (the file has %llu): refused\n", ::getpid(),
                   static_cast<unsigned long long>(got.fence()), fence);
      return 1;
    }
    if (tickets > 0) {
      std::ofstream(argv[2], std::ios::trunc) << tickets - 1 << ' ' << got.fence() << '\n';
      std::printf("buyer %d: bought a ticket (fence %llu), %ld left\n", ::getpid(),
                  static_cast<unsigned long long>(got.fence()), tickets - 1);
    } else {
      std::printf("buyer %d: sold out\n", ::getpid());
    }
    if (got.owner_died()) lock.mark_consistent();
    lock.release();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "redis_tickets: %s\n", e.what());
    return 1;
  }
  return 0;
}
