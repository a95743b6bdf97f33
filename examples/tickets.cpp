// The seed's ticket counter. A JSON file holds the number of tickets left; ten processes each
// check it and try to buy one. Without a lock they all read "3 left" at about the same time,
// and all of them "buy": the show is oversold. With a FileLock around check-and-buy, exactly
// as many purchases succeed as there were tickets.
#include <mproc/mproc.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kTickets = 3;
constexpr int kBuyers = 10;
constexpr int kBought = 0;   // a buyer's exit code when it got a ticket
constexpr int kSoldOut = 2;  // ... when there was none left

int read_remaining(const fs::path& file) {
  std::ifstream in(file);
  return json::parse(in).at("remaining").get<int>();
}

void write_remaining(const fs::path& file, int remaining) {
  // Write a new file and rename it over the old one, so a reader never sees half a file.
  const fs::path tmp = file.string() + "." + std::to_string(::getpid());
  std::ofstream(tmp) << json{{"remaining", remaining}}.dump() << '\n';
  fs::rename(tmp, file);
}

// One buyer: check, think for a moment (the network round trip of the seed's example), then
// buy if there was a ticket. Returns whether it bought one. The lock, if any, is released when
// this function returns. (A process that std::exit()s while holding a lock is, to the next
// owner, a holder that died mid-update, and mproc reports exactly that; mproc::exit() unwinds
// first, like Python's sys.exit.)
bool buy(const fs::path& file, mproc::FileLock* lock) {
  std::unique_lock<mproc::FileLock> hold;
  if (lock != nullptr) hold = std::unique_lock(*lock);
  const int remaining = read_remaining(file);
  std::this_thread::sleep_for(20ms);
  if (remaining <= 0) return false;
  write_remaining(file, remaining - 1);
  return true;
}

void buyer(const fs::path& file, mproc::FileLock* lock) {
  mproc::exit(buy(file, lock) ? kBought : kSoldOut);
}

struct Outcome {
  int bought = 0;
  int sold_out = 0;
  int left = 0;
};

Outcome sell(const fs::path& file, mproc::FileLock* lock) {
  write_remaining(file, kTickets);
  std::vector<mproc::Process> buyers;
  buyers.reserve(kBuyers);
  for (int i = 0; i < kBuyers; ++i) buyers.emplace_back(buyer, file, lock);
  for (auto& b : buyers) b.start();
  Outcome out;
  for (auto& b : buyers) {
    b.join();
    if (b.exitcode() == kBought) ++out.bought;
    if (b.exitcode() == kSoldOut) ++out.sold_out;
  }
  out.left = read_remaining(file);
  return out;
}

void report(const char* how, const Outcome& o) {
  std::printf("%-22s %2d bought, %2d told sold out, the file says %d left", how, o.bought, o.sold_out,
              o.left);
  if (o.bought > kTickets) std::printf("  -> OVERSOLD by %d", o.bought - kTickets);
  if (o.bought == kTickets && o.left == 0) std::printf("  -> exactly right");
  std::printf("\n");
}

int run() {
  std::string dir_template = (fs::temp_directory_path() / "mproc-tickets-XXXXXX").string();
  if (::mkdtemp(dir_template.data()) == nullptr) return 1;
  const fs::path dir = dir_template;
  const fs::path file = dir / "tickets.json";

  std::printf("%s holds {\"remaining\": %d}; %d processes each try to buy one ticket.\n",
              file.filename().c_str(), kTickets, kBuyers);
  const Outcome unlocked = sell(file, nullptr);
  report("without a lock:", unlocked);

  mproc::FileLock lock((dir / "tickets.json.lock").string());
  const Outcome locked = sell(file, &lock);
  report("with mproc::FileLock:", locked);

  fs::remove_all(dir);
  return locked.bought == kTickets && locked.left == 0 ? 0 : 1;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& e) {  // a lock, process or file that failed: say which
    std::fprintf(stderr, "tickets: %s\n", e.what());
    return 1;
  }
}
