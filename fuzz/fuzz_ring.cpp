// Fuzz target: the framing of Queue and Pipe (include/mproc/detail/ring.hpp, src/ring/), read
// by a process whose peers are faulty or hostile. Pipes add no framing of their own: each
// direction is the same ring, plus a socket whose bytes are only wake-ups and are never parsed
// (src/queue/pipe.cpp); the pipe mode below runs the ring with those sockets.
//
// The fuzzer plays a peer that writes whatever it likes into the shared words a peer can write
// (the commit words, their cached copies, max_messages, closed, the waiting and signalling flags)
// and into the data area (record headers and payloads). It does not write into the two robust
// mutexes or the capacity: a process that scribbles over a pthread mutex can deadlock every
// user of it, which no reader can check; the capacity is checked once, when a named ring is
// opened (fuzz_segment_header covers that), and each process keeps its own copy afterwards.
//
// The ring must then report corruption as mproc::Error (EPROTO), or deliver a well-formed
// record (one that lies inside the data area and inside what was committed), and never read or
// write outside its memory, allocate more than the ring holds, or wait (every call here has a
// deadline in the past).
// Without corruption, the ring must behave exactly as a FIFO model of it does.
//
// Input (little-endian; an exhausted input reads as zeros):
//   u8   mode: bit 0 pipe (socket wake-ups) instead of queue (futex + eventfd);
//              bit 1 arm the descriptor (fileno()) first;  bit 2 max_messages = 3
//   u8   n, then n (n < 16) valid puts before any corruption: u16 size (% 600), u8 tag (% 3)
//   u8   corruption mask; for each bit set, in order, what follows is written into the ring:
//          bit 0 head u64, 1 tail u64, 2 cached_head u64, 3 cached_tail u64,
//          4 max_messages u32, 5 closed u32, 6 u8 of flags (get_waiting, put_waiting, fd_armed,
//          data_signaled: one bit each), 7 data: u16 offset, u16 length, then that many bytes
//   then up to 64 operations, one u8 each (% 10), some followed by arguments:
//     0 try_get as bytes      1 try_get as std::string     2 try_put: u16 size (% 5000), u8 tag
//     3 wait_readable(now)     4 size/full/stats/unfinished 5 close
//     6 task_done              7 join_tasks(now)             8 arm the descriptor
//     9 try_get with a taker that throws (the record must stay)
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "mproc/detail/codec.hpp"
#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"
#include "ring/layout.hpp"

namespace {

using mproc::detail::Clock;
using mproc::detail::RecordView;
using mproc::detail::RingControl;
using mproc::detail::RingStatus;
using mproc::detail::RingView;

constexpr std::size_t kCapacity = 4096;  // small: records wrap around the end often
const std::uint32_t kTags[3] = {mproc::detail::type_tag<mproc::Bytes>(),
                                mproc::detail::type_tag<std::string>(), 0x5eed};

// Descriptors shared by every run: a pipe direction's socket pair (the producer's end sends
// wake-ups to the consumer's end) and a queue's eventfd. Drained after each run.
struct Descriptors {
  int sock[2] = {-1, -1};
  int event = -1;
  Descriptors() {
    FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sock) == 0);
    event = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    FUZZ_CHECK(event >= 0);
  }
  void drain() const {
    char buf[256];
    for (int fd : {sock[0], sock[1], event}) {
      while (::read(fd, buf, sizeof buf) > 0) {}
    }
  }
};

struct Message {
  std::uint32_t tag;
  std::vector<std::byte> bytes;
};

std::vector<std::byte> pattern(std::size_t size, std::uint32_t seed) {
  std::vector<std::byte> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<std::byte>(seed * 31 + i);
  return v;
}

// What a taker saw: the record must lie inside the ring whatever the peer wrote.
void check_record(const RecordView& r) {
  FUZZ_CHECK(r.size() <= kCapacity - RingView::kRecordHeader);
}

struct TakeBytes {
  mproc::Bytes out;
  static bool fn(void* ctx, const RecordView& r) {
    check_record(r);
    auto& self = *static_cast<TakeBytes*>(ctx);
    self.out.resize(r.size());
    r.copy_to(self.out.data());
    return true;
  }
};

