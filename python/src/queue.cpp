// _mproc._Queue: the shared-memory queue under mproc.Queue, JoinableQueue and SimpleQueue.
// Pickling, the fast paths and the record tags: codec.hpp. Naming, pickling of the queue itself
// and the Python-side classes: mproc/__init__.py.
#include <pybind11/stl.h>

#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codec.hpp"
#include "common.hpp"
#include "mproc/bytes.hpp"
#include "mproc/detail/type_tag.hpp"
#include "mproc/queue.hpp"

namespace mproc::python {

namespace {

using detail::RecordView;
using detail::RingStatus;
using detail::RingView;

// Records up to this size are copied out through a per-thread scratch buffer; larger ones go
// straight into the bytes/bytearray object returned (found too large once, then taken again).
constexpr std::size_t kScratchMax = std::size_t{64} << 10;
// Messages this large are put with the GIL released even when they need not wait.
constexpr std::size_t kReleaseGilAbove = std::size_t{64} << 10;
// A deadline already passed, without reading the clock: "try once".
constexpr Clock::time_point kPast = Clock::time_point::min();

// Records up to this size are copied out into TakeCtx itself, on the caller's stack.
constexpr std::size_t kSmallRecord = 256;

/// What one get() attempt found, filled in by take() with or without the GIL.
struct TakeCtx {
  std::vector<std::byte>* scratch = nullptr;  // a record over kSmallRecord, up to kScratchMax
  std::array<std::byte, kSmallRecord> small;  // a record up to kSmallRecord (the common one)
  char* dest = nullptr;                       // a preallocated bytes/bytearray's storage, or null
  std::size_t dest_size = 0;
  bool dest_is_bytes = false;
  std::size_t size = 0;
  std::uint32_t tag = 0;
  bool into_dest = false;
  bool need_alloc = false;

  static bool take(void* c, const RecordView& r) {
    auto& x = *static_cast<TakeCtx*>(c);
    x.size = r.size();
    x.tag = r.tag;
    x.into_dest = x.need_alloc = false;
    if (!known_tag(r.tag)) return false;
    const bool wants_bytes = r.tag == tag_bytes();
    if (x.dest != nullptr && r.size() <= x.dest_size && wants_bytes == x.dest_is_bytes) {
      r.copy_to(x.dest);
      x.into_dest = true;
      return true;
    }
    if (r.size() <= kSmallRecord) {
      r.copy_to(x.small.data());
      return true;
    }
    if (r.size() <= kScratchMax) {
      if (x.scratch == nullptr) x.scratch = &thread_scratch();
      x.scratch->resize(r.size());
      r.copy_to(x.scratch->data());
      return true;
    }
    x.need_alloc = true;  // leave it: the caller allocates an object that size and takes it again
    return false;
  }

  /// Where take() copied the record (unless into dest).
  const std::byte* copied() const noexcept { return size <= kSmallRecord ? small.data() : scratch->data(); }

  // A thread-local buffer (a TLS lookup in a shared module: only for records over kSmallRecord).
  static std::vector<std::byte>& thread_scratch() {
    thread_local std::vector<std::byte> scratch;
    return scratch;
  }
};

class PyQueue {
 public:
  // `how`: "create", "open" or "open_or_create". `message_type`: "bytes" (a C++
  // Queue<mproc::Bytes> can open it) or "str" (a C++ Queue<std::string>).
  PyQueue(const std::string& name, const std::string& how, std::size_t capacity, std::size_t maxsize,
          bool joinable, const std::string& message_type, unsigned mode, bool persistent)
      : name_(name), joinable_(joinable) {
    const bool str = message_type == "str";
    if (!str && message_type != "bytes") throw py::value_error("message_type must be 'bytes' or 'str'");
    const detail::OpenHow h = parse_how(how);
    const NamedOptions options{static_cast<mode_t>(mode),
                               persistent ? Lifetime::persistent : Lifetime::tracked};
    const detail::NamedSpec spec{name_, h, options};
    const auto kind = joinable ? detail::kJoinableQueueKind : detail::kQueueKind;
    const auto hash = str ? detail::type_tag<std::string>() : detail::type_tag<mproc::Bytes>();
    const std::string type_name = str ? detail::type_name<std::string>() : detail::type_name<mproc::Bytes>();
    py::gil_scoped_release nogil;  // creation may wait for a remover of the same name
    core_ = std::make_shared<detail::QueueCore>(spec, kind, capacity, maxsize, hash, type_name);
  }

