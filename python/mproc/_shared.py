"""Shared state: Value, Array (ctypes-like typecodes) and SharedMemory.

A Value or Array is a C++ ``mproc::Value<T>``/``mproc::Array<T>``: the data under its name and
an RLock under ``<name>.lock``, so a C++ program opens the same object by name (typecode ``'i'``
is ``int``, ``'d'`` is ``double``, ...). Their buffers, and SharedMemory's, support the buffer
protocol: memoryview and numpy view them without copying.
"""

import sys

from . import _mproc
from ._objects import _MODE, _anonymous_name, _own, _release_name
from ._mproc import OwnerDied

_TYPECODES = "cbBhHiIlLqQfd?"


def _typecode(typecode_or_type):
    """'i', or a ctypes type (ctypes.c_int) whose _type_ is a typecode mproc knows."""
    code = getattr(typecode_or_type, "_type_", typecode_or_type)
    if not isinstance(code, str) or len(code) != 1 or code not in _TYPECODES:
        raise TypeError(f"unsupported typecode or type {typecode_or_type!r} "
                        f"(one of {' '.join(_TYPECODES)} or the matching ctypes type)")
    return code


def _fill(code, value):
    """A value as the C++ side takes it (a char as its code)."""
    if value is None:
        return None
    if code == "c":
        return value[0] if isinstance(value, (bytes, bytearray)) else int(value)
    return value


class _SharedLock:
    """The RLock of a Value or Array (``get_lock()``), with Lock's owner-death rules."""

    def __init__(self, shared):
        self._shared = shared

    def acquire(self, block=True, timeout=None):
        """Acquire; False on timeout; OwnerDied (held) if the previous owner died holding it."""
        return self._shared._acquire(block, timeout)

    def release(self):
        """Release one level."""
        self._shared._release()

    def mark_consistent(self):
        """Declare the data repaired after OwnerDied."""
        self._shared._mark_consistent()

    def __enter__(self):
        try:
            self.acquire()
        except OwnerDied as e:
            self.release()
            e.held = False
            raise
        return self

    def __exit__(self, *exc):
        self.release()


class _Synchronized:
    """What Value and Array share: the lock methods of multiprocessing's synchronized
    wrappers, naming, pickling by name."""

    _array = False
    _kind = "v"

    def _attach(self, code, size, fill, lock, attach):
        if attach is None:
            name = _anonymous_name(self._kind)
            self._shared = _mproc._Shared(name, "create", code, self._array, size, fill, _MODE,
                                          False)
            _own(self, _mproc._Shared._unlink, name, code, self._array)
        else:
            name, how, mode, persistent = attach
            self._shared = _mproc._Shared(name, how, code, self._array, size, fill, mode,
                                          persistent)
        self._view = memoryview(self._shared)
        self._lock = _SharedLock(self._shared)
        self._locking = bool(lock)

    @property
    def name(self):
        """The object's name in /dev/shm (mproc.<name>; its lock: mproc.<name>.lock)."""
        return self._shared.name

    @property
    def typecode(self):
        """The typecode of the elements."""
        return self._shared.typecode

    def get_lock(self):
        """The RLock that guards the data."""
        return self._lock

    def get_obj(self):
        """The shared data as a memoryview (no copy; numpy.asarray() can wrap it)."""
        return self._view

    def acquire(self, block=True, timeout=None):
        """get_lock().acquire()."""
        return self._lock.acquire(block, timeout)

    def release(self):
        """get_lock().release()."""
        self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        self._lock.__exit__(*exc)

    def _guard(self):
        return self._lock if self._locking else _NO_LOCK

    def close(self):
        """Give up this process's responsibility for the name (anonymous objects)."""
        _release_name(self)

    @classmethod
    def unlink(cls, name, typecode_or_type):
        """Remove the named object ``name`` and its lock."""
        _mproc._Shared._unlink(name, _typecode(typecode_or_type), cls._array)


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


_NO_LOCK = _NoLock()


class Value(_Synchronized):
    """One shared value with a lock, as :func:`multiprocessing.Value`:
    ``Value('i', 0)``, ``Value(ctypes.c_double)``; ``.value`` reads and writes it under the
    lock (``lock=False``: without)."""

    _kind = "v"

    def __init__(self, typecode_or_type, *args, lock=True, _attach=None):
        code = _typecode(typecode_or_type)
        self._attach(code, 1, _fill(code, args[0] if args else None), lock, _attach)

    @classmethod
    def create(cls, name, typecode_or_type, value=None, *, mode=_MODE, persistent=False):
        """Create the named Value ``name`` (C++: ``mproc::Value<T>::create``)."""
        return cls(typecode_or_type, value, _attach=(name, "create", mode, persistent))

    @classmethod
    def open(cls, name, typecode_or_type):
        """Open the existing named Value ``name`` (its type must match)."""
        return cls(typecode_or_type, _attach=(name, "open", _MODE, False))

    @classmethod
    def open_or_create(cls, name, typecode_or_type, value=None, *, mode=_MODE,
                       persistent=False):
        """Open the named Value ``name``, or create it holding ``value``."""
        return cls(typecode_or_type, value, _attach=(name, "open_or_create", mode, persistent))

    @property
    def value(self):
        """The value (read under the lock)."""
        with self._guard():
            return self._view[0]

    @value.setter
    def value(self, v):
        with self._guard():
            self._view[0] = v

    def __reduce__(self):
        return (_reopen, (type(self), self.name, self.typecode, self._locking))

    def __repr__(self):
        return f"<mproc.Value {self.name!r} {self.typecode!r} value={self.value!r}>"


