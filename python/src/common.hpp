#pragma once
// What every part of the _mproc extension shares: how a Python timeout becomes a deadline, how a
// blocking call waits with the GIL released and still answers Ctrl-C, the exception types, and
// the shared error translation.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <typeinfo>

#include "mproc/clock.hpp"
#include "mproc/detail/named_spec.hpp"
#include "mproc/lock.hpp"

namespace mproc::python {

namespace py = pybind11;
using Clock = mproc::Clock;

/// How long one slice of a blocking wait lasts: between slices the waiting thread takes the GIL
/// and runs pending signal handlers (KeyboardInterrupt), so Ctrl-C is answered within this.
inline constexpr std::chrono::milliseconds kSlice{50};

/// A Python (block, timeout) pair as a deadline: forever, now (try once) or a point in time.
struct Wait {
  bool forever = false;
  Clock::time_point deadline{};

  /// `timeout` None: forever (when blocking); a timeout <= 0: try once, as multiprocessing does.
  static Wait from(bool block, const std::optional<double>& timeout) {
    Wait w;
    const auto now = Clock::now();
    if (!block) {
      w.deadline = now;
    } else if (!timeout) {
      w.forever = true;
    } else {
      const double s = std::clamp(*timeout, 0.0, 1e9);  // 30 years: as good as forever
      w.deadline = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
    }
    return w;
  }
  static Wait from_timeout(const std::optional<double>& timeout) { return from(true, timeout); }
  bool is_try() const noexcept { return !forever && deadline <= Clock::now(); }
};

/// `module.name` (pickle.dumps, queue.Empty, ...), looked up once by a caller that keeps it in a
/// function-local static: a new reference, never released, because it must outlive every call,
/// including calls from atexit handlers after the module's globals would be gone.
inline PyObject* module_attribute(const char* module_name, const char* name) {
  PyObject* module = PyImport_ImportModule(module_name);
  if (module == nullptr) throw py::error_already_set();
  PyObject* attr = PyObject_GetAttrString(module, name);
  Py_DECREF(module);
  if (attr == nullptr) throw py::error_already_set();
  return attr;
}

/// Raises the pending Python exception, if a signal handler set one (KeyboardInterrupt).
inline void check_signals() {
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

/// Calls `attempt(until)` with the GIL released, in slices of kSlice, until `done(result)` or the
/// deadline passes; between slices, with the GIL held, pending signals are handled (a
/// KeyboardInterrupt propagates from here). Returns the last attempt's result.
template <class Attempt, class Done>
auto wait_in_slices(const Wait& w, Attempt&& attempt, Done&& done) {
  for (;;) {
    const auto now = Clock::now();
    const auto slice_end = now + kSlice;
    const auto until = w.forever ? slice_end : std::min(w.deadline, slice_end);
    auto result = [&] {
      py::gil_scoped_release nogil;
      return attempt(until);
    }();
    if (done(result)) return result;
    if (!w.forever && Clock::now() >= w.deadline) return result;
    check_signals();
  }
}

/// The module's exception classes, created in module.cpp (mproc._mproc.OwnerDied, ...).
struct Exceptions {
  PyObject* owner_died = nullptr;      // RuntimeError: a lock's previous owner died holding it
  PyObject* usage_error = nullptr;     // ValueError + RuntimeError: a contract breach (mproc::UsageError)
  PyObject* shut_down = nullptr;       // Exception: put into (or get from a drained) shut-down queue
  PyObject* broken_barrier = nullptr;  // threading.BrokenBarrierError
  PyObject* queue_empty = nullptr;     // queue.Empty
  PyObject* queue_full = nullptr;      // queue.Full
};
Exceptions& exceptions();

/// Raises mproc.OwnerDied(message) with attribute `held` (whether the caller holds the lock now).
[[noreturn]] void raise_owner_died(const char* lock_name, bool held);

/// The `how` argument of every named constructor: "create", "open" or "open_or_create".
detail::OpenHow parse_how(const std::string& how);

/// Acquires `lock` as Python's acquire(block, timeout): True/False, or OwnerDied (raised with the
/// lock held) when its previous owner died holding it. For Lock, RLock, Condition and the lock
/// of a Value or Array.
bool acquire_lock(detail::RobustLock& lock, bool block, std::optional<double> timeout);
/// acquire_lock after a first try (with the GIL held) that found `first`.
bool acquire_lock_after(detail::RobustLock& lock, Acquired first, bool block, std::optional<double> timeout);

/// Sets the Python error for a C++ exception: mproc's own types (OSError with errno,
/// OwnerDied, UsageError, ShutDown, BrokenBarrierError), then pybind11's rules.
void set_python_error(std::exception_ptr p);

/// Registered in module.cpp; each adds its classes to the module.
void bind_queue(py::module_& m);
void bind_sync(py::module_& m);
void bind_pipe(py::module_& m);
void bind_shared(py::module_& m);

}  // namespace mproc::python

namespace mproc::python {
/// Sets the Python exception `type(message)` and throws it to pybind11.
[[noreturn]] inline void raise_py(PyObject* type, const char* message) {
  PyErr_SetString(type, message);
  throw py::error_already_set();
}
}  // namespace mproc::python

// ---- hot methods as plain CPython functions ---------------------------------------------------
// pybind11's dispatcher costs a few hundred nanoseconds per call: as much as a whole small put
// or an uncontended acquire. The hot methods are METH_FASTCALL functions added to the classes.
namespace mproc::python {

/// The C++ object of a pybind11 instance of T (or of a Python subclass of its class).
/// The method descriptors (add_methods) have already checked that `self` is an instance of the
/// class. One pybind11 class in its type's bases (every mproc class, and a Python subclass of
/// one) is pybind11's "simple layout": the value pointer is read straight from the instance,
/// without the type lookup of get_value_and_holder (a sixth of an uncontended acquire +
/// release). A Python class with several pybind11 bases takes the lookup, for T's own part.
template <class T>
T* self_of(PyObject* self) {
  auto* inst = reinterpret_cast<py::detail::instance*>(self);
  if (inst->simple_layout) [[likely]] {
    if (!inst->simple_holder_constructed) raise_py(PyExc_TypeError, "mproc: __init__ was not called");
    return static_cast<T*>(inst->simple_value_holder[0]);
  }
  auto vh = inst->get_value_and_holder(py::detail::get_type_info(typeid(T)), false);
  if (!vh || !vh.holder_constructed()) raise_py(PyExc_TypeError, "mproc: __init__ was not called");
  return vh.template value_ptr<T>();
}

/// Runs f (which returns a new reference or throws), turning C++ exceptions into Python ones.
template <class F>
PyObject* guarded(F&& f) noexcept {
  try {
    return f();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (...) {
    set_python_error(std::current_exception());
  }
  return nullptr;
}

template <class Fn>
PyCFunction as_cfunction(Fn* fn) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn));
}

/// Adds `defs` (static storage) to the class `cls` as methods.
template <std::size_t N>
void add_methods(py::handle cls, PyMethodDef (&defs)[N]) {
  for (PyMethodDef& d : defs) {
    PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &d);
    if (descr == nullptr || PyObject_SetAttrString(cls.ptr(), d.ml_name, descr) != 0) {
      Py_XDECREF(descr);
      throw py::error_already_set();
    }
    Py_DECREF(descr);
  }
}

/// Parses Python's (block=True, timeout=None) from a vectorcall.
struct BlockTimeout {
  bool block = true;
  std::optional<double> timeout;
};
BlockTimeout parse_block_timeout(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);

}  // namespace mproc::python
