#include "codec.hpp"

#include <marshal.h>

#include <cstring>
#include <exception>
#include <string>
#include <utility>

#include "common.hpp"
#include "mproc/bytes.hpp"
#include "mproc/detail/type_tag.hpp"

namespace mproc::python {

namespace {

// The out-of-band header: count, reserved, pickle size, then one size per buffer.
struct OobHeader {
  std::uint32_t count;
  std::uint32_t reserved;
  std::uint64_t pickle_size;
};
constexpr std::size_t kAlign = 16;  // buffers start 16-byte aligned (numpy likes its data aligned)

std::size_t align_up(std::size_t n) noexcept {
  return (n + kAlign - 1) & ~(kAlign - 1);
}

PyObject* dumps_fn() {
  static PyObject* fn = module_attribute("pickle", "dumps");
  return fn;
}
PyObject* loads_fn() {
  static PyObject* fn = module_attribute("pickle", "loads");
  return fn;
}

// pickle.dumps(obj, 5, buffer_callback=buffers.append) (or without the callback).
py::object dumps(py::handle obj, PyObject* callback) {
  static PyObject* kwnames = Py_BuildValue("(s)", "buffer_callback");
  static PyObject* protocol = PyLong_FromLong(5);
  PyObject* args[] = {nullptr, obj.ptr(), protocol, callback};
  PyObject* result =
      callback != nullptr
          ? PyObject_Vectorcall(dumps_fn(), args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames)
          : PyObject_Vectorcall(dumps_fn(), args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
  if (result == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(result);
}

py::object memoryview_of(const std::byte* data, std::size_t size) {
  // NOLINTNEXTLINE: PyMemoryView_FromMemory takes char* even for a read-only view
  char* p = const_cast<char*>(reinterpret_cast<const char*>(data));
  PyObject* mv = PyMemoryView_FromMemory(p, static_cast<Py_ssize_t>(size), PyBUF_READ);
  if (mv == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(mv);
}

constexpr std::byte kZeros[kAlign] = {};  // the padding before each aligned buffer

// Whether `o` is a scalar (int, str, float, None, bool, bytes under 4 KiB, exact types), or a
// tuple/list of up to 16 of them: nothing pickle could hand over out of band, and exactly what
// marshal writes.
bool is_scalar(PyObject* o) noexcept {
  PyTypeObject* t = Py_TYPE(o);
  return t == &PyLong_Type || t == &PyUnicode_Type || t == &PyFloat_Type || o == Py_None ||
         t == &PyBool_Type || (t == &PyBytes_Type && PyBytes_GET_SIZE(o) < 4096);
}
bool cannot_have_buffers(PyObject* o) noexcept {
  if (is_scalar(o)) return true;
  const bool tuple = PyTuple_CheckExact(o);
  if (!tuple && !PyList_CheckExact(o)) return false;
  const Py_ssize_t n = tuple ? PyTuple_GET_SIZE(o) : PyList_GET_SIZE(o);
  if (n > 16) return false;
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!is_scalar(tuple ? PyTuple_GET_ITEM(o, i) : PyList_GET_ITEM(o, i))) return false;
  }
  return true;
}

// ---- the compact format (kTagCompact) ----
// One value: a type byte, then its payload, little-endian as the host (the record never leaves
// the machine):
//   'N' None  'T' True  'F' False  'i' int64 (8 bytes)  'd' double (8 bytes)
//   's' str: u32 length, UTF-8   'b' bytes: u32 length, the bytes
//   '(' tuple / '[' list: u8 count (at most 16), then that many of the scalars above
// The reader checks every length against the record: a malformed record is a ValueError.
constexpr std::byte kNone{'N'}, kTrue{'T'}, kFalse{'F'}, kInt{'i'}, kFloat{'d'}, kStr{'s'}, kBytesItem{'b'},
    kTuple{'('}, kList{'['};

// Writes `o` at out[at...] when it fits in `cap`; returns the position after it either way.
// `ok` false: `o` has no compact form (an int beyond 64 bits, a str UTF-8 cannot encode).
std::size_t compact_scalar(PyObject* o, std::byte* out, std::size_t cap, std::size_t at, bool& ok) {
  PyTypeObject* t = Py_TYPE(o);
  auto put_fixed = [&](std::byte type, const void* payload, std::size_t n) {
    if (at + 1 + n <= cap) {
      out[at] = type;
      std::memcpy(out + at + 1, payload, n);
    }
    return at + 1 + n;
  };
  auto put_sized = [&](std::byte type, const char* data, Py_ssize_t len) {
    const auto n = static_cast<std::uint32_t>(len);  // a bytes item is under 4 KiB; a str fits
    if (static_cast<std::size_t>(len) > 0xffffffffU) {
      ok = false;
      return at;
    }
    if (at + 5 + n <= cap) {
      out[at] = type;
      std::memcpy(out + at + 1, &n, 4);
      std::memcpy(out + at + 5, data, n);
    }
    return at + 5 + n;
  };
  if (t == &PyLong_Type) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0) {
      ok = false;
      return at;
    }
    return put_fixed(kInt, &v, 8);
  }
  if (t == &PyUnicode_Type) {
    Py_ssize_t len = 0;
    const char* s = PyUnicode_IS_ASCII(o) ? static_cast<const char*>(PyUnicode_DATA(o)) : nullptr;
    if (s != nullptr) {
      len = PyUnicode_GET_LENGTH(o);
    } else if ((s = PyUnicode_AsUTF8AndSize(o, &len)) == nullptr) {  // cached in the str
      PyErr_Clear();                                                 // lone surrogates: marshal writes them
      ok = false;
      return at;
    }
    return put_sized(kStr, s, len);
  }
  if (t == &PyFloat_Type) {
    const double v = PyFloat_AS_DOUBLE(o);
    return put_fixed(kFloat, &v, 8);
  }
  if (t == &PyBytes_Type) return put_sized(kBytesItem, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
  const std::byte type = o == Py_None ? kNone : o == Py_True ? kTrue : kFalse;
  if (at < cap) out[at] = type;
  return at + 1;
}

// Encodes `o` (cannot_have_buffers(o) holds) into out[0, cap); returns the record's size, which
// may exceed `cap` (then nothing past cap was written: call again with a buffer that size).
std::size_t compact_encode(PyObject* o, std::byte* out, std::size_t cap, bool& ok) {
  const bool tuple = PyTuple_CheckExact(o);
  if (!tuple && !PyList_CheckExact(o)) return compact_scalar(o, out, cap, 0, ok);
  const Py_ssize_t n = tuple ? PyTuple_GET_SIZE(o) : PyList_GET_SIZE(o);
  if (cap >= 2) {
    out[0] = tuple ? kTuple : kList;
    out[1] = static_cast<std::byte>(n);  // at most 16 (cannot_have_buffers)
  }
  std::size_t at = 2;
  for (Py_ssize_t i = 0; i < n && ok; ++i) {
    at = compact_scalar(tuple ? PyTuple_GET_ITEM(o, i) : PyList_GET_ITEM(o, i), out, cap, at, ok);
  }
  return at;
}

[[noreturn]] void malformed_compact() {
  throw py::value_error("mproc: a malformed message record (compact format)");
}

// Reads one scalar at data[at...], advancing `at`; a new reference.
PyObject* compact_read_scalar(const std::byte* data, std::size_t size, std::size_t& at) {
  if (at >= size) malformed_compact();
  const std::byte type = data[at++];
  auto fixed = [&](void* v) {
    if (size - at < 8) malformed_compact();
    std::memcpy(v, data + at, 8);
    at += 8;
  };
  auto sized = [&](std::uint32_t& n) {
    if (size - at < 4) malformed_compact();
    std::memcpy(&n, data + at, 4);
    at += 4;
    if (size - at < n) malformed_compact();
    const char* p = reinterpret_cast<const char*>(data + at);
    at += n;
    return p;
  };
  if (type == kInt) {
    long long v = 0;
    fixed(&v);
    return PyLong_FromLongLong(v);
  }
  if (type == kStr) {
    std::uint32_t n = 0;
    const char* p = sized(n);
    return PyUnicode_DecodeUTF8(p, static_cast<Py_ssize_t>(n), "strict");
  }
  if (type == kFloat) {
    double v = 0;
    fixed(&v);
    return PyFloat_FromDouble(v);
  }
  if (type == kBytesItem) {
    std::uint32_t n = 0;
    const char* p = sized(n);
    return PyBytes_FromStringAndSize(p, static_cast<Py_ssize_t>(n));
  }
  if (type == kNone) return Py_NewRef(Py_None);
  if (type == kTrue) return Py_NewRef(Py_True);
  if (type == kFalse) return Py_NewRef(Py_False);
  malformed_compact();
}

py::object compact_decode(const std::byte* data, std::size_t size) {
  std::size_t at = 0;
  if (size >= 2 && (data[0] == kTuple || data[0] == kList)) {
    const bool tuple = data[0] == kTuple;
    const auto n = static_cast<Py_ssize_t>(data[1]);
    if (n > 16) malformed_compact();
    auto seq = py::reinterpret_steal<py::object>(tuple ? PyTuple_New(n) : PyList_New(n));
    if (!seq) throw py::error_already_set();
    at = 2;
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* item = compact_read_scalar(data, size, at);
      if (item == nullptr) throw py::error_already_set();
      if (tuple) {
        PyTuple_SET_ITEM(seq.ptr(), i, item);
      } else {
        PyList_SET_ITEM(seq.ptr(), i, item);
      }
    }
    if (at != size) malformed_compact();
    return seq;
  }
  auto v = py::reinterpret_steal<py::object>(compact_read_scalar(data, size, at));
  if (!v) throw py::error_already_set();
  if (at != size) malformed_compact();
  return v;
}

}  // namespace

