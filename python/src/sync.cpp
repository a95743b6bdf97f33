// _mproc._Lock, _RLock, _Semaphore, _BoundedSemaphore, _Event, _Condition, _Barrier: the C++
// primitives, named (mproc/__init__.py names the anonymous ones), with Python's signatures.
// Every wait releases the GIL; all but Barrier.wait wait in slices and answer Ctrl-C.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/start_method.hpp"

namespace mproc::python {

namespace {

struct Spec {
  std::string name;
  detail::OpenHow how;
  NamedOptions options;
  detail::NamedSpec named() const { return {name, how, options}; }
};

Spec make_spec(const std::string& name, const std::string& how, unsigned mode, bool persistent) {
  return {name,
          parse_how(how),
          {static_cast<mode_t>(mode), persistent ? Lifetime::persistent : Lifetime::tracked}};
}

// Builds a named primitive from its factories (they return by value; the types do not move, so
// the result initialises the heap object directly).
template <class T, class... Args>
std::unique_ptr<T> attach(const Spec& s, Args... args) {
  py::gil_scoped_release nogil;
  switch (s.how) {
    case detail::OpenHow::create: return std::unique_ptr<T>(new T(T::create(s.name, args..., s.options)));
    case detail::OpenHow::open: return std::unique_ptr<T>(new T(T::open(s.name)));
    case detail::OpenHow::open_or_create: break;
  }
  return std::unique_ptr<T>(new T(T::open_or_create(s.name, args..., s.options)));
}

template <class T>
void unlink_named(const std::string& name) {
  py::gil_scoped_release nogil;
  T::unlink(name);
}

// ---- Lock, RLock -------------------------------------------------------------------------------

/// The `with` form: on owner death, release and raise (the with block never runs holding a lock
/// whose data may be torn; recover with acquire() + mark_consistent()).
void enter_lock(detail::RobustLock& lock) {
  try {
    (void)acquire_lock(lock, true, std::nullopt);
  } catch (py::error_already_set& e) {
    if (e.matches(exceptions().owner_died)) {
      lock.release();
      raise_owner_died(lock.kind_name(), false);
    }
    throw;
  }
}

template <class L>
class PyLock {
 public:
  PyLock(const std::string& name, const std::string& how, unsigned mode, bool persistent)
      : name_(name), lock_(attach<L>(make_spec(name, how, mode, persistent))) {}
  bool acquire(bool block, std::optional<double> timeout) {
    // Inline, the uncontended case: one trylock (lock.hpp), no call out of this function.
    const Acquired got = lock_->acquire_until(detail::Deadline::now());
    if (got.status() == Acquired::Status::ok) [[likely]]
      return true;
    return acquire_lock_after(*lock_, got, block, timeout);
  }
  void release() { lock_->release(); }
  void mark_consistent() { lock_->mark_consistent(); }
  bool is_mine() const noexcept { return lock_->held_by_this_thread(); }
  void enter() { enter_lock(*lock_); }
  const std::string& name() const noexcept { return name_; }
  L& get() noexcept { return *lock_; }

