// A worker program as users write it: its tasks and one line for main(). Run by
// redis_worker_test against a real server.
#include <mproc/redis/pool.hpp>

namespace {
long cube(long x) {
  return x * x * x;
}
}  // namespace
MPROC_REDIS_TASK(cube);

MPROC_REDIS_WORKER_MAIN()