  void put(py::handle obj, bool block, std::optional<double> timeout) {
    Encoded e = encode(obj);
    try {
      // Room now: put with the GIL held (releasing it costs more than a small put). The core
      // cannot be closed meanwhile: close() needs the GIL.
      if (e.size <= kReleaseGilAbove) {
        if (put_once(live_raw().ring(), e, kPast) == RingStatus::ok) return;
        if (!block) throw full();
      }
      auto core = live();  // from here on the GIL is released: hold the core
      if (!put_encoded(core->ring(), e, Wait::from(block, timeout))) throw full();
    } catch (...) {
      e.revoke_offers();  // a Connection in a message that was not sent: no copy stays offered
      throw;
    }
  }

  py::object get(bool block, std::optional<double> timeout) {
    TakeCtx ctx;
    const RingStatus st = live_raw().ring().get({&TakeCtx::take, &ctx}, kPast);
    if (st == RingStatus::ok) return decode(ctx.copied(), ctx.size, ctx.tag);
    if (st == RingStatus::timed_out && !block) throw empty();  // get_nowait, empty: no clock read
    auto core = live();
    return get_from(core->ring(), Wait::from(block, timeout), st, ctx);
  }

  std::size_t put_many(py::iterable items, bool block, std::optional<double> timeout) {
    auto core = live();
    std::vector<Encoded> encoded;
    try {
      for (py::handle item : items) {
        encoded.push_back(encode(item, true));
        encoded.back().flatten();  // a batch's records are single blocks
      }
    } catch (...) {
      revoke_offers_from(encoded, 0);  // nothing was sent
      throw;
    }
    const Wait w = Wait::from(block, timeout);
    // A batch carries one tag: runs of plain pickles and of out-of-band ones go separately.
    std::size_t done = 0;
    std::size_t end = 0;
    try {
      while (done < encoded.size()) {
        end = done;
        while (end < encoded.size() && encoded[end].tag == encoded[done].tag) ++end;
        put_run(core->ring(), encoded, done, end, w);
        if (done < end) break;  // timed out
      }
    } catch (const py::error_already_set&) {
      revoke_offers_from(encoded, done);  // Ctrl-C between two tries: the last try put nothing
      throw;
    } catch (...) {
      revoke_offers_from(encoded, end);  // inside a try: some of its run may be in, later runs not
      throw;
    }
    revoke_offers_from(encoded, done);  // the messages a timeout left out
    if (done == 0 && !encoded.empty()) throw full();
    return done;
  }

  py::list get_many(std::size_t max, bool block, std::optional<double> timeout) {
    if (max == 0) throw py::value_error("get_many: max must be at least 1");
    auto core = live();
    struct Got {
      std::vector<std::pair<std::uint32_t, std::vector<std::byte>>> records;
    } got;
    auto take = [](void* ctx, std::size_t, const RecordView& r) {
      if (!known_tag(r.tag)) return false;
      auto& g = *static_cast<Got*>(ctx);
      g.records.emplace_back(r.tag, std::vector<std::byte>(r.size()));
      r.copy_to(g.records.back().second.data());
      return true;
    };
    std::size_t taken = 0;
    const RingStatus st = wait_in_slices(
        Wait::from(block, timeout),
        [&](Clock::time_point until) {
          return core->ring().get_many({take, &got}, max, until, taken);
        },
        [](RingStatus s) { return s != RingStatus::timed_out; });
    if (st == RingStatus::timed_out) throw empty();
    if (st == RingStatus::closed) throw_shut_down();
    if (st == RingStatus::wrong_type)
      throw py::type_error("mproc: the next message is of a type Python cannot read");
    py::list out;
    for (auto& [tag, bytes] : got.records) out.append(decode(bytes.data(), bytes.size(), tag));
    return out;
  }

  std::size_t qsize() { return live()->ring().size(); }
  bool empty_() { return live()->ring().size() == 0; }
  bool full_() { return live()->ring().full(); }
  std::size_t capacity() { return live()->ring().capacity(); }
  std::size_t max_message_bytes() { return live()->ring().max_message(); }
  void shutdown() { live()->ring().close(); }
  bool is_shutdown() { return live()->ring().closed(); }
  bool closed() const noexcept { return !core_; }
  const std::string& name() const noexcept { return name_; }
  bool joinable() const noexcept { return joinable_; }