struct TakeString {  // the typed path: declines records of other types
  std::optional<std::string> out;
  static bool fn(void* ctx, const RecordView& r) {
    check_record(r);
    return mproc::detail::taker_emplace(static_cast<TakeString*>(ctx)->out)(r);
  }
};

struct Refused {};
bool take_and_throw(void*, const RecordView& r) {
  check_record(r);
  throw Refused{};
}

class Run {
 public:
  Run(mproc_fuzz::Input& in, const Descriptors& fds) : in_(in) {
    mem_ = static_cast<std::byte*>(::operator new (RingView::footprint(kCapacity), std::align_val_t{64}));
    std::memset(mem_, 0, RingView::footprint(kCapacity));
    const auto mode = in_.take<std::uint8_t>();
    RingView::initialize(mem_, kCapacity, (mode & 4) != 0 ? 3 : 0, 3, 0);
    if ((mode & 1) != 0) {  // as src/queue/pipe.cpp: the sender's view and the receiver's view
      producer_ = RingView(mem_, fds.sock[0], "Connection");
      consumer_ = RingView(mem_, fds.sock[1], "Connection");
    } else {
      producer_ = RingView(mem_, -1, "Queue", fds.event);
      consumer_ = producer_;
    }
    if ((mode & 2) != 0) consumer_.arm_fd();
    ctl_ = producer_.control();
  }
  ~Run() { ::operator delete (mem_, std::align_val_t{64}); }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  void prefill() {
    const std::uint8_t n = in_.take<std::uint8_t>() % 16;
    for (std::uint8_t i = 0; i < n; ++i) {
      const std::size_t size = in_.take<std::uint16_t>() % 600;
      const std::uint32_t tag = kTags[in_.take<std::uint8_t>() % 3];
      put(size, tag);
    }
  }

  void corrupt() {
    const auto mask = in_.take<std::uint8_t>();
    corrupted_ = mask != 0;
    RingControl& c = *ctl_;
    if ((mask & 1) != 0) c.head.store(in_.take<std::uint64_t>());
    if ((mask & 2) != 0) c.tail.store(in_.take<std::uint64_t>());
    if ((mask & 4) != 0) c.cached_head = in_.take<std::uint64_t>();
    if ((mask & 8) != 0) c.cached_tail = in_.take<std::uint64_t>();
    if ((mask & 16) != 0) c.max_messages = in_.take<std::uint32_t>();
    if ((mask & 32) != 0) c.closed.store(in_.take<std::uint32_t>());
    if ((mask & 64) != 0) {
      const auto f = in_.take<std::uint8_t>();
      c.get_waiting.store(f & 1);
      c.put_waiting.store((f >> 1) & 1);
      c.fd_armed.store((f >> 2) & 1);
      c.data_signaled.store((f >> 3) & 1);
    }
    if ((mask & 128) != 0) {
      const std::size_t at = in_.take<std::uint16_t>() % kCapacity;
      const std::size_t len = in_.take<std::uint16_t>() % (kCapacity - at + 1);
      const std::vector<std::byte> b = in_.bytes(len);
      if (!b.empty()) std::memcpy(mem_ + RingView::kControlSize + at, b.data(), b.size());
    }
  }

  void operate() {
    for (int op = 0; op < 64 && !in_.empty(); ++op) {
      try {
        step(in_.take<std::uint8_t>() % 10);
      } catch (const mproc::Error& e) {
        // EMSGSIZE: a put too big for any ring of this capacity; EPROTO: corruption reported.
        FUZZ_CHECK(e.code().value() == EMSGSIZE || (corrupted_ && e.code().value() == EPROTO));
      } catch (const mproc::Closed&) {
        FUZZ_CHECK(corrupted_ || closed_);
      } catch (const mproc::UsageError&) {  // task_done() more often than get()
      }
    }
  }

 private:
  static constexpr auto kNow = Clock::time_point::min();  // no waiting, no spinning

