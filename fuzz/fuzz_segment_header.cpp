// Fuzz target: opening a named segment that another process wrote. check_segment_header
// (src/shm/named.hpp) is all that stands between the bytes of a file in /dev/shm and the code that
// then trusts them; for a queue, RingView::check_mapped then checks what the ring's control block
// says about its own size. Either accepts the segment or throws mproc::Error (EINVAL) naming
// the object; never reads outside the segment. What an accepted header promises is checked here
// independently.
//
// Input:  byte 0  what the opener expects (one of kExpect, modulo); bit 7: pass a null pointer
//                 when the segment is shorter than a header, as open_segment does
//         rest    the segment's bytes, in a heap block of exactly that size
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "mproc/detail/codec.hpp"
#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"
#include "shm/named.hpp"
#include "ring/layout.hpp"
#include "shm/segment.hpp"

namespace {

using mproc::detail::RingView;
using mproc::detail::SegmentHeader;
using mproc::detail::SegmentKind;

struct Expect {
  SegmentKind kind;
  std::uint32_t version;
  std::uint64_t type_hash;
  std::string_view what;
};
const Expect kExpect[] = {
    {SegmentKind::queue, RingView::kLayoutVersion, mproc::detail::type_tag<int>(), "Queue \"jobs\""},
    {SegmentKind::joinable_queue, RingView::kLayoutVersion, mproc::detail::type_tag<std::string>(),
     "JoinableQueue \"work\""},
    {SegmentKind::lock, 1, 0, "Lock \"l\""},
    {SegmentKind::shared_memory, 1, 0, "SharedMemory \"blob\""},
    {SegmentKind::value, 1, mproc::detail::type_tag<double>(), "Value \"v\""},
    {SegmentKind::array, 1, mproc::detail::type_tag<std::int64_t>(), "Array \"a\""},
};
constexpr std::size_t kExpectCount = sizeof kExpect / sizeof kExpect[0];

bool is_ring(SegmentKind k) {
  return k == SegmentKind::queue || k == SegmentKind::joinable_queue;
}

void check_what(const mproc::Error& e, const Expect& x) {
  FUZZ_CHECK(e.code().value() == EINVAL);
  FUZZ_CHECK(std::string_view(e.what()).find(x.what) != std::string_view::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mproc_fuzz::Input in(data, size);
  const auto sel = in.take<std::uint8_t>();
  const Expect& x = kExpect[(sel & 0x7f) % kExpectCount];
  const std::vector<std::byte> bytes = in.rest();
  // The segment, aligned as a mapping is (its header holds an atomic).
  const std::size_t n = bytes.size();
  struct Free {
    void operator()(std::byte* p) const { ::operator delete (p, std::align_val_t{64}); }
  };
  const std::unique_ptr<std::byte, Free> seg(
      static_cast<std::byte*>(::operator new (n, std::align_val_t{64})));
  if (n != 0) std::memcpy(seg.get(), bytes.data(), n);
  const void* mem = (sel & 0x80) != 0 && n < mproc::detail::kSegmentDataOffset ? nullptr : seg.get();

  try {
    mproc::detail::check_segment_header(mem, n, x.kind, x.version, x.type_hash, x.what);
  } catch (const mproc::Error& e) {
    check_what(e, x);
    return 0;
  }
  // Accepted: then it is what the opener asked for, and its payload lies inside the segment.
  const auto& h = *reinterpret_cast<const SegmentHeader*>(seg.get());
  FUZZ_CHECK(n >= mproc::detail::kSegmentDataOffset);
  FUZZ_CHECK(h.magic.load() == SegmentHeader::kMagic);
  FUZZ_CHECK(h.kind == x.kind && h.layout_version == x.version && h.type_hash == x.type_hash);
  FUZZ_CHECK(h.payload_size <= n - mproc::detail::kSegmentDataOffset);

  if (is_ring(x.kind)) {
    try {
      RingView::check_mapped(seg.get(), n, std::string(x.what));
    } catch (const mproc::Error& e) {
      check_what(e, x);
      return 0;
    }
    // Accepted: a power-of-two capacity whose data area lies inside the segment.
    const auto cap = reinterpret_cast<const mproc::detail::RingControl*>(seg.get())->capacity;
    FUZZ_CHECK(cap >= 4096 && (cap & (cap - 1)) == 0);
    FUZZ_CHECK(cap <= n && RingView::kControlSize <= n - cap);
    const RingView ring(seg.get());
    FUZZ_CHECK(ring.capacity() == cap);
  }
  return 0;
}

// ---- seeds: a valid header for each expectation, and a few near misses ---------------------

namespace {

std::vector<std::uint8_t> segment(std::uint8_t sel, std::size_t size, std::uint32_t version_delta = 0) {
  const Expect& x = kExpect[sel];
  std::vector<std::uint8_t> s(1 + size, 0);
  s[0] = sel;
  SegmentHeader h{};
  h.magic.store(SegmentHeader::kMagic);
  h.layout_version = x.version + version_delta;
  h.kind = x.kind;
  h.payload_size = size - mproc::detail::kSegmentDataOffset;
  h.type_hash = x.type_hash;
  std::memcpy(s.data() + 1, &h, sizeof h);
  if (is_ring(x.kind)) {
    const std::uint64_t cap = size > RingView::kControlSize ? size - RingView::kControlSize : 4096;
    std::memcpy(s.data() + 1 + offsetof(mproc::detail::RingControl, capacity), &cap, sizeof cap);
  }
  return s;
}

}  // namespace

std::vector<mproc_fuzz::Seed> mproc_fuzz_seeds() {
  std::vector<mproc_fuzz::Seed> seeds;
  seeds.push_back({"queue", segment(0, RingView::footprint(4096))});
  seeds.push_back({"joinable_queue_too_small", segment(1, 256)});  // no room for its ring
  seeds.push_back({"lock", segment(2, 128)});
  seeds.push_back({"shared_memory", segment(3, 100)});
  seeds.push_back({"value", segment(4, 72)});
  seeds.push_back({"array", segment(5, 64 + 8 * 4)});
  seeds.push_back({"queue_newer_layout", segment(0, 128, 1)});
  {
    auto s = segment(3, 100);
    s.resize(1 + 40);  // truncated inside the header
    seeds.push_back({"truncated", s});
  }
  {  // reproducer: a capacity that wrapped footprint() round to 0 passed the old size check
    auto s = segment(0, RingView::kControlSize + 64);
    const std::uint64_t cap = ~std::uint64_t{0} - RingView::kControlSize + 1;
    std::memcpy(s.data() + 1 + offsetof(mproc::detail::RingControl, capacity), &cap, sizeof cap);
    seeds.push_back({"regress-capacity-wraps-footprint", s});
  }
  return seeds;
}
