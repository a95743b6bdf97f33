// The seed's first lesson. Processes share nothing in memory but they do share the terminal:
// three processes that each print three lines, pausing between lines, interleave their output.
// One Lock shared by all of them turns the printing from concurrent into serial: slower, but
// each process's lines stay together.
#include <mproc/mproc.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// What each process does: print "N 1", "N 2", "N 3" with a pause between lines. With a lock,
// the whole loop is the critical section.
void print_three_lines(int n, mproc::Lock* lock, int out) {
  std::unique_lock<mproc::Lock> hold;
  if (lock != nullptr) hold = std::unique_lock(*lock);
  for (int line = 1; line <= 3; ++line) {
    const std::string text = std::to_string(n) + " " + std::to_string(line) + "\n";
    (void)!::write(out, text.data(), text.size());  // one write: a line is never split
    std::this_thread::sleep_for(50ms);
  }
}

// Runs three printers. Their lines go through a pipe so that this process can both show them
// and count how often the output switched from one process to another.
int run_printers(mproc::Lock* lock) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  std::vector<mproc::Process> printers;
  for (int n = 1; n <= 3; ++n) printers.emplace_back(print_three_lines, n, lock, fds[1]);
  for (auto& p : printers) p.start();
  ::close(fds[1]);  // the children hold the only write ends now: EOF when they are done

  std::string all;
  char buf[256];
  ssize_t got;
  while ((got = ::read(fds[0], buf, sizeof buf)) > 0) {
    all.append(buf, static_cast<std::size_t>(got));
    std::fwrite(buf, 1, static_cast<std::size_t>(got), stdout);  // show them as they come
    std::fflush(stdout);
  }
  ::close(fds[0]);
  for (auto& p : printers) p.join();

  int switches = 0;
  char last = 0;
  for (std::size_t i = 0; i < all.size(); i = all.find('\n', i) + 1) {
    if (last != 0 && all[i] != last) ++switches;
    last = all[i];
  }
  return switches;
}

}  // namespace

int main() {
  std::printf("Three processes each print \"N 1\", \"N 2\", \"N 3\", pausing 50 ms between lines.\n");

  std::printf("\n-- without a lock --\n");
  const int unlocked = run_printers(nullptr);

  std::printf("\n-- with one mproc::Lock shared by all three --\n");
  mproc::Lock lock;  // created before the children start: one lock, inherited by all of them
  const int locked = run_printers(&lock);

  std::printf(
      "\nwithout a lock: the output switched between processes %d times "
      "(interleaved)\n",
      unlocked);
  std::printf(
      "with the lock:  it switched %d times, the minimum: each process's lines "
      "stayed together\n",
      locked);
  return locked == 2 ? 0 : 1;
}
