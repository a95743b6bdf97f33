#pragma once
/// mproc::RingStats — what a queue's (or a pipe direction's) ring counts about itself:
/// repairs after process deaths and how its sides were held. `Queue::stats()` returns it.
#include <cstdint>

namespace mproc {

/// Statistics a ring keeps about repairs after process deaths, and about biased sides.
struct RingStats {
  std::uint64_t abandoned_puts;  ///< producers that died inside a put (the side repaired after them)
  std::uint64_t abandoned_gets;  ///< consumers that died inside a get
  /// How often a thread was given a side to itself (it then puts, or gets, without the lock),
  /// and how often another took it back: docs/design/queue.md, "Biased sides".
  std::uint64_t producer_bias_grants = 0;
  std::uint64_t consumer_bias_grants = 0;
  std::uint64_t producer_bias_revocations = 0;
  std::uint64_t consumer_bias_revocations = 0;
  /// How often a streaming owner handed its side over to a thread that asked for it, at the end
  /// of its lease (queue.md, "Contention: hand-over instead of revocation").
  std::uint64_t producer_bias_handovers = 0;
  std::uint64_t consumer_bias_handovers = 0;
};

}  // namespace mproc