 private:
  std::string name_;
  std::unique_ptr<L> lock_;
};

// acquire/release/__enter__/__exit__ of a lock or semaphore class P, as plain CPython methods.
template <class P>
struct FastLockMethods {
  // The common call, acquire() with no arguments, parses nothing.
  static PyObject* acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return guarded([&] {
      if (nargs == 0 && kwnames == nullptr) [[likely]]
        return Py_NewRef(self_of<P>(self)->acquire(true, std::nullopt) ? Py_True : Py_False);
      const BlockTimeout a = parse_block_timeout(args, nargs, kwnames);
      return Py_NewRef(self_of<P>(self)->acquire(a.block, a.timeout) ? Py_True : Py_False);
    });
  }
  static PyObject* release(PyObject* self, PyObject*) {
    return guarded([&] {
      self_of<P>(self)->release();
      return Py_NewRef(Py_None);
    });
  }
  static PyObject* enter(PyObject* self, PyObject*) {
    return guarded([&] {
      self_of<P>(self)->enter();
      return Py_NewRef(self);
    });
  }
  static PyObject* exit(PyObject* self, PyObject* const*, Py_ssize_t) {
    return guarded([&] {
      self_of<P>(self)->release();
      return Py_NewRef(Py_None);
    });
  }
  static void add(py::handle cls, const char* acquire_doc) {
    static PyMethodDef defs[] = {
        {"acquire", as_cfunction(&FastLockMethods::acquire), METH_FASTCALL | METH_KEYWORDS, acquire_doc},
        {"release", as_cfunction(&FastLockMethods::release), METH_NOARGS, "release()\n--\n\nRelease it."},
        {"__enter__", as_cfunction(&FastLockMethods::enter), METH_NOARGS, nullptr},
        {"__exit__", as_cfunction(&FastLockMethods::exit), METH_FASTCALL, nullptr},
    };
    add_methods(cls, defs);
  }
};

constexpr const char* kLockAcquireDoc =
    "acquire(block=True, timeout=None)\n--\n\nAcquire the lock; False on timeout. Raises OwnerDied "
    "(with the lock held) if its previous owner died holding it: repair the guarded state, call "
    "mark_consistent(), then release().";
constexpr const char* kSemAcquireDoc =
    "acquire(block=True, timeout=None)\n--\n\nTake one count, waiting while it is zero; False on timeout.";

template <class L>
void bind_lock(py::module_& m, const char* cls, const char* doc) {
  py::class_<PyLock<L>>(m, cls, py::dynamic_attr(), doc)
      .def(py::init<const std::string&, const std::string&, unsigned, bool>(), py::arg("name"),
           py::arg("how"), py::arg("mode"), py::arg("persistent"))
      .def("mark_consistent", &PyLock<L>::mark_consistent,
           "Declare the guarded state repaired after OwnerDied (the holder only).")
      .def("_is_mine", &PyLock<L>::is_mine, "Whether the calling thread holds the lock.")
      .def_property_readonly("name", &PyLock<L>::name)
      .def_static("_unlink", &unlink_named<L>, py::arg("name"));
  FastLockMethods<PyLock<L>>::add(m.attr(cls), kLockAcquireDoc);
}

// ---- Semaphore, BoundedSemaphore ---------------------------------------------------------------

template <class S>
class PySemaphore {
 public:
  PySemaphore(const std::string& name, const std::string& how, std::uint32_t value, unsigned mode,
              bool persistent)
      : name_(name), sem_(attach<S>(make_spec(name, how, mode, persistent), value)) {}
  bool acquire(bool block, std::optional<double> timeout) {
    if (sem_->acquire_until(detail::Deadline::now())) return true;
    const Wait w = Wait::from(block, timeout);
    if (w.is_try()) return false;
    return wait_in_slices(
        w, [&](Clock::time_point until) { return sem_->acquire_until(until); }, [](bool got) { return got; });
  }
  void release() { sem_->release(); }
  void enter() { (void)acquire(true, std::nullopt); }
  std::uint32_t get_value() const noexcept { return sem_->get_value(); }
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
  std::unique_ptr<S> sem_;
};

template <class S>
void bind_semaphore(py::module_& m, const char* cls, const char* doc) {
  py::class_<PySemaphore<S>>(m, cls, py::dynamic_attr(), doc)
      .def(py::init<const std::string&, const std::string&, std::uint32_t, unsigned, bool>(), py::arg("name"),
           py::arg("how"), py::arg("value"), py::arg("mode"), py::arg("persistent"))
      .def("get_value", &PySemaphore<S>::get_value, "The count now.")
      .def_property_readonly("name", &PySemaphore<S>::name)
      .def_static("_unlink", &unlink_named<S>, py::arg("name"));
  FastLockMethods<PySemaphore<S>>::add(m.attr(cls), kSemAcquireDoc);
}

// ---- Event -------------------------------------------------------------------------------------

class PyEvent {
 public:
  PyEvent(const std::string& name, const std::string& how, unsigned mode, bool persistent)
      : name_(name), event_(attach<Event>(make_spec(name, how, mode, persistent))) {}
  bool wait(std::optional<double> timeout) {
    if (event_->is_set()) return true;
    return wait_in_slices(
        Wait::from_timeout(timeout), [&](Clock::time_point until) { return event_->wait_until(until); },
        [](bool set) { return set; });
  }
  Event& get() noexcept { return *event_; }
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
  std::unique_ptr<Event> event_;
};

// ---- Condition ---------------------------------------------------------------------------------

// The lock of an mproc.Lock or mproc.RLock (TypeError for anything else).
detail::RobustLock& robust_lock_of(py::handle lock) {
  if (py::isinstance<PyLock<Lock>>(lock)) return lock.cast<PyLock<Lock>&>().get();
  if (py::isinstance<PyLock<RLock>>(lock)) return lock.cast<PyLock<RLock>&>().get();
  throw py::type_error("Condition(lock): lock must be an mproc.Lock or mproc.RLock");
}

class PyCondition {
 public:
  /// Named, over an RLock of its own ("<name>.lock").
  PyCondition(const std::string& name, const std::string& how, unsigned mode, bool persistent)
      : name_(name), cond_(attach<Condition>(make_spec(name, how, mode, persistent))) {}
  /// Anonymous, over `lock` (kept alive by the Python object): its own memory is a memfd, which
  /// pickling sends by descriptor while the lock travels by name.
  explicit PyCondition(py::object lock_owner, detail::RobustLock& lock)
      : lock_owner_(std::move(lock_owner)), cond_(std::make_unique<Condition>(lock)) {}
  /// The same rebuilt in another process around received descriptors (`adopted`).
  PyCondition(py::object lock_owner, detail::RobustLock& lock, const std::string& bytes,
              const detail::AdoptedDescriptors& /*adopted*/)
      : lock_owner_(std::move(lock_owner)), cond_(detail::decode_condition_over(bytes, lock)) {}
  py::tuple export_block() const {
    std::vector<int> fds;
    const std::string bytes = detail::encode_condition_block(*cond_, fds);
    return py::make_tuple(py::bytes(bytes), fds);
  }