  /// This handle only (multiprocessing's close): later calls through it raise ValueError.
  void close() {
    auto core = std::move(core_);
    py::gil_scoped_release nogil;  // closing a tracked object may remove its file
    core.reset();
  }

  void task_done() {
    check_joinable();
    live()->ring().task_done();
  }
  bool join(std::optional<double> timeout) {
    check_joinable();
    auto core = live();
    return wait_in_slices(
        Wait::from_timeout(timeout), [&](Clock::time_point until) { return core->ring().join_tasks(until); },
        [](bool done) { return done; });
  }
  std::size_t unfinished_tasks() {
    check_joinable();
    return live()->ring().unfinished();
  }

  static void unlink(const std::string& name, bool joinable) {
    py::gil_scoped_release nogil;
    detail::QueueCore::unlink(name, joinable ? detail::kJoinableQueueKind : detail::kQueueKind);
  }

 private:
  static py::error_already_set full() {
    PyErr_SetNone(exceptions().queue_full);
    return py::error_already_set();
  }
  static py::error_already_set empty() {
    PyErr_SetNone(exceptions().queue_empty);
    return py::error_already_set();
  }
  [[noreturn]] void throw_shut_down() const {
    PyErr_SetString(exceptions().shut_down, ("Queue \"" + name_ + "\" was shut down").c_str());
    throw py::error_already_set();
  }
  void check_joinable() const {
    if (!joinable_) throw py::attribute_error("task_done/join: only a JoinableQueue counts tasks");
  }
  detail::QueueCore& live_raw() const {
    if (!core_) throw py::value_error("Queue \"" + name_ + "\" is closed");
    return *core_;
  }
  std::shared_ptr<detail::QueueCore> live() const {
    if (!core_) throw py::value_error("Queue \"" + name_ + "\" is closed");
    return core_;
  }

  // One try until `until`: a record in pieces is gathered into the ring, others copied whole.
  static RingStatus put_once(RingView& ring, const Encoded& e, Clock::time_point until) {
    if (e.gathered()) return ring.put_gather(e.pieces().data(), e.pieces().size(), e.tag, until);
    return ring.put(e.data, e.size, e.tag, until);
  }

  // A put that need not wait runs with the GIL held (cheaper than releasing it); one that must
  // wait, or copies a large message, releases it and waits in slices (common.hpp).
  // Waits in slices, with the GIL released, for room (the try with the GIL held came first).
  static bool put_encoded(RingView& ring, const Encoded& e, const Wait& w) {
    const RingStatus st = wait_in_slices(
        w, [&](Clock::time_point until) { return put_once(ring, e, until); },
        [](RingStatus s) { return s == RingStatus::ok; });
    return st == RingStatus::ok;
  }

  static void revoke_offers_from(std::vector<Encoded>& encoded, std::size_t first) noexcept {
    for (std::size_t i = first; i < encoded.size(); ++i) encoded[i].revoke_offers();
  }

  // Puts encoded[done, end) (one tag) as batches until all are in or the deadline passes;
  // `done` counts every message put, also when this throws.
  static void put_run(RingView& ring, const std::vector<Encoded>& encoded, std::size_t& done, std::size_t end,
                      const Wait& w) {
    const std::size_t begin = done;
    struct Src {
      const std::vector<Encoded>* v;
      std::size_t base;
    };
    auto next = [](void* ctx, std::size_t i, const void*& data, std::size_t& size) {
      const auto& s = *static_cast<Src*>(ctx);
      data = (*s.v)[s.base + i].data;
      size = (*s.v)[s.base + i].size;
    };
    while (done < end) {
      Src src{&encoded, done};
      const std::size_t put = wait_in_slices(
          w,
          [&](Clock::time_point until) {
            return ring.put_many({next, &src}, end - done, encoded[begin].tag, until);
          },
          [](std::size_t k) { return k > 0; });
      if (put == 0) break;
      done += put;
    }
  }

