#pragma once
// How a Python object becomes a queue record and back (docs/python.md, "How objects travel").
//
// Each record carries a type tag, so the consumer knows how to rebuild it without a header:
//   bytes (and a contiguous memoryview)  tag of mproc::Bytes: the raw bytes, no pickling; what a
//                                        C++ Queue<mproc::Bytes> puts and gets
//   str                                  tag of std::string: UTF-8; a C++ Queue<std::string>'s
//   bytearray                            a tag of ours: the raw bytes, back as a bytearray
//   scalars, short tuples/lists of them  compact: int (64-bit), float, str, bytes, None, bool,
//                                        exact types only, written by this codec in one pass
//                                        (a fifth of marshal's cost, a tenth of pickle's); an
//                                        int beyond 64 bits makes it marshal (version 4)
//   anything else                        pickle protocol 5. Without out-of-band buffers the
//                                        record is the pickle; with them (numpy arrays, ...)
//                                        it is a small header, the pickle and each buffer,
//                                        16-byte aligned, and the consumer hands the buffers
//                                        to pickle.loads as views of one bytearray (no copy).
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mproc/detail/ring.hpp"

namespace mproc::python {

namespace py = pybind11;

/// The record tags (detail::type_tag<Bytes>() and <std::string>() for the first two).
std::uint32_t tag_bytes() noexcept;
std::uint32_t tag_str() noexcept;
inline constexpr std::uint32_t kTagByteArray = 0x6d707962;  // "mpyb"
inline constexpr std::uint32_t kTagPickle = 0x6d707970;     // "mpyp"
inline constexpr std::uint32_t kTagPickleOob = 0x6d70796f;  // "mpyo"
inline constexpr std::uint32_t kTagMarshal = 0x6d70796d;    // "mpym"
inline constexpr std::uint32_t kTagCompact = 0x6d707963;    // "mpyc"
inline constexpr int kMarshalVersion = 4;
bool known_tag(std::uint32_t tag) noexcept;

/// While one lives, the resource-sharer offers that this thread's pickling makes (a Connection or
/// a Condition(lock) pickled anywhere but into a child being started: mproc/_objects.py's
/// _carried) are noted in `offers`, a list made when the first is noted. Left by an exception
/// (pickling failed), it takes them back at once.
class OfferScope {
 public:
  explicit OfferScope(py::object& offers) noexcept;
  OfferScope(const OfferScope&) = delete;
  OfferScope& operator=(const OfferScope&) = delete;
  ~OfferScope();

 private:
  py::object* offers_;
  py::object* previous_;
  int unwinding_;
};
/// _mproc._note_carried: notes `offer` in the innermost OfferScope's list (none: nothing to do).
void note_offer(py::handle offer);
/// Takes back the offers in `offers` for a message that was not sent, closing their copies
/// (GIL held; a pending Python error is kept).
void revoke_offers(py::object& offers) noexcept;

/// An encoded object: `data`/`size` stay valid (and unchanged: buffers are exported, so a
/// bytearray cannot be resized) while this lives, with or without the GIL. Destroy it with the
/// GIL held. A pickle with out-of-band buffers is left in pieces (gathered(): `data` is null,
/// `size` the whole record's), which the ring copies straight in (RingView::put_gather);
/// flatten() assembles them where one block is needed (a batch).
class Encoded {
 public:
  Encoded() = default;
  Encoded(Encoded&& other) noexcept;
  Encoded& operator=(Encoded&&) = delete;
  Encoded(const Encoded&) = delete;
  ~Encoded();

  const void* data = nullptr;
  std::size_t size = 0;
  std::uint32_t tag = 0;

  bool gathered() const noexcept { return !pieces_.empty(); }
  /// For a put that failed: takes back what pickling offered to other processes.
  void revoke_offers() noexcept { python::revoke_offers(offers_); }
  const std::vector<detail::RecordPiece>& pieces() const noexcept { return pieces_; }
  /// Makes a gathered record one block at `data` (GIL held).
  void flatten();

 private:
  friend Encoded encode(py::handle obj, bool pickle_everything);
  friend void encode_object(py::handle obj, Encoded& e);
  py::object keep_;   // the object (or its pickle) that owns data
  Py_buffer view_{};  // an exported buffer, released on destruction
  bool has_view_ = false;
  void gather_out_of_band(py::object pickle, std::vector<Py_buffer> views, py::list buffers);

  std::vector<std::byte> assembled_;  // a long compact record, a flattened one, or the out-of-band header
  std::vector<detail::RecordPiece> pieces_;  // a gathered record: into assembled_, keep_, views_
  std::vector<Py_buffer> views_;             // the out-of-band buffers, released on destruction
  py::object buffers_;                       // ... and the objects that export them
  py::object offers_;                        // what pickling offered (OfferScope), or null
  std::array<std::byte, 128> inline_;        // a compact record that fits (the common small message)
};

/// Encodes `obj` (GIL held). `pickle_everything`: pickle bytes and str too (no fast paths).
Encoded encode(py::handle obj, bool pickle_everything = false);
/// The part of encode() for everything but bytes, str, bytearray and memoryview.
void encode_object(py::handle obj, Encoded& e);

/// Rebuilds an object from a record's bytes (GIL held). `owner`, when not null, is a bytes (tag
/// of Bytes) or bytearray object whose contents are exactly the record: it is returned as it
/// is or viewed without a copy.
py::object decode(const std::byte* data, std::size_t size, std::uint32_t tag, py::object owner = {});

/// The pickle functions, for the Python-side codec of Connection.send/recv.
py::object pickle_dumps(py::handle obj);
py::object pickle_loads(const std::byte* data, std::size_t size);

}  // namespace mproc::python