  void put(std::size_t size, std::uint32_t tag) {
    const std::vector<std::byte> b = pattern(size, seq_++);
    const bool too_big = size > producer_.max_message();
    const RingStatus st = producer_.put(b.data(), b.size(), tag, kNow);  // throws if too_big
    FUZZ_CHECK(!too_big);
    if (corrupted_) return;
    FUZZ_CHECK(!closed_);  // a put into a closed ring throws
    const bool room = model_bytes_ + units(size) <= kCapacity / 8 &&
                      (ctl_->max_messages == 0 || model_.size() < ctl_->max_messages);
    FUZZ_CHECK(st == (room ? RingStatus::ok : RingStatus::timed_out));
    if (st == RingStatus::ok) {
      model_.push_back({tag, b});
      model_bytes_ += units(size);
    }
  }

  static std::size_t units(std::size_t size) { return (RingView::kRecordHeader + size + 7) / 8; }

  // A get's outcome against the model: the front record, else closed or timed out.
  void expect_get(RingStatus st, const std::vector<std::byte>* got, bool typed) {
    if (corrupted_) return;
    if (model_.empty()) {
      FUZZ_CHECK(st == (closed_ ? RingStatus::closed : RingStatus::timed_out));
      return;
    }
    const Message& front = model_.front();
    if (typed && front.tag != kTags[1]) {
      FUZZ_CHECK(st == RingStatus::wrong_type);
      return;
    }
    FUZZ_CHECK(st == RingStatus::ok);
    if (got != nullptr) FUZZ_CHECK(*got == front.bytes);
    model_bytes_ -= units(front.bytes.size());
    model_.pop_front();
    ++taken_;
  }

  void step(int op) {
    switch (op) {
      case 0: {
        TakeBytes t;
        const RingStatus st = consumer_.get({&TakeBytes::fn, &t}, kNow);
        expect_get(st, &t.out, false);
        break;
      }
      case 1: {
        TakeString t;
        try {
          const RingStatus st = consumer_.get({&TakeString::fn, &t}, kNow);
          if (st == RingStatus::ok && !corrupted_) {
            const auto& b = model_.front().bytes;
            const std::string_view sent(reinterpret_cast<const char*>(b.data()), b.size());
            FUZZ_CHECK(t.out && *t.out == sent);
          }
          expect_get(st, nullptr, true);
        } catch (const mproc::Error& e) {
          FUZZ_CHECK(corrupted_ && (e.code().value() == EBADMSG || e.code().value() == EPROTO));
        }
        break;
      }
      case 2: {
        const std::size_t size = in_.take<std::uint16_t>() % 5000;
        put(size, kTags[in_.take<std::uint8_t>() % 3]);
        break;
      }
      case 3: {
        const RingStatus st = consumer_.wait_readable(kNow);
        if (!corrupted_) {
          FUZZ_CHECK(st == (!model_.empty() ? RingStatus::ok
                            : closed_       ? RingStatus::closed
                                            : RingStatus::timed_out));
        }
        break;
      }
      case 4: {
        const std::size_t n = consumer_.size();
        const bool full = consumer_.full();
        (void)consumer_.stats();
        (void)consumer_.unfinished();
        (void)consumer_.consumer_waiting();
        (void)consumer_.producer_waiting();
        if (!corrupted_) {
          FUZZ_CHECK(n == model_.size());
          FUZZ_CHECK(full == (model_bytes_ + units(1) > kCapacity / 8 ||
                              (ctl_->max_messages != 0 && model_.size() >= ctl_->max_messages)));
        }
        break;
      }
      case 5:
        producer_.close();
        closed_ = true;
        break;
      case 6:
        try {
          consumer_.task_done();
          FUZZ_CHECK(corrupted_ || done_ < taken_);
          ++done_;
        } catch (const mproc::UsageError&) {
          FUZZ_CHECK(corrupted_ || done_ == taken_);
        }
        break;
      case 7: (void)consumer_.join_tasks(kNow); break;
      case 8: consumer_.arm_fd(); break;
      case 9:
        try {
          (void)consumer_.get({&take_and_throw, nullptr}, kNow);
          FUZZ_CHECK(corrupted_ || model_.empty());
        } catch (const Refused&) {
          FUZZ_CHECK(corrupted_ || !model_.empty());  // and the record stays: the model keeps it
        }
        break;
    }
  }