  // After a first try with the GIL held that found `st` (not ok): waits in slices with the GIL
  // released (the ring spins briefly, then sleeps), or makes room for a large record.
  py::object get_from(RingView& ring, const Wait& w, RingStatus st, TakeCtx& ctx) {
    py::object dest;
    for (;; st = ring.get({&TakeCtx::take, &ctx}, kPast)) {
      if (st == RingStatus::timed_out && !w.is_try()) {
        st = wait_in_slices(
            w,
            [&](Clock::time_point until) {
              return ring.get({&TakeCtx::take, &ctx}, until);
            },
            [](RingStatus s) { return s != RingStatus::timed_out; });
      }
      if (st == RingStatus::ok) break;
      if (st == RingStatus::timed_out) throw empty();
      if (st == RingStatus::closed) throw_shut_down();
      if (!ctx.need_alloc) {
        throw py::type_error("mproc: Queue \"" + name_ +
                             "\" holds a message of a type Python cannot read (tag " +
                             std::to_string(ctx.tag) + ")");
      }
      ctx.dest_is_bytes = ctx.tag == tag_bytes();
      dest = py::reinterpret_steal<py::object>(
          ctx.dest_is_bytes ? PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(ctx.size))
                            : PyByteArray_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(ctx.size)));
      if (!dest) throw py::error_already_set();
      ctx.dest = ctx.dest_is_bytes ? PyBytes_AS_STRING(dest.ptr()) : PyByteArray_AS_STRING(dest.ptr());
      ctx.dest_size = ctx.size;
    }
    if (!ctx.into_dest) return decode(ctx.copied(), ctx.size, ctx.tag);
    if (ctx.size != ctx.dest_size) {  // another consumer took the large one; this one is smaller
      PyObject* o = dest.release().ptr();
      const int rc = ctx.dest_is_bytes ? _PyBytes_Resize(&o, static_cast<Py_ssize_t>(ctx.size))
                                       : PyByteArray_Resize(o, static_cast<Py_ssize_t>(ctx.size));
      if (rc != 0) throw py::error_already_set();
      dest = py::reinterpret_steal<py::object>(o);
    }
    const char* p = ctx.dest_is_bytes ? PyBytes_AS_STRING(dest.ptr()) : PyByteArray_AS_STRING(dest.ptr());
    return decode(reinterpret_cast<const std::byte*>(p), ctx.size, ctx.tag, dest);
  }

  std::string name_;
  bool joinable_;
  std::shared_ptr<detail::QueueCore> core_;
};

// ---- the hot methods as plain vectorcall functions --------------------------------------------
// put/get/put_nowait/get_nowait bypass pybind11's dispatcher (a third of a small put's time):
// they parse multiprocessing's (obj, block=True, timeout=None) themselves.

struct CallArgs {
  PyObject* obj = nullptr;
  bool block = true;
  std::optional<double> timeout;
};

CallArgs parse(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, bool with_obj) {
  static const char* const kNames[] = {"obj", "block", "timeout"};
  PyObject* slots[3] = {nullptr, nullptr, nullptr};
  const int first = with_obj ? 0 : 1;
  if (nargs > 3 - first) raise_py(PyExc_TypeError, "too many positional arguments");
  for (Py_ssize_t i = 0; i < nargs; ++i) slots[first + i] = args[i];
  const Py_ssize_t nkw = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    const char* key = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
    int slot = -1;
    for (int j = first; j < 3; ++j) {
      if (key != nullptr && std::strcmp(key, kNames[j]) == 0) slot = j;
    }
    if (slot < 0) raise_py(PyExc_TypeError, "unexpected keyword argument");
    if (slots[slot] != nullptr) raise_py(PyExc_TypeError, "an argument given twice");
    slots[slot] = args[nargs + k];
  }
  CallArgs out;
  if (with_obj && slots[0] == nullptr) raise_py(PyExc_TypeError, "put() missing its argument obj");
  out.obj = slots[0];
  if (slots[1] != nullptr) {
    const int b = PyObject_IsTrue(slots[1]);
    if (b < 0) throw py::error_already_set();
    out.block = b != 0;
  }
  if (slots[2] != nullptr && slots[2] != Py_None) {
    const double t = PyFloat_AsDouble(slots[2]);
    if (t == -1.0 && PyErr_Occurred() != nullptr) throw py::error_already_set();
    out.timeout = t;
  }
  return out;
}

