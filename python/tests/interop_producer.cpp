// A C++ producer for a Python consumer: puts N messages into the named queue NAME, as
// mproc::Bytes ("bytes") or std::string ("str"), then closes its handle and exits. The queue
// (tracked) stays while it holds messages, so the consumer may open it before or after.
//
//   mproc_py_interop_producer NAME N bytes|str
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "mproc/bytes.hpp"
#include "mproc/queue.hpp"

namespace {

mproc::Bytes as_bytes(const std::string& s) {
  mproc::Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s NAME N bytes|str\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const long n = std::strtol(argv[2], nullptr, 10);
  const std::string kind = argv[3];
  try {
    if (kind == "bytes") {
      auto q = mproc::Queue<mproc::Bytes>::open_or_create(name);
      for (long i = 0; i < n; ++i) q.put(as_bytes("msg-" + std::to_string(i)));
    } else if (kind == "str") {
      auto q = mproc::Queue<std::string>::open_or_create(name);
      for (long i = 0; i < n; ++i) q.put("msg-" + std::to_string(i));
    } else {
      std::fprintf(stderr, "kind must be bytes or str\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "interop_producer: %s\n", e.what());
    return 1;
  }
  return 0;
}