std::uint32_t tag_bytes() noexcept {
  return detail::type_tag<mproc::Bytes>();
}
std::uint32_t tag_str() noexcept {
  return detail::type_tag<std::string>();
}
bool known_tag(std::uint32_t tag) noexcept {
  return tag == tag_bytes() || tag == tag_str() || tag == kTagByteArray || tag == kTagPickle ||
         tag == kTagPickleOob || tag == kTagMarshal || tag == kTagCompact;
}

// The vectors' blocks move with them, so pieces and data into assembled_ stay valid; a record in
// inline_ is copied.
Encoded::Encoded(Encoded&& other) noexcept
    : data(other.data),
      size(other.size),
      tag(other.tag),
      keep_(std::move(other.keep_)),
      view_(other.view_),
      has_view_(std::exchange(other.has_view_, false)),
      assembled_(std::move(other.assembled_)),
      pieces_(std::move(other.pieces_)),
      views_(std::move(other.views_)),
      buffers_(std::move(other.buffers_)),
      offers_(std::move(other.offers_)) {
  other.views_.clear();
  if (other.data == other.inline_.data()) {
    std::memcpy(inline_.data(), other.inline_.data(), size);
    data = inline_.data();
  }
}

Encoded::~Encoded() {
  if (has_view_) PyBuffer_Release(&view_);
  for (Py_buffer& v : views_) PyBuffer_Release(&v);
}