  mproc_fuzz::Input& in_;
  std::byte* mem_ = nullptr;
  RingView producer_, consumer_;
  RingControl* ctl_ = nullptr;
  std::deque<Message> model_;
  std::size_t model_bytes_ = 0;  // in 8-byte units, headers included
  std::uint32_t seq_ = 0;
  std::size_t taken_ = 0, done_ = 0;
  bool corrupted_ = false;
  bool closed_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Descriptors fds;
  mproc_fuzz::Input in(data, size);
  {
    Run run(in, fds);
    run.prefill();
    run.corrupt();
    run.operate();
  }
  fds.drain();
  return 0;
}

// ---- seeds --------------------------------------------------------------------------------

namespace {

using mproc_fuzz::put;

void ops(std::vector<std::uint8_t>& s, std::initializer_list<std::uint8_t> list) {
  s.insert(s.end(), list.begin(), list.end());
}

std::vector<std::uint8_t> prefilled(std::uint8_t mode, std::initializer_list<std::uint16_t> sizes) {
  std::vector<std::uint8_t> s{mode, static_cast<std::uint8_t>(sizes.size())};
  std::uint8_t tag = 0;
  for (std::uint16_t n : sizes) {
    put(s, n);
    s.push_back(tag++ % 3);
  }
  return s;
}

}  // namespace

std::vector<mproc_fuzz::Seed> mproc_fuzz_seeds() {
  std::vector<mproc_fuzz::Seed> seeds;
  {  // a clean queue: puts and gets of every kind, wrapping around the end (and an empty put,
     // whose data() is null: memcpy from null was undefined)
    auto s = prefilled(0, {10, 500, 0, 599});
    s.push_back(0);  // no corruption
    ops(s, {0, 1, 1, 4, 3, 0, 6, 6, 7});
    for (int i = 0; i < 6; ++i) {
      s.push_back(2);
      put(s, static_cast<std::uint16_t>(700 + 300 * i));
      s.push_back(static_cast<std::uint8_t>(i));
      s.push_back(0);
    }
    s.push_back(2), put(s, std::uint16_t{4090}), s.push_back(0);  // too big: EMSGSIZE
    ops(s, {5, 0, 0, 3});
    seeds.push_back({"clean_queue", s});
  }
  {  // a clean pipe direction, armed, bounded to 3 messages
    auto s = prefilled(1 | 2 | 4, {1, 2, 3, 4});
    s.push_back(0);
    ops(s, {4, 9, 0, 3, 8, 0, 0, 0, 3});
    seeds.push_back({"clean_pipe", s});
  }
  {  // a record header claiming more bytes than the ring holds
    auto s = prefilled(0, {16});
    s.push_back(128);
    put(s, std::uint16_t{0});                         // at the first record
    put(s, std::uint16_t{8});                         // its header
    put(s, std::uint32_t{0xfffffff0});                // size
    put(s, mproc::detail::type_tag<mproc::Bytes>());  // tag
    ops(s, {0, 1, 9});
    seeds.push_back({"regress-huge-record-size", s});
  }
  {  // head far beyond tail: more committed than the ring holds
    auto s = prefilled(0, {16});
    s.push_back(1 | 4);
    put(s, std::uint64_t{0x0000'0001'0000'1000});  // head: 4096 units on
    put(s, std::uint64_t{0x0000'0001'0000'1000});  // cached_head likewise
    ops(s, {4, 0, 3, 2, 0, 0});
    seeds.push_back({"regress-head-beyond-capacity", s});
  }
  {  // a consumer's stale cache ahead of head, and a half-closed ring
    auto s = prefilled(1, {40, 40});
    s.push_back(4 | 32 | 64);
    put(s, std::uint64_t{0x0000'0003'0000'0040});  // cached_head
    put(s, std::uint32_t{1});                      // closed: closing
    s.push_back(0xf);                              // every flag
    ops(s, {0, 0, 0, 3, 4, 6});
    seeds.push_back({"cached_head_ahead", s});
  }
  return seeds;
}
