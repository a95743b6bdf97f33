#pragma once
// Close (docs/design/queue.md, "Close"): what a get that finds a close begun needs of close.cpp.
#include "mproc/detail/ring.hpp"

namespace mproc::detail {

/// The second step of close(), which a consumer that finds `closed == 1` completes itself (the
/// closer may have died between the two): waits for a put in flight, then sets `closed = 2`.
void finish_close(RingState& s);

}  // namespace mproc::detail
