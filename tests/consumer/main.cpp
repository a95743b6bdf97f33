// Built against an installed mproc: one child, one lock, exit code checked.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <mutex>

int main() {
  mproc::Lock lock;
  mproc::Process p([&] {
    std::scoped_lock hold{lock};
    std::puts("consumer child ran");
  });
  p.start();
  p.join();
  return p.exitcode() == 0 ? 0 : 1;
}
