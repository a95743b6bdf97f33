// _mproc._Shared (the storage of mproc.Value and mproc.Array, by ctypes typecode) and
// _mproc._SharedMemory. Both expose the buffer protocol: memoryview and numpy view the shared
// bytes without copying. The Python classes (mproc/__init__.py) add .value, indexing and slices.
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "common.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/value.hpp"

namespace mproc::python {

namespace {

/// A named Value<T> or Array<T>, whatever T.
class Shared {
 public:
  virtual ~Shared() = default;
  virtual void* data() noexcept = 0;
  virtual std::size_t count() const noexcept = 0;
  virtual detail::RobustLock& lock() noexcept = 0;
};

template <class T>
class SharedValue final : public Shared {
 public:
  explicit SharedValue(std::unique_ptr<Value<T>> v) : v_(std::move(v)) {}
  void* data() noexcept override { return &v_->raw(); }
  std::size_t count() const noexcept override { return 1; }
  detail::RobustLock& lock() noexcept override { return v_->get_lock(); }

 private:
  std::unique_ptr<Value<T>> v_;
};

template <class T>
class SharedArray final : public Shared {
 public:
  explicit SharedArray(std::unique_ptr<Array<T>> a) : a_(std::move(a)) {}
  void* data() noexcept override { return a_->span().data(); }
  std::size_t count() const noexcept override { return a_->size(); }
  detail::RobustLock& lock() noexcept override { return a_->get_lock(); }

 private:
  std::unique_ptr<Array<T>> a_;
};

template <class T>
T to_value(py::handle v) {
  if constexpr (std::is_floating_point_v<T>)
    return static_cast<T>(py::cast<double>(v));
  else if constexpr (std::is_same_v<T, bool>)
    return py::cast<bool>(v);
  else if constexpr (std::is_signed_v<T>)
    return static_cast<T>(py::cast<long long>(v));
  else
    return static_cast<T>(py::cast<unsigned long long>(v));
}

template <class T>
std::unique_ptr<Shared> make(bool array, const std::string& name, detail::OpenHow how, std::size_t size,
                             py::handle fill, const NamedOptions& options) {
  const T f = fill.is_none() ? T{} : to_value<T>(fill);
  py::gil_scoped_release nogil;
  if (array) {
    std::unique_ptr<Array<T>> a;
    switch (how) {
      case detail::OpenHow::create: a.reset(new Array<T>(Array<T>::create(name, size, f, options))); break;
      case detail::OpenHow::open: a.reset(new Array<T>(Array<T>::open(name))); break;
      case detail::OpenHow::open_or_create:
        a.reset(new Array<T>(Array<T>::open_or_create(name, size, f, options)));
        break;
    }
    return std::make_unique<SharedArray<T>>(std::move(a));
  }
  std::unique_ptr<Value<T>> v;
  switch (how) {
    case detail::OpenHow::create: v.reset(new Value<T>(Value<T>::create(name, f, options))); break;
    case detail::OpenHow::open: v.reset(new Value<T>(Value<T>::open(name))); break;
    case detail::OpenHow::open_or_create:
      v.reset(new Value<T>(Value<T>::open_or_create(name, f, options)));
      break;
  }
  return std::make_unique<SharedValue<T>>(std::move(v));
}

template <class T>
void unlink_typed(bool array, const std::string& name) {
  py::gil_scoped_release nogil;
  if (array)
    Array<T>::unlink(name);
  else
    Value<T>::unlink(name);
}

/// Calls f.template operator()<T>() for the C type of a ctypes typecode.
template <class F>
decltype(auto) with_type(char code, F&& f) {
  switch (code) {
    case 'c': return f.template operator()<char>();
    case 'b': return f.template operator()<signed char>();
    case 'B': return f.template operator()<unsigned char>();
    case 'h': return f.template operator()<short>();
    case 'H': return f.template operator()<unsigned short>();
    case 'i': return f.template operator()<int>();
    case 'I': return f.template operator()<unsigned int>();
    case 'l': return f.template operator()<long>();
    case 'L': return f.template operator()<unsigned long>();
    case 'q': return f.template operator()<long long>();
    case 'Q': return f.template operator()<unsigned long long>();
    case 'f': return f.template operator()<float>();
    case 'd': return f.template operator()<double>();
    case '?': return f.template operator()<bool>();
    default: break;
  }
  throw py::value_error(std::string("unknown typecode '") + code + "' (one of c b B h H i I l L q Q f d ?)");
}

class PyShared {
 public:
  PyShared(const std::string& name, const std::string& how, const std::string& typecode, bool array,
           std::size_t size, py::handle fill, unsigned mode, bool persistent)
      : name_(name), typecode_(typecode) {
    if (typecode.size() != 1) throw py::value_error("a typecode is one character");
    const NamedOptions options{static_cast<mode_t>(mode),
                               persistent ? Lifetime::persistent : Lifetime::tracked};
    const detail::OpenHow h = parse_how(how);
    shared_ = with_type(typecode[0], [&]<class T>() {
      itemsize_ = sizeof(T);
      return make<T>(array, name, h, size, fill, options);
    });
  }
  py::buffer_info buffer() {
    return py::buffer_info(shared_->data(), static_cast<py::ssize_t>(itemsize_), typecode_, 1,
                           {static_cast<py::ssize_t>(shared_->count())},
                           {static_cast<py::ssize_t>(itemsize_)});
  }
  detail::RobustLock& lock() noexcept { return shared_->lock(); }
  std::size_t count() const noexcept { return shared_->count(); }
  const std::string& name() const noexcept { return name_; }
  const std::string& typecode() const noexcept { return typecode_; }

