// A program that never calls mproc::init: spawn and forkserver must refuse with a message that
// says what to add, instead of starting a child that would run main from the top. CTest runs it
// (start_method_noinit); it exits 0 when both methods refuse as they should, and when its
// anonymous objects spent no descriptor (only children of a program that called init could use
// one: docs/design/start-methods.md).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/process.hpp"
#include "mproc/start_method.hpp"

namespace {
void entry() {}
}  // namespace
MPROC_ENTRY(entry);

namespace {
std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}
}  // namespace

int main() {
  int failures = 0;
  for (const mproc::StartMethod method : {mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
    mproc::Process p(entry);
    p.set_start_method(method);
    try {
      p.start();
      p.join();
      std::printf("%s: started a child without mproc::init\n", mproc::start_method_name(method));
      ++failures;
    } catch (const mproc::UsageError& e) {
      const std::string what = e.what();
      const bool clear = what.find("mproc::init(argc, argv) was not called") != std::string::npos &&
                         what.find("first line of main") != std::string::npos;
      std::printf("%s: %s%s\n", mproc::start_method_name(method), clear ? "" : "UNCLEAR: ", e.what());
      if (!clear) ++failures;
    }
  }
  const std::size_t before = open_fds();
  std::vector<std::unique_ptr<mproc::Lock>> locks;
  for (int i = 0; i < 10; ++i) locks.push_back(std::make_unique<mproc::Lock>());
  if (const std::size_t after = open_fds(); after != before) {
    std::printf("10 anonymous Locks without mproc::init opened %zu descriptors\n", after - before);
    ++failures;
  }
  return failures == 0 ? 0 : 1;
}