  bool acquire(bool block, std::optional<double> timeout) {
    return acquire_lock(cond_->lock(), block, timeout);
  }
  void release() { cond_->lock().release(); }
  void enter() { enter_lock(cond_->lock()); }
  bool wait(std::optional<double> timeout) {
    const Waited w = wait_in_slices(
        Wait::from_timeout(timeout), [&](Clock::time_point until) { return cond_->wait_until(until); },
        [](const Waited& r) { return !r.timed_out() || r.owner_died(); });
    if (w.owner_died()) raise_owner_died(cond_->lock().kind_name(), true);
    return !w.timed_out();
  }
  void notify(std::uint32_t n) { cond_->notify(n); }
  void notify_all() { cond_->notify_all(); }
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
  py::object lock_owner_;
  std::unique_ptr<Condition> cond_;
};

// ---- Barrier -----------------------------------------------------------------------------------

class PyBarrier {
 public:
  PyBarrier(const std::string& name, const std::string& how, std::uint32_t parties, py::object action,
            std::optional<double> timeout, unsigned mode, bool persistent)
      : name_(name), action_(std::move(action)) {
    const Spec s = make_spec(name, how, mode, persistent);
    std::function<void()> run;
    if (!action_.is_none()) run = [this] { run_action(); };
    const auto t =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout.value_or(0)));
    py::gil_scoped_release nogil;
    switch (s.how) {
      case detail::OpenHow::create:
        barrier_.reset(new Barrier(Barrier::create(s.name, parties, run, t, s.options)));
        break;
      case detail::OpenHow::open: barrier_.reset(new Barrier(Barrier::open(s.name, run, t))); break;
      case detail::OpenHow::open_or_create:
        barrier_.reset(new Barrier(Barrier::open_or_create(s.name, parties, run, t, s.options)));
        break;
    }
  }

  /// Not sliced: a Barrier's timed-out wait breaks it, so one wait runs to its deadline.
  std::uint32_t wait(std::optional<double> timeout) {
    std::uint32_t index = 0;
    {
      py::gil_scoped_release nogil;
      try {
        if (timeout)
          index = barrier_->wait_for(std::chrono::duration<double>(std::max(*timeout, 0.0)));
        else
          index = barrier_->wait();
      } catch (const ActionFailed&) {
        // fall through: the action's Python exception is restored below, with the GIL
      }
    }
    if (action_error_) {
      auto e = std::move(action_error_);
      action_error_.reset();
      e->restore();
      throw py::error_already_set();
    }
    return index;
  }
  Barrier& get() noexcept { return *barrier_; }
  const std::string& name() const noexcept { return name_; }
  py::object action() const { return action_; }

 private:
  struct ActionFailed {};
  // Called by Barrier::wait() in the last arriving thread, without the GIL.
  void run_action() {
    py::gil_scoped_acquire gil;
    try {
      action_();
    } catch (py::error_already_set& e) {
      action_error_ = std::make_unique<py::error_already_set>(std::move(e));
      throw ActionFailed{};
    }
  }

  std::string name_;
  py::object action_;
  std::unique_ptr<py::error_already_set> action_error_;
  std::unique_ptr<Barrier> barrier_;
};