class Array(_Synchronized):
    """A shared array with a lock, as :func:`multiprocessing.Array`:
    ``Array('d', 10)`` or ``Array('i', [1, 2, 3])``. Indexing and slices take the lock
    (``lock=False``: they do not); ``get_obj()`` is a memoryview of the data."""

    _array = True
    _kind = "a"

    def __init__(self, typecode_or_type, size_or_initializer=0, *, lock=True, _attach=None):
        code = _typecode(typecode_or_type)
        if isinstance(size_or_initializer, int):
            size, initializer = size_or_initializer, None
        else:
            initializer = list(size_or_initializer)
            size = len(initializer)
        self._attach(code, size, None, lock, _attach)
        if initializer is not None:
            self[:] = initializer

    @classmethod
    def create(cls, name, typecode_or_type, size, *, mode=_MODE, persistent=False):
        """Create the named Array ``name`` of ``size`` zeros (C++: ``mproc::Array<T>``)."""
        return cls(typecode_or_type, size, _attach=(name, "create", mode, persistent))

    @classmethod
    def open(cls, name, typecode_or_type):
        """Open the existing named Array ``name`` (its type must match)."""
        return cls(typecode_or_type, 0, _attach=(name, "open", _MODE, False))

    @classmethod
    def open_or_create(cls, name, typecode_or_type, size, *, mode=_MODE, persistent=False):
        """Open the named Array ``name``, or create it with ``size`` zeros."""
        return cls(typecode_or_type, size, _attach=(name, "open_or_create", mode, persistent))

    def __len__(self):
        return len(self._view)

    def __getitem__(self, index):
        with self._guard():
            item = self._view[index]
            if isinstance(index, slice):
                return item.tobytes() if self.typecode == "c" else item.tolist()
            return item

    def __setitem__(self, index, value):
        with self._guard():
            if isinstance(index, slice) and self.typecode == "c":
                value = [bytes([b]) for b in value]
            if isinstance(index, slice):
                view = self._view[index]
                if len(value) != len(view):
                    raise ValueError("Can only assign sequence of same size")
                for i, v in enumerate(value):
                    view[i] = v
            else:
                self._view[index] = value

    def __iter__(self):
        return iter(self[:])

    def __reduce__(self):
        return (_reopen, (type(self), self.name, self.typecode, self._locking))

    def __repr__(self):
        return f"<mproc.Array {self.name!r} {self.typecode!r} {self[:]!r}>"


def _reopen(cls, name, typecode, locking):
    obj = cls.open(name, typecode)
    obj._locking = locking
    return obj


class SharedMemory:
    """A named block of shared memory, as
    :class:`multiprocessing.shared_memory.SharedMemory`: ``SharedMemory(create=True, size=n)``
    in one process, ``SharedMemory(name)`` in another; ``.buf`` is a memoryview (numpy:
    ``np.ndarray(shape, dtype, buffer=shm.buf)``). The name is removed once no process has it
    open (or by ``unlink()``); ``persistent=True`` keeps it until ``unlink()``."""

    def __init__(self, name=None, create=False, size=0, *, mode=_MODE, persistent=False):
        if create and size <= 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is None:
            if not create:
                raise ValueError("'name' can only be None if create=True")
            name = _anonymous_name("m")
        self._impl = _mproc._SharedMemory(name, "create" if create else "open", size, mode,
                                          persistent)
        self._name = name
        self._buf = memoryview(self._impl)

    @property
    def name(self):
        """The block's name (pass it to SharedMemory(name) in another process)."""
        return self._name

    @property
    def size(self):
        """Its size in bytes."""
        return len(self._buf) if self._buf is not None else 0

    @property
    def buf(self):
        """A memoryview of the shared bytes."""
        return self._buf

    def close(self):
        """Unmap it from this process (BufferError while views of buf exist, as Python's)."""
        if self._buf is None:
            return
        self._buf.release()
        # A slice of buf (or a view of a slice) still references the mapping through its own
        # buffer: unmapping now would leave it dangling. Python's mmap refuses the same way.
        if sys.getrefcount(self._impl) > 2:
            self._buf = memoryview(self._impl)
            raise BufferError("cannot close SharedMemory: views of its buf still exist")
        self._buf = None
        self._impl._close()

    def unlink(self):
        """Remove the name (processes that have it open keep their mapping)."""
        try:
            _mproc._SharedMemory._unlink(self._name)
        except FileNotFoundError:
            pass  # already removed by its last user closing it

    def __reduce__(self):
        return (SharedMemory, (self._name,))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"SharedMemory({self._name!r}, size={self.size})"
