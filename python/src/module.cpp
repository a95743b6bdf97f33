// The _mproc extension: mproc's primitives for Python. The public module is the mproc package
// (python/mproc/__init__.py), which names anonymous objects, pickles them by name, and gives the
// classes multiprocessing's signatures; docs/python.md is the user's guide.
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>

#include "codec.hpp"
#include "common.hpp"
#include "mproc/barrier.hpp"
#include "mproc/detail/mapping.hpp"
#include "mproc/error.hpp"

namespace mproc::python {

Exceptions& exceptions() {
  static Exceptions e;
  return e;
}

void raise_owner_died(const char* lock_name, bool held) {
  const std::string message =
      std::string("the previous owner of ") + lock_name + " died holding it: the data it guards may be torn" +
      (held ? "; you hold the lock now: repair the data, call mark_consistent(), then release()"
            : "; the lock was released again: acquire() it to repair the data and mark_consistent()");
  py::object exc = py::reinterpret_borrow<py::object>(exceptions().owner_died)(message);
  exc.attr("held") = held;
  PyErr_SetObject(exceptions().owner_died, exc.ptr());
  throw py::error_already_set();
}

void set_python_error(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const mproc::Closed& x) {
    PyErr_SetString(exceptions().shut_down, x.what());
  } catch (const mproc::OwnerDied& x) {
    py::object exc = py::reinterpret_borrow<py::object>(exceptions().owner_died)(x.what());
    exc.attr("held") = false;
    PyErr_SetObject(exceptions().owner_died, exc.ptr());
  } catch (const mproc::UsageError& x) {
    PyErr_SetString(exceptions().usage_error, x.what());
  } catch (const mproc::BrokenBarrier& x) {
    PyErr_SetString(exceptions().broken_barrier, x.what());
  } catch (const mproc::Error& x) {
    // OSError(errno, message) becomes the matching subclass (FileExistsError, ...).
    py::object exc = py::reinterpret_borrow<py::object>(PyExc_OSError)(x.code().value(), x.what());
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  } catch (...) {
    py::detail::translate_exception(std::current_exception());
  }
}

BlockTimeout parse_block_timeout(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* slots[2] = {nullptr, nullptr};  // block, timeout
  if (nargs > 2) raise_py(PyExc_TypeError, "takes at most 2 positional arguments (block, timeout)");
  for (Py_ssize_t i = 0; i < nargs; ++i) slots[i] = args[i];
  const Py_ssize_t nkw = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    const char* key = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
    const int slot = key == nullptr                     ? -1
                     : std::strcmp(key, "block") == 0   ? 0
                     : std::strcmp(key, "timeout") == 0 ? 1
                                                        : -1;
    if (slot < 0) raise_py(PyExc_TypeError, "unexpected keyword argument (block, timeout)");
    if (slots[slot] != nullptr) raise_py(PyExc_TypeError, "an argument given twice");
    slots[slot] = args[nargs + k];
  }
  BlockTimeout out;
  if (slots[0] != nullptr) {
    const int b = PyObject_IsTrue(slots[0]);
    if (b < 0) throw py::error_already_set();
    out.block = b != 0;
  }
  if (slots[1] != nullptr && slots[1] != Py_None) {
    const double t = PyFloat_AsDouble(slots[1]);
    if (t == -1.0 && PyErr_Occurred() != nullptr) throw py::error_already_set();
    out.timeout = t;
  }
  return out;
}

namespace {

PyObject* new_exception(py::module_& m, const char* name, PyObject* bases, const char* doc) {
  const std::string qualified = std::string("mproc._mproc.") + name;
  PyObject* e = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  if (e == nullptr) throw py::error_already_set();
  m.add_object(name, py::reinterpret_borrow<py::object>(e));
  return e;
}

void create_exceptions(py::module_& m) {
  Exceptions& e = exceptions();
  e.owner_died = new_exception(m, "OwnerDied", PyExc_RuntimeError,
                               "The previous owner of a lock died holding it; the data it guards may be "
                               "torn. Attribute `held`: whether the caller holds the lock now.");
  py::tuple usage_bases = py::make_tuple(py::handle(PyExc_ValueError), py::handle(PyExc_RuntimeError));
  e.usage_error = new_exception(m, "UsageError", usage_bases.ptr(),
                                "A contract breach: releasing a lock one does not hold, a Condition used "
                                "without its lock, a BoundedSemaphore released too often.");
  e.shut_down =
      new_exception(m, "ShutDown", PyExc_Exception,
                    "put() into a Queue that was shut down, or get() from one shut down and drained.");
  py::object broken = py::module_::import("threading").attr("BrokenBarrierError");
  e.broken_barrier = broken.release().ptr();
  e.queue_empty = module_attribute("queue", "Empty");
  e.queue_full = module_attribute("queue", "Full");
}

void register_translators() {
  py::register_exception_translator([](std::exception_ptr p) { set_python_error(p); });
}

}  // namespace

}  // namespace mproc::python

PYBIND11_MODULE(_mproc, m) {
  namespace mp = mproc::python;
  m.doc() = "mproc's shared-memory primitives (use the mproc package, not this module)";
  // Anonymous memory (a Pipe, a Condition over a lock of the caller's) keeps a memfd, which
  // pickling sends with multiprocessing's DupFd to spawned children and through queues.
  mproc::detail::keep_anonymous_descriptors();
  mp::create_exceptions(m);
  mp::register_translators();
  mp::bind_queue(m);
  mp::bind_sync(m);
  mp::bind_pipe(m);
  mp::bind_shared(m);
  m.def("_note_carried", &mp::note_offer, pybind11::arg("offer"),
        "Notes a descriptor offered to other processes while a message is pickled (mproc._objects).");
}