 private:
  std::string name_;
  std::string typecode_;
  std::size_t itemsize_ = 0;
  std::unique_ptr<Shared> shared_;
};

class PySharedMemory {
 public:
  PySharedMemory(const std::string& name, const std::string& how, std::size_t size, unsigned mode,
                 bool persistent) {
    const NamedOptions options{static_cast<mode_t>(mode),
                               persistent ? Lifetime::persistent : Lifetime::tracked};
    py::gil_scoped_release nogil;
    switch (parse_how(how)) {
      case detail::OpenHow::create: shm_ = SharedMemory::create(name, size, options); break;
      case detail::OpenHow::open: shm_ = SharedMemory::open(name); break;
      case detail::OpenHow::open_or_create: shm_ = SharedMemory::open_or_create(name, size, options); break;
    }
  }
  py::buffer_info buffer() {
    if (!shm_) throw py::value_error("SharedMemory is closed");
    return py::buffer_info(static_cast<void*>(shm_->buf().data()), 1, "B",
                           static_cast<py::ssize_t>(shm_->size()), false);
  }
  void close() {
    py::gil_scoped_release nogil;
    shm_.reset();
  }
  std::size_t size() const noexcept { return shm_ ? shm_->size() : 0; }
  bool created() const noexcept { return shm_ && shm_->created(); }

 private:
  std::optional<SharedMemory> shm_;
};

}  // namespace

void bind_shared(py::module_& m) {
  py::class_<PyShared>(m, "_Shared", py::buffer_protocol(), py::dynamic_attr(),
                       "The shared storage of a Value or an Array, with its RLock.")
      .def(py::init<const std::string&, const std::string&, const std::string&, bool, std::size_t, py::handle,
                    unsigned, bool>(),
           py::arg("name"), py::arg("how"), py::arg("typecode"), py::arg("array"), py::arg("size"),
           py::arg("fill"), py::arg("mode"), py::arg("persistent"))
      .def_buffer(&PyShared::buffer)
      .def(
          "_acquire",
          [](PyShared& s, bool block, std::optional<double> timeout) {
            return acquire_lock(s.lock(), block, timeout);
          },
          py::arg("block") = true, py::arg("timeout") = py::none())
      .def("_release", [](PyShared& s) { s.lock().release(); })
      .def("_mark_consistent", [](PyShared& s) { s.lock().mark_consistent(); })
      .def("__len__", &PyShared::count)
      .def_property_readonly("name", &PyShared::name)
      .def_property_readonly("typecode", &PyShared::typecode)
      .def_static(
          "_unlink",
          [](const std::string& name, const std::string& typecode, bool array) {
            if (typecode.size() != 1) throw py::value_error("a typecode is one character");
            with_type(typecode[0], [&]<class T>() { unlink_typed<T>(array, name); });
          },
          py::arg("name"), py::arg("typecode"), py::arg("array"));

  py::class_<PySharedMemory>(m, "_SharedMemory", py::buffer_protocol(), py::dynamic_attr(),
                             "A named block of shared memory.")
      .def(py::init<const std::string&, const std::string&, std::size_t, unsigned, bool>(), py::arg("name"),
           py::arg("how"), py::arg("size"), py::arg("mode"), py::arg("persistent"))
      .def_buffer(&PySharedMemory::buffer)
      .def("_close", &PySharedMemory::close)
      .def_property_readonly("size", &PySharedMemory::size)
      .def_property_readonly("created", &PySharedMemory::created)
      .def_static(
          "_unlink",
          [](const std::string& name) {
            py::gil_scoped_release nogil;
            SharedMemory::unlink(name);
          },
          py::arg("name"));
}

}  // namespace mproc::python