Encoded encode(py::handle obj, bool pickle_everything) {
  Encoded e;
  PyObject* o = obj.ptr();
  if (!pickle_everything && PyBytes_CheckExact(o)) {
    e.data = PyBytes_AS_STRING(o);
    e.size = static_cast<std::size_t>(PyBytes_GET_SIZE(o));
    e.tag = tag_bytes();
    e.keep_ = py::reinterpret_borrow<py::object>(obj);
    return e;
  }
  if (!pickle_everything && PyUnicode_CheckExact(o)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o, &n);  // cached in the str object
    if (s == nullptr) throw py::error_already_set();
    e.data = s;
    e.size = static_cast<std::size_t>(n);
    e.tag = tag_str();
    e.keep_ = py::reinterpret_borrow<py::object>(obj);
    return e;
  }
  const bool bytearray = PyByteArray_CheckExact(o);
  if (!pickle_everything && (bytearray || PyMemoryView_Check(o))) {
    if (PyObject_GetBuffer(o, &e.view_, PyBUF_SIMPLE) == 0) {
      e.has_view_ = true;
      e.data = e.view_.buf;
      e.size = static_cast<std::size_t>(e.view_.len);
      e.tag = bytearray ? kTagByteArray : tag_bytes();
      return e;
    }
    PyErr_Clear();  // a non-contiguous memoryview: its bytes, copied
    e.keep_ = py::reinterpret_steal<py::object>(PyBytes_FromObject(o));
    if (!e.keep_) throw py::error_already_set();
    e.data = PyBytes_AS_STRING(e.keep_.ptr());
    e.size = static_cast<std::size_t>(PyBytes_GET_SIZE(e.keep_.ptr()));
    e.tag = tag_bytes();
    return e;  // every return names `e`: returned in place, never moved (its inline buffer)
  }
  encode_object(obj, e);
  return e;
}

