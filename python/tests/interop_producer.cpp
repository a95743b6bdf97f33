// A C++ producer for a Python consumer: puts N messages into the named queue NAME, as
// mproc::Bytes ("bytes") or std::string ("str"), then closes its handle and exits. The queue
// (tracked) stays while it holds messages, so the consumer may open it before or after.
//
//   mproc_py_interop_producer NAME N bytes|str
//
// "forged" (N ignored): records no mproc producer writes, in the Python module's compact format
// (its tag, malformed contents) and then one valid record (None), into an existing
// Queue<mproc::Bytes>: a consumer must refuse each forged one cleanly and go on.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "mproc/bytes.hpp"
#include "mproc/detail/type_tag.hpp"
#include "mproc/queue.hpp"

namespace {

mproc::Bytes as_bytes(const std::string& s) {
  mproc::Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// The Python module's compact format (python/src/codec.cpp): its tag, and records malformed in
// each way its reader checks, then a valid one.
constexpr std::uint32_t kTagCompact = 0x6d707963;

void put_forged(const std::string& name) {
  using namespace std::string_literals;
  const std::string records[] = {
      "i\x01\x02"s,                     // an int cut short
      "s\xff\xff\x00\x00ab"s,           // a str longer than the record
      "(\x11"s + std::string(17, 'N'),  // a tuple of 17
      "(\x02N"s,                        // a tuple with fewer items than its count
      "Z"s,                             // an unknown type
      "NN"s,                            // bytes after the value
      "s\x02\x00\x00\x00\xff\xfe"s,     // a str that is not UTF-8
      "N"s,                             // valid: None
  };
  const mproc::detail::NamedSpec spec{name, mproc::detail::OpenHow::open, {}};
  mproc::detail::QueueCore core(spec, mproc::detail::kQueueKind, 0, 0,
                                mproc::detail::type_tag<mproc::Bytes>(),
                                mproc::detail::type_name<mproc::Bytes>());
  for (const std::string& r : records) {
    (void)core.ring().put(r.data(), r.size(), kTagCompact, mproc::detail::Clock::time_point::max());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s NAME N bytes|str|forged\n", argv[0]);
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
    } else if (kind == "forged") {
      put_forged(name);
    } else {
      std::fprintf(stderr, "kind must be bytes, str or forged\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "interop_producer: %s\n", e.what());
    return 1;
  }
  return 0;
}
