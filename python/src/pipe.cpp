// _mproc._Connection and _mproc._pipe: mproc::Pipe() for Python. As in multiprocessing, send()
// is send_bytes(pickle.dumps(obj)) and recv() is pickle.loads(recv_bytes()).
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "codec.hpp"
#include "common.hpp"
#include "mproc/error.hpp"
#include "mproc/pipe.hpp"
#include "mproc/start_method.hpp"

namespace mproc::python {

namespace {

class PyConnection {
 public:
  explicit PyConnection(Connection c) : conn_(std::move(c)) {}

  void send_bytes(py::buffer buf, std::size_t offset, std::optional<std::size_t> size) {
    const py::buffer_info info = buf.request();  // contiguous bytes (PyBUF_SIMPLE)
    const auto total = static_cast<std::size_t>(info.size * info.itemsize);
    if (offset > total) throw py::value_error("send_bytes: offset is beyond the buffer");
    const std::size_t n = size.value_or(total - offset);
    if (n > total - offset) throw py::value_error("send_bytes: buffer length < offset + size");
    send_raw(static_cast<const std::byte*>(info.ptr) + offset, n);
  }
  void send(py::handle obj) {
    py::object offers;
    py::object p;
    {
      const OfferScope scope(offers);
      p = pickle_dumps(obj);
    }
    try {
      send_raw(reinterpret_cast<const std::byte*>(PyBytes_AS_STRING(p.ptr())),
               static_cast<std::size_t>(PyBytes_GET_SIZE(p.ptr())));
    } catch (...) {
      revoke_offers(offers);  // not sent: no copy stays offered
      throw;
    }
  }
  py::bytes recv_bytes(std::optional<std::size_t> maxlength) {
    Bytes b = recv_raw();
    if (maxlength && b.size() > *maxlength) {
      close();  // as multiprocessing: the message is lost and the connection unusable
      raise_py(PyExc_OSError, "bad message length");
    }
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  py::object recv() {
    const Bytes b = recv_raw();
    return pickle_loads(b.data(), b.size());
  }
  bool poll(std::optional<double> timeout) {
    check_open();
    if (conn_.poll_until(Clock::now())) return true;
    const Wait w = Wait::from(true, timeout ? std::optional<double>(*timeout) : std::nullopt);
    if (w.is_try()) return false;
    return wait_in_slices(
        w, [&](Clock::time_point until) { return conn_.poll_until(until); },
        [](bool ready) { return ready; });
  }
  void close() noexcept { conn_.close(); }
  bool closed() const noexcept { return conn_.closed(); }
  bool readable() const noexcept { return conn_.readable(); }
  bool writable() const noexcept { return conn_.writable(); }
  int fileno() {
    check_open();
    return conn_.fileno();
  }
  // For pickling (mproc/_objects.py): the bytes and the descriptors (still this end's) that
  // describe it, as for a spawned C++ child; multiprocessing's DupFd carries the descriptors.
  py::tuple export_descriptors() const {
    check_open();
    std::vector<int> fds;
    const std::string bytes = detail::Travel<Connection>::encode(conn_, fds);
    return py::make_tuple(py::bytes(bytes), fds);
  }
  // The end rebuilt around received descriptors, owned from now on (closed on a throw).
  static PyConnection adopt(const std::string& bytes, std::vector<int> fds) {
    return PyConnection(detail::adopt_travelled<Connection>(bytes, std::move(fds)));
  }

 private:
  void check_open() const {
    if (conn_.closed()) raise_py(PyExc_OSError, "handle is closed");
  }
  // Always without the GIL: a send blocks while the peer's ring is full, and Connection has no
  // timed send to wait in slices with (so a blocked send does not answer Ctrl-C until the peer
  // reads or goes away).
  void send_raw(const std::byte* data, std::size_t n) {
    check_open();
    py::gil_scoped_release nogil;
    conn_.send_bytes({data, n});
  }
  Bytes recv_raw() {
    check_open();
    // Wait in slices (Ctrl-C) until something is ready, then receive (GIL released).
    if (!conn_.poll_until(Clock::now())) {
      (void)wait_in_slices(
          Wait::from(true, std::nullopt), [&](Clock::time_point until) { return conn_.poll_until(until); },
          [](bool ready) { return ready; });
    }
    std::optional<Bytes> b;
    {
      py::gil_scoped_release nogil;
      b = conn_.recv_bytes();
    }
    if (!b) raise_py(PyExc_EOFError, "the other end of the pipe is closed");
    return std::move(*b);
  }

  Connection conn_;
};

}  // namespace

void bind_pipe(py::module_& m) {
  py::class_<PyConnection>(m, "_Connection", py::dynamic_attr(), "One end of a Pipe.")
      .def("send", &PyConnection::send, py::arg("obj"), "Send a picklable object to the other end.")
      .def("recv", &PyConnection::recv,
           "Receive an object sent with send(); EOFError once the other end is gone and nothing is left.")
      .def("send_bytes", &PyConnection::send_bytes, py::arg("buf"), py::arg("offset") = 0,
           py::arg("size") = py::none(), "Send bytes from a bytes-like object as one message.")
      .def("recv_bytes", &PyConnection::recv_bytes, py::arg("maxlength") = py::none(),
           "Receive one message as bytes; EOFError at end of stream.")
      .def("poll", &PyConnection::poll, py::arg("timeout") = 0.0,
           "Whether a message (or end of stream) is ready, waiting at most timeout (None: forever).")
      .def("close", &PyConnection::close, "Close this process's copy of the end.")
      .def("fileno", &PyConnection::fileno, "A descriptor readable when a message waits or the peer is gone.")
      .def("_export", &PyConnection::export_descriptors)
      .def_static("_adopt", &PyConnection::adopt, py::arg("data"), py::arg("fds"))
      .def_property_readonly("closed", &PyConnection::closed)
      .def_property_readonly("readable", &PyConnection::readable)
      .def_property_readonly("writable", &PyConnection::writable)
      .def("__enter__", [](PyConnection& c) -> PyConnection& { return c; })
      .def("__exit__", [](PyConnection& c, py::args) { c.close(); });
  m.def(
      "_pipe",
      [](bool duplex, std::size_t capacity) {
        auto [a, b] = Pipe(duplex, capacity);
        return std::make_pair(PyConnection(std::move(a)), PyConnection(std::move(b)));
      },
      py::arg("duplex") = true, py::arg("capacity") = std::size_t{1} << 22);
}

}  // namespace mproc::python
