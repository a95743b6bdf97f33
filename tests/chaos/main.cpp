// mproc_chaos: options, the supervisor's own watchdog, and main (tests/chaos/README.md).
#include "supervisor.hpp"

namespace mproc_chaos {

// ---- the watchdog -------------------------------------------------------------------------------

// Ends the run when the supervisor itself is stuck (the alarm main() sets).
extern "C" void on_watchdog(int) {
  char msg[300];
  const int n = std::snprintf(msg, sizeof msg,
                              "mproc_chaos: WATCHDOG: the supervisor did not finish within %u s "
                              "(stuck while %s); hangs>=1 verdict=FAIL\n",
                              g_watchdog_s, kStages[static_cast<std::size_t>(g_stage)]);
  (void)!::write(STDERR_FILENO, msg, static_cast<std::size_t>(n));
  ::_exit(1);  // the workers are daemons: the kernel kills them with us
}

// ---- options --------------------------------------------------------------------------------------

[[noreturn]] void usage(const char* why) {
  if (why != nullptr) std::fprintf(stderr, "mproc_chaos: %s\n", why);
  std::fprintf(stderr,
               "usage: mproc_chaos [--duration SECONDS] [--seed N] [--workers N] [--hang-seconds S]\n"
               "                   [--calm-every K] [--sabotage KIND]\n"
               "  --duration      seconds of killing (default 6, or $MPROC_CHAOS_SECONDS)\n"
               "  --seed          replays a run's choice of victims and pauses (default: random)\n"
               "  --workers       producers, consumers, pipe pairs and semaphore users each\n"
               "                  (default 2, at most %u; lock holders: one more)\n"
               "  --hang-seconds  how long a worker may go without progress (default 10)\n"
               "  --calm-every    kills between two checks that every worker still makes progress\n"
               "                  (default 20 to 79, at random; a kill can hide a hang until then)\n"
               "  --sabotage      plant a fault, to check that the harness catches it: lose,\n"
               "                  duplicate, tear, hide-owner-death, hang or pipe-gap\n",
               kMaxPerRole);
  std::exit(2);
}

double parse_number(const char* s, const char* what) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !std::isfinite(v) || v < 0) {
    usage((std::string("not a number of ") + what + ": " + s).c_str());
  }
  return v;
}

Config parse(int argc, char** argv) {
  Config cfg;
  if (const char* s = std::getenv("MPROC_CHAOS_SECONDS"); s != nullptr && *s != '\0') {
    cfg.duration_s = parse_number(s, "seconds in MPROC_CHAOS_SECONDS");
  }
  cfg.seed = std::random_device{}();
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") usage(nullptr);
    if (i + 1 >= argc) usage((std::string("missing value after ") + argv[i]).c_str());
    const char* value = argv[++i];
    if (arg == "--duration") {
      cfg.duration_s = parse_number(value, "seconds");
    } else if (arg == "--seed") {
      cfg.seed = static_cast<std::uint64_t>(parse_number(value, "the seed"));
    } else if (arg == "--workers") {
      cfg.per_role = static_cast<std::uint32_t>(parse_number(value, "workers"));
      if (cfg.per_role < 1 || cfg.per_role > kMaxPerRole) usage("--workers: 1 to 8");
    } else if (arg == "--sabotage") {
      const auto* k = std::find_if(kSabotages.begin(), kSabotages.end(),
                                   [&](const auto& e) { return e.second == value; });
      if (k == kSabotages.end()) usage((std::string("unknown sabotage ") + value).c_str());
      cfg.sabotage = k->first;
    } else if (arg == "--calm-every") {
      cfg.calm_every = static_cast<std::uint32_t>(parse_number(value, "kills"));
      if (cfg.calm_every < 1) usage("--calm-every: at least 1");
    } else if (arg == "--hang-seconds") {
      cfg.hang_s = parse_number(value, "seconds");
      if (cfg.hang_s < 1) usage("--hang-seconds: at least 1");
    } else {
      usage((std::string("unknown option ") + argv[i - 1]).c_str());
    }
  }
  // Ids per producer: far more than two cores move in the run (a few hundred thousand messages
  // a second in all). Only the pages of ids actually used are ever touched.
  cfg.ids_per_producer = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(cfg.duration_s * 4e6),
                                                   std::uint64_t{1} << 22, std::uint64_t{1} << 31);
  return cfg;
}

}  // namespace mproc_chaos

int main(int argc, char** argv) {
  using namespace mproc_chaos;
  const Config cfg = parse(argc, argv);
  std::printf("mproc_chaos: seed=%llu duration=%.1fs workers=%u (replay: --seed %llu)\n",
              static_cast<unsigned long long>(cfg.seed), cfg.duration_s, cfg.per_role,
              static_cast<unsigned long long>(cfg.seed));
  std::fflush(stdout);

  // The supervisor's own watchdog: the run, then every worker's stop and the final checks, each
  // bounded by hang_s, with room to spare. Its workers are daemons and die with it.
  g_watchdog_s = static_cast<unsigned>(cfg.duration_s + cfg.hang_s * (6 * cfg.per_role + 6) + 60);
  struct sigaction sa {};
  sa.sa_handler = on_watchdog;
  ::sigaction(SIGALRM, &sa, nullptr);
  ::alarm(g_watchdog_s);

  try {
    Supervisor supervisor(cfg);
    const int rc = supervisor.run();
    ::alarm(0);
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mproc_chaos: the supervisor failed: %s\n", e.what());
    return 1;
  }
}