void bind_event_condition(py::module_& m) {
  py::class_<PyEvent>(m, "_Event", py::dynamic_attr(), "A flag processes can set, clear and wait for.")
      .def(py::init<const std::string&, const std::string&, unsigned, bool>(), py::arg("name"),
           py::arg("how"), py::arg("mode"), py::arg("persistent"))
      .def(
          "is_set", [](PyEvent& e) { return e.get().is_set(); }, "Whether the flag is set.")
      .def(
          "set", [](PyEvent& e) { e.get().set(); }, "Set the flag, waking every waiter.")
      .def(
          "clear", [](PyEvent& e) { e.get().clear(); }, "Clear the flag.")
      .def("wait", &PyEvent::wait, py::arg("timeout") = py::none(),
           "Wait until the flag is set; returns the flag (False on timeout).")
      .def_property_readonly("name", &PyEvent::name)
      .def_static("_unlink", &unlink_named<Event>, py::arg("name"));

  py::class_<PyCondition>(m, "_Condition", py::dynamic_attr(), "A condition variable shared by processes.")
      .def(py::init<const std::string&, const std::string&, unsigned, bool>(), py::arg("name"),
           py::arg("how"), py::arg("mode"), py::arg("persistent"))
      .def(
          py::init([](py::object lock) { return std::make_unique<PyCondition>(lock, robust_lock_of(lock)); }),
          py::arg("lock"))
      .def(py::init([](py::object lock, const std::string& bytes, std::vector<int> fds) {
             detail::AdoptedDescriptors adopted(std::move(fds));  // closed if the lock is refused
             detail::RobustLock& l = robust_lock_of(lock);
             return std::make_unique<PyCondition>(lock, l, bytes, std::move(adopted));
           }),
           py::arg("lock"), py::arg("data"), py::arg("fds"))
      .def("_export_block", &PyCondition::export_block)
      .def("acquire", &PyCondition::acquire, py::arg("block") = true, py::arg("timeout") = py::none(),
           "Acquire the underlying lock (OwnerDied as Lock.acquire).")
      .def("release", &PyCondition::release, "Release the underlying lock.")
      .def("wait", &PyCondition::wait, py::arg("timeout") = py::none(),
           "Release the lock, wait for a notify, re-acquire; False on timeout.")
      .def("notify", &PyCondition::notify, py::arg("n") = 1, "Wake up to n waiters (the lock held).")
      .def("notify_all", &PyCondition::notify_all, "Wake every waiter (the lock held).")
      .def("__enter__",
           [](PyCondition& c) -> PyCondition& {
             c.enter();
             return c;
           })
      .def("__exit__", [](PyCondition& c, py::args) { c.release(); })
      .def_property_readonly("name", &PyCondition::name)
      .def_static("_unlink", &unlink_named<Condition>, py::arg("name"));
}

}  // namespace

detail::OpenHow parse_how(const std::string& how) {
  if (how == "create") return detail::OpenHow::create;
  if (how == "open") return detail::OpenHow::open;
  if (how == "open_or_create") return detail::OpenHow::open_or_create;
  throw py::value_error("how must be create, open or open_or_create");
}

bool acquire_lock(detail::RobustLock& lock, bool block, std::optional<double> timeout) {
  // The uncontended case, GIL held, reads no clock: the deadline is computed only to wait.
  return acquire_lock_after(lock, lock.acquire_until(detail::Deadline::now()), block, timeout);
}

bool acquire_lock_after(detail::RobustLock& lock, Acquired first, bool block, std::optional<double> timeout) {
  Acquired got = first;
  if (got.timed_out() && block) {
    const Wait w = Wait::from(block, timeout);
    if (!w.is_try()) {
      got = wait_in_slices(
          w, [&](Clock::time_point until) { return lock.acquire_until(until); },
          [](Acquired a) { return !a.timed_out(); });
    }
  }
  if (got.owner_died()) raise_owner_died(lock.kind_name(), true);
  return !got.timed_out();
}

void bind_sync(py::module_& m) {
  bind_lock<Lock>(m, "_Lock", "A crash-safe lock shared by processes (owner death is reported).");
  bind_lock<RLock>(m, "_RLock", "A recursive crash-safe lock shared by processes.");
  bind_semaphore<Semaphore>(m, "_Semaphore", "A counting semaphore shared by processes.");
  bind_semaphore<BoundedSemaphore>(m, "_BoundedSemaphore",
                                   "A semaphore whose count may not exceed its initial value.");
  bind_event_condition(m);
  py::class_<PyBarrier>(m, "_Barrier", py::dynamic_attr(), "N processes wait until all have arrived.")
      .def(py::init<const std::string&, const std::string&, std::uint32_t, py::object, std::optional<double>,
                    unsigned, bool>(),
           py::arg("name"), py::arg("how"), py::arg("parties"), py::arg("action"), py::arg("timeout"),
           py::arg("mode"), py::arg("persistent"))
      .def("wait", &PyBarrier::wait, py::arg("timeout") = py::none(),
           "Wait for every party; returns this party's arrival index (BrokenBarrierError if broken).")
      .def(
          "reset", [](PyBarrier& b) { b.get().reset(); }, "Return the barrier to empty (waiters: broken).")
      .def(
          "abort", [](PyBarrier& b) { b.get().abort(); }, "Break the barrier.")
      .def_property_readonly("parties", [](PyBarrier& b) { return b.get().parties(); })
      .def_property_readonly("n_waiting", [](PyBarrier& b) { return b.get().n_waiting(); })
      .def_property_readonly("broken", [](PyBarrier& b) { return b.get().broken(); })
      .def_property_readonly("action", &PyBarrier::action)
      .def_property_readonly("name", &PyBarrier::name)
      .def_static("_unlink", &unlink_named<Barrier>, py::arg("name"));
}

}  // namespace mproc::python