// Anything but bytes, str, bytearray and memoryview: marshal or pickle (see codec.hpp).
void encode_object(py::handle obj, Encoded& e) {
  PyObject* o = obj.ptr();
  if (cannot_have_buffers(o)) {
    // The compact format: one pass, no allocation for a record of up to 128 bytes.
    bool ok = true;
    const std::size_t n = compact_encode(o, e.inline_.data(), e.inline_.size(), ok);
    if (ok && n <= e.inline_.size()) {
      e.data = e.inline_.data();
    } else if (ok) {
      e.assembled_.resize(n);
      (void)compact_encode(o, e.assembled_.data(), n, ok);
      e.data = e.assembled_.data();
    }
    if (ok) {
      e.size = n;
      e.tag = kTagCompact;
      return;
    }
    // An int beyond 64 bits, a str with lone surrogates: marshal (format 4, stable since
    // Python 3.4) writes every such value.
    e.keep_ = py::reinterpret_steal<py::object>(PyMarshal_WriteObjectToString(o, kMarshalVersion));
    if (!e.keep_) throw py::error_already_set();
    e.data = PyBytes_AS_STRING(e.keep_.ptr());
    e.size = static_cast<std::size_t>(PyBytes_GET_SIZE(e.keep_.ptr()));
    e.tag = kTagMarshal;
    return;
  }
  py::list buffers;
  py::object append = buffers.attr("append");
  const OfferScope offers(e.offers_);
  py::object pickle = dumps(obj, append.ptr());
  if (buffers.empty()) {
    e.data = PyBytes_AS_STRING(pickle.ptr());
    e.size = static_cast<std::size_t>(PyBytes_GET_SIZE(pickle.ptr()));
    e.tag = kTagPickle;
    e.keep_ = std::move(pickle);
    return;
  }
  std::vector<Py_buffer> views;
  views.reserve(buffers.size());
  bool contiguous = true;
  for (py::handle b : buffers) {
    Py_buffer v;
    if (PyObject_GetBuffer(b.ptr(), &v, PyBUF_SIMPLE) != 0) {
      PyErr_Clear();
      contiguous = false;
      break;
    }
    views.push_back(v);
  }
  if (!contiguous) {  // a buffer pickle cannot hand over as one block: pickle it in band
    for (Py_buffer& v : views) PyBuffer_Release(&v);
    python::revoke_offers(e.offers_);  // the first pickle's: never sent
    e.keep_ = dumps(obj, nullptr);
    e.data = PyBytes_AS_STRING(e.keep_.ptr());
    e.size = static_cast<std::size_t>(PyBytes_GET_SIZE(e.keep_.ptr()));
    e.tag = kTagPickle;
    return;
  }
  e.gather_out_of_band(std::move(pickle), std::move(views), std::move(buffers));
}

// The record, in pieces: the header with each buffer's size, the pickle, then each buffer, each
// padded to a 16-byte boundary. The buffers stay exported (unchanged) until this is destroyed.
void Encoded::gather_out_of_band(py::object pickle, std::vector<Py_buffer> views, py::list buffers) {
  views_ = std::move(views);
  buffers_ = std::move(buffers);
  keep_ = std::move(pickle);
  const auto plen = static_cast<std::size_t>(PyBytes_GET_SIZE(keep_.ptr()));
  const OobHeader h{static_cast<std::uint32_t>(views_.size()), 0, plen};
  assembled_.resize(sizeof h + 8 * views_.size());
  std::memcpy(assembled_.data(), &h, sizeof h);
  std::size_t at = sizeof h;
  for (const Py_buffer& v : views_) {
    const auto len = static_cast<std::uint64_t>(v.len);
    std::memcpy(assembled_.data() + at, &len, 8);
    at += 8;
  }
  auto piece = [&](const void* p, std::size_t n) {
    pieces_.push_back({p, n});
    at += n;
  };
  auto pad = [&] {
    if (align_up(at) != at) piece(kZeros, align_up(at) - at);
  };
  pieces_.reserve(2 + 2 * views_.size() + 1);
  pieces_.push_back({assembled_.data(), assembled_.size()});
  piece(PyBytes_AS_STRING(keep_.ptr()), plen);
  pad();
  for (const Py_buffer& v : views_) {
    piece(v.buf, static_cast<std::size_t>(v.len));
    pad();
  }
  data = nullptr;
  size = at;
  tag = kTagPickleOob;
}

void Encoded::flatten() {
  if (pieces_.empty()) return;
  std::vector<std::byte> flat(size);
  std::size_t at = 0;
  for (const detail::RecordPiece& p : pieces_) {
    if (p.size != 0) std::memcpy(flat.data() + at, p.data, p.size);
    at += p.size;
  }
  pieces_.clear();
  assembled_ = std::move(flat);
  data = assembled_.data();
}

namespace {
thread_local py::object* t_offers = nullptr;
}  // namespace

OfferScope::OfferScope(py::object& offers) noexcept
    : offers_(&offers), previous_(std::exchange(t_offers, &offers)), unwinding_(std::uncaught_exceptions()) {}
