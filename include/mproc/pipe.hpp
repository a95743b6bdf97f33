#pragma once
/// mproc::Pipe() and mproc::Connection — two-way (or one-way) message channels between
/// processes, as Python's multiprocessing.Pipe.
///
///   auto [parent_end, child_end] = mproc::Pipe();
///   mproc::Process p([&] { child_end.send(std::string("hi")); child_end.recv<int>(); });
///   p.start();
///   child_end.close();                          // as in Python: close the end you do not use
///   std::optional<std::string> s = parent_end.recv<std::string>();
///   parent_end.send(42);
///
/// Each direction is a shared-memory ring (the same one Queue uses, docs/design/queue.md), so
/// messages are the same types as Queue's: trivially copyable (memcpy), vectors and strings of
/// them, anything cereal serialises, and raw bytes (send_bytes/recv_bytes). Every message
/// carries its type's tag: recv<std::string>() of a message sent as an int is an mproc::Error
/// (EBADMSG) and leaves the message in place.
///
/// End of stream: recv() returns an empty optional — Python raises EOFError — once the other
///   end has been closed by every process that had it, or those processes died, and nothing is
///   left to read. Like Python, a process that inherited an end it does not use must close it,
///   or the peer never sees end of stream. send() to such a peer throws mproc::Error (EPIPE) at
///   once if it would block, otherwise within 10 ms of the peer's end going away.
/// Waiting: recv() spins briefly, then sleeps in the kernel. fileno() gives a descriptor that is
///   readable when a message is waiting or the peer is gone, for poll/epoll/asio loops;
///   mproc::wait() waits on several connections at once, like multiprocessing.connection.wait.
///   (The descriptor may rarely wake with nothing to read: confirm with poll(0s), as Python's
///   documentation advises for its own.)
/// One-way pipes: Pipe(false) returns (reader, writer); the wrong direction is a UsageError.
/// Sizing: each direction holds `capacity_bytes` (rounded up to a power of two); footprint is
///   4096 + capacity bytes of shared memory per direction, and the largest message is
///   capacity − 8 bytes.
/// Thread safety: all members may be called from any thread; messages from concurrent senders
///   are never interleaved.
/// Process safety: an end may be shared by several processes (it is inherited through fork, or
///   sent to a spawned or forkserver child as a `Connection&` argument: <mproc/start_method.hpp>);
///   each message goes to exactly one receiver.
/// If a peer dies: recv() drains what the dead peer had sent, then reports end of stream; a
///   message whose send() returned is delivered exactly once; a sender killed inside send()
///   loses only that message. The ring's crash rules (Queue's) apply.
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "mproc/detail/codec_core.hpp"
#ifndef MPROC_NO_CEREAL
#include "mproc/detail/codec.hpp"  // structured messages; MPROC_NO_CEREAL leaves cereal out
#endif
#include "mproc/detail/deadline.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/detail/ring.hpp"
#include "mproc/error.hpp"

namespace mproc {

class Connection;

namespace detail {
template <class T>
struct Travel;  // <mproc/start_method.hpp>: how a Connection reaches a spawned child
}  // namespace detail

/// Creates a connected pair. duplex: both ends send and receive. Otherwise the first end only
/// receives and the second only sends, as Python's Pipe(duplex=False).
std::pair<Connection, Connection> Pipe(bool duplex = true, std::size_t capacity_bytes = std::size_t{1} << 20);

class Connection {
 public:
  Connection() noexcept = default;  // a closed connection
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // ---- send ----------------------------------------------------------------------------------
  /// Blocks while the peer's ring is full. Throws mproc::Error (EPIPE) when the peer is gone,
  /// mproc::Error (EMSGSIZE) for a message that can never fit.
  template <class T>
  void send(const T& value) {
    static_assert(detail::codec_available_v<T>, "mproc::Connection::send: " MPROC_DETAIL_NO_CEREAL_MESSAGE);
    static_assert(!detail::codec_available_v<T> || detail::Message<T>,
                  "mproc::Connection::send: see Queue<T> for the types a message can be");
    const detail::Encoded e = detail::encode(value);
    send_raw(e.data, e.size, detail::type_tag<T>());
  }
  void send_bytes(std::span<const std::byte> bytes) {
    send_raw(bytes.data(), bytes.size(), detail::type_tag<Bytes>());
  }