PyObject* q_put(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return guarded([&] {
    if (nargs == 1 && kwnames == nullptr) [[likely]] {  // put(obj): nothing to parse
      self_of<PyQueue>(self)->put(args[0], true, std::nullopt);
      return Py_NewRef(Py_None);
    }
    const CallArgs a = parse(args, nargs, kwnames, true);
    self_of<PyQueue>(self)->put(a.obj, a.block, a.timeout);
    return Py_NewRef(Py_None);
  });
}
PyObject* q_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return guarded([&] {
    if (nargs == 0 && kwnames == nullptr) [[likely]]  // get(): nothing to parse
      return self_of<PyQueue>(self)->get(true, std::nullopt).release().ptr();
    const CallArgs a = parse(args, nargs, kwnames, false);
    return self_of<PyQueue>(self)->get(a.block, a.timeout).release().ptr();
  });
}
PyObject* q_put_nowait(PyObject* self, PyObject* obj) {
  return guarded([&] {
    self_of<PyQueue>(self)->put(obj, false, std::nullopt);
    return Py_NewRef(Py_None);
  });
}
PyObject* q_get_nowait(PyObject* self, PyObject*) {
  return guarded([&] { return self_of<PyQueue>(self)->get(false, std::nullopt).release().ptr(); });
}

void add_fast_methods(py::handle cls) {
  static PyMethodDef defs[] = {
      {"put", as_cfunction(&q_put), METH_FASTCALL | METH_KEYWORDS,
       "put(obj, block=True, timeout=None)\n--\n\nPut obj, waiting while the queue is full "
       "(queue.Full on timeout or when block is false)."},
      {"get", as_cfunction(&q_get), METH_FASTCALL | METH_KEYWORDS,
       "get(block=True, timeout=None)\n--\n\nRemove and return the next object (queue.Empty on "
       "timeout or when block is false; ShutDown once shut down and drained)."},
      {"put_nowait", as_cfunction(&q_put_nowait), METH_O, "put_nowait(obj)\n--\n\nput(obj, block=False)."},
      {"get_nowait", as_cfunction(&q_get_nowait), METH_NOARGS, "get_nowait()\n--\n\nget(block=False)."},
  };
  add_methods(cls, defs);
}

}  // namespace

void bind_queue(py::module_& m) {
  auto cls =
      py::class_<PyQueue>(m, "_Queue", py::dynamic_attr(), "The shared-memory ring under mproc.Queue.")
          .def(py::init<const std::string&, const std::string&, std::size_t, std::size_t, bool,
                        const std::string&, unsigned, bool>(),
               py::arg("name"), py::arg("how"), py::arg("capacity"), py::arg("maxsize"), py::arg("joinable"),
               py::arg("message_type"), py::arg("mode"), py::arg("persistent"))
          .def("put_many", &PyQueue::put_many, py::arg("items"), py::arg("block") = true,
               py::arg("timeout") = py::none(),
               "Put every item (pickled), consecutively; returns how many were put before a timeout.")
          .def("get_many", &PyQueue::get_many, py::arg("max"), py::arg("block") = true,
               py::arg("timeout") = py::none(),
               "Wait for one object, then return a list of up to max of those waiting.")
          .def("qsize", &PyQueue::qsize, "The number of messages in the queue (exact).")
          .def("empty", &PyQueue::empty_, "Whether the queue holds no message.")
          .def("full", &PyQueue::full_, "Whether no message fits (or maxsize are queued).")
          .def_property_readonly("capacity", &PyQueue::capacity, "The ring's size in bytes.")
          .def_property_readonly("max_message_bytes", &PyQueue::max_message_bytes,
                                 "The largest encoded message the queue can hold.")
          .def_property_readonly("name", &PyQueue::name, "The queue's name in /dev/shm (mproc.<name>).")
          .def_property_readonly("_closed", &PyQueue::closed)
          .def("shutdown", &PyQueue::shutdown,
               "Close the queue for every process: put raises ShutDown, get drains then raises ShutDown.")
          .def("is_shutdown", &PyQueue::is_shutdown, "Whether shutdown() was called (by any process).")
          .def("_close", &PyQueue::close)
          .def("task_done", &PyQueue::task_done, "JoinableQueue: mark one task taken by get() as done.")
          .def("join", &PyQueue::join, py::arg("timeout") = py::none(),
               "JoinableQueue: wait until every task is done; False if the timeout passed first.")
          .def_property_readonly("unfinished_tasks", &PyQueue::unfinished_tasks)
          .def_static("_unlink", &PyQueue::unlink, py::arg("name"), py::arg("joinable"));
  add_fast_methods(cls);
}

}  // namespace mproc::python
