#pragma once
/// mproc::Bytes — the raw-bytes message type: `Queue<mproc::Bytes>`, `Connection::send_bytes`.
/// Its elements' bytes travel as they are, copied once into the ring and once out.
#include <cstddef>
#include <vector>

namespace mproc {

using Bytes = std::vector<std::byte>;

}  // namespace mproc