  // ---- receive -------------------------------------------------------------------------------
  /// Blocks for the next message. Empty: end of stream (the peer is gone and nothing is left).
  template <class T>
  std::optional<T> recv() {
    static_assert(detail::codec_available_v<T>, "mproc::Connection::recv: " MPROC_DETAIL_NO_CEREAL_MESSAGE);
    static_assert(!detail::codec_available_v<T> || detail::Message<T>,
                  "mproc::Connection::recv: see Queue<T> for the types a message can be");
    std::optional<T> out;
    // The type's name is made only for the error: demangling it on every message was 60 % of a
    // send + recv of a uint64_t (callgrind: 1375 instructions, against 432 for a Queue's).
    received_or_throw_wrong_type(recv_raw(detail::taker_emplace(out)), &detail::type_name<T>);
    return out;
  }
  /// The next message as raw bytes, whatever type it was sent as.
  std::optional<Bytes> recv_bytes() {
    Bytes out;
    if (!received_or_throw_wrong_type(recv_raw(detail::taker_bytes(out)), &bytes_name)) return std::nullopt;
    return out;
  }
  /// Into an existing buffer, reusing its storage. False: end of stream.
  bool recv_bytes_into(Bytes& out) {
    return received_or_throw_wrong_type(recv_raw(detail::taker_bytes(out)), &bytes_name);
  }

  /// Whether a message (or end of stream) is ready, waiting at most `timeout` (Python's
  /// spelling; poll() looks without waiting).
  bool poll(detail::Timeout timeout = std::chrono::seconds(0)) { return poll_until(timeout); }
  bool poll_for(detail::Timeout timeout) { return poll_until(timeout); }
  /// Waits until `deadline`: a time point of any clock (see <mproc/detail/deadline.hpp>).
  bool poll_until(detail::Deadline deadline);

  /// Closes this process's copy of the end. Further use is an mproc::UsageError.
  void close() noexcept;
  bool closed() const noexcept { return in_fd_ < 0 && out_fd_ < 0; }
  bool readable() const noexcept { return in_fd_ >= 0; }
  bool writable() const noexcept { return out_fd_ >= 0; }
  /// A descriptor readable when a message is waiting or the peer is gone (see the file comment).
  int fileno();

 private:
  friend std::pair<Connection, Connection> Pipe(bool, std::size_t);
  friend struct detail::Travel<Connection>;
  void send_raw(const void* data, std::size_t size, std::uint32_t tag);
  detail::RingStatus recv_raw(detail::Taker take);
  /// A receive's status as a bool (a message was taken), except that a message of another type
  /// than `type` throws mproc::Error (EBADMSG).
  /// `type_name` is called only to name the expected type in a wrong-type error.
  bool received_or_throw_wrong_type(detail::RingStatus status, std::string (*type_name)());
  static std::string bytes_name() { return "Bytes"; }
  void check_usable(bool receiving) const;

  std::shared_ptr<detail::Mapping> mapping_;  // both ends' rings; shared by the pair in this process
  detail::RingView in_;                       // the direction this end receives
  detail::RingView out_;                      // the direction this end sends
  int in_fd_ = -1;   // socket of the incoming direction: wake-ups and the peer's liveness
  int out_fd_ = -1;  // socket of the outgoing direction
};

/// Waits until at least one of `connections` is ready to recv (a message or end of stream), or
/// `deadline` passes; returns the ready ones (empty on timeout). Like
/// multiprocessing.connection.wait: `wait(connections, 2s)` (a duration) or a time point of any
/// clock.
std::vector<Connection*> wait(std::span<Connection* const> connections, detail::Deadline deadline);
inline std::vector<Connection*> wait(std::span<Connection* const> connections) {
  return wait(connections, detail::Deadline::forever());
}
/// The library's uniform spellings of wait(connections, timeout).
inline std::vector<Connection*> wait_for(std::span<Connection* const> connections, detail::Timeout timeout) {
  return wait(connections, timeout);
}
inline std::vector<Connection*> wait_until(std::span<Connection* const> connections,
                                           detail::Deadline deadline) {
  return wait(connections, deadline);
}

}  // namespace mproc