OfferScope::~OfferScope() {
  t_offers = previous_;
  if (std::uncaught_exceptions() > unwinding_) revoke_offers(*offers_);  // the message is not made
}

void note_offer(py::handle offer) {
  if (t_offers == nullptr) return;
  if (!*t_offers) *t_offers = py::list();
  py::reinterpret_borrow<py::list>(*t_offers).append(offer);
}

void revoke_offers(py::object& offers) noexcept {
  if (!offers) return;
  const py::error_scope keep;  // the error that made the message fail stays pending
  static PyObject* const revoke = []() -> PyObject* {
    try {
      return module_attribute("mproc._objects", "_revoke_carried");
    } catch (const py::error_already_set&) {
      return nullptr;
    }
  }();
  if (revoke != nullptr) {
    PyObject* r = PyObject_CallOneArg(revoke, offers.ptr());
    Py_XDECREF(r);
  }
  PyErr_Clear();  // a revocation that failed leaves the copies as they were
  offers = py::object();
}

py::object pickle_dumps(py::handle obj) {
  return dumps(obj, nullptr);
}

py::object pickle_loads(const std::byte* data, std::size_t size) {
  // pickle.loads keeps no reference to its input: the view dies with this call.
  py::object view = memoryview_of(data, size);
  PyObject* r = PyObject_CallOneArg(loads_fn(), view.ptr());
  if (r == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

namespace {

py::object decode_oob(const std::byte* data, std::size_t size, py::object owner) {
  OobHeader h{};
  if (size < sizeof h) throw py::value_error("mproc: a truncated out-of-band pickle record");
  std::memcpy(&h, data, sizeof h);
  const std::size_t head = sizeof h + 8 * std::size_t{h.count};
  if (head > size || h.pickle_size > size - head) {
    throw py::value_error("mproc: a malformed out-of-band pickle record");
  }
  if (!owner || !PyByteArray_CheckExact(owner.ptr())) {
    owner = py::reinterpret_steal<py::object>(
        PyByteArray_FromStringAndSize(reinterpret_cast<const char*>(data), static_cast<Py_ssize_t>(size)));
    if (!owner) throw py::error_already_set();
  }
  py::object whole = py::reinterpret_steal<py::object>(PyMemoryView_FromObject(owner.ptr()));
  if (!whole) throw py::error_already_set();
  py::list buffers;
  std::size_t at = align_up(head + h.pickle_size);
  for (std::uint32_t i = 0; i < h.count; ++i) {
    std::uint64_t len = 0;
    std::memcpy(&len, data + sizeof h + 8 * i, 8);
    if (at > size || len > size - at) throw py::value_error("mproc: a malformed out-of-band pickle record");
    buffers.append(whole[py::slice(static_cast<py::ssize_t>(at), static_cast<py::ssize_t>(at + len), 1)]);
    at = align_up(at + len);
  }
  py::object pickle =
      whole[py::slice(static_cast<py::ssize_t>(head), static_cast<py::ssize_t>(head + h.pickle_size), 1)];
  return py::reinterpret_borrow<py::object>(loads_fn())(pickle, py::arg("buffers") = buffers);
}

}  // namespace

py::object decode(const std::byte* data, std::size_t size, std::uint32_t tag, py::object owner) {
  if (tag == kTagCompact) return compact_decode(data, size);  // the common small message first
  const char* chars = reinterpret_cast<const char*>(data);
  const auto n = static_cast<Py_ssize_t>(size);
  if (tag == tag_bytes()) {
    if (owner && PyBytes_CheckExact(owner.ptr())) return owner;
    return py::reinterpret_steal<py::object>(PyBytes_FromStringAndSize(chars, n));
  }
  if (tag == tag_str()) {
    PyObject* s = PyUnicode_DecodeUTF8(chars, n, "strict");
    if (s == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(s);
  }
  if (tag == kTagByteArray) {
    if (owner && PyByteArray_CheckExact(owner.ptr())) return owner;
    return py::reinterpret_steal<py::object>(PyByteArray_FromStringAndSize(chars, n));
  }
  if (tag == kTagPickle) return pickle_loads(data, size);
  if (tag == kTagMarshal) {
    PyObject* o = PyMarshal_ReadObjectFromString(chars, n);
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
  }
  if (tag == kTagPickleOob) return decode_oob(data, size, std::move(owner));
  throw py::type_error("mproc: a message of a type Python cannot read (type tag " + std::to_string(tag) +
                       "): was it put by a C++ program as something other than Bytes or std::string?");
}

}  // namespace mproc::python
