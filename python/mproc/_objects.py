"""Queues, locks, events, conditions, barriers and pipes: mproc's C++ primitives with the
signatures of :mod:`multiprocessing`.

Every object lives in a named shared-memory segment (``/dev/shm/mproc.<name>``). An object
made without a name (``mproc.Queue()``) is given one under the hood, so that it can be pickled
(to a spawned child, a ``concurrent.futures`` worker, through another queue) and re-attached by
name on the other side; its creator removes the name when it closes the object, when the object
is garbage collected, or at exit (after :mod:`multiprocessing` has joined its children).
Objects made with ``create``/``open``/``open_or_create`` follow the C++ lifetime rules instead
(docs/design/named.md). docs/python.md is the guide.
"""

import itertools
import os
import secrets
import time
import weakref
from multiprocessing import connection as _mp_connection
from multiprocessing import context as _mp_context
from multiprocessing import reduction as _mp_reduction
from multiprocessing import resource_sharer as _mp_resource_sharer
from multiprocessing import util as _mp_util

from . import _mproc

DEFAULT_CAPACITY = 4 << 20
"""A queue's ring, in bytes, unless ``capacity=`` says otherwise (the largest message is 8 bytes
less)."""

_MODE = 0o600
_counter = itertools.count()
_token = secrets.token_hex(3)


def _anonymous_name(kind):
    """A fresh name for an object made without one: unique per process and per call."""
    prefix = os.environ.get("MPROC_PYTHON_PREFIX", "py-")
    return f"{prefix}{kind}{os.getpid()}-{_token}-{next(_counter)}"


def _unlink_quietly(unlink, *args):
    try:
        unlink(*args)
    except FileNotFoundError:
        pass


def _own(obj, unlink, *args):
    """Makes this process responsible for removing an anonymous object's name: on close(), on
    garbage collection, or at exit after multiprocessing has joined the children (a negative
    exit priority runs after that join)."""
    obj._finalizer = _mp_util.Finalize(obj, _unlink_quietly, args=(unlink,) + args,
                                       exitpriority=-100)


def _release_name(obj):
    finalizer = getattr(obj, "_finalizer", None)
    if finalizer is not None:
        finalizer()


def _send_descriptors(export, what, instead):
    """The bytes and descriptors that describe an anonymous object, each descriptor carried by
    multiprocessing (_carried): to the spawned or forkserver child being started, or, pickled
    anywhere else, served to whichever process unpickles it."""
    try:
        data, fds = export()
    except _mproc.UsageError as e:
        raise TypeError(f"cannot pickle this {what}: it has no descriptor to send (it was made when "
                        "this process had used half of its descriptors, RLIMIT_NOFILE, or could not "
                        f"make a memfd); use {instead}") from e
    return data, [_carried(fd) for fd in fds]


class _CarriedFd:
    """One descriptor sent to a child being started, however many objects name it (both ends of
    a Pipe share their memory's): multiprocessing's spawn refuses a descriptor listed twice, so
    the pickle carries this one object, and each object rebuilt from it takes a descriptor of
    its own (the first the received one, the others duplicates)."""

    def __init__(self, dup_fd):
        self._dup_fd = dup_fd
        self._fd = None  # pickled as None: only the receiving side detaches

    def detach(self):
        if self._fd is None:
            self._fd = self._dup_fd.detach()
            return self._fd
        return os.dup(self._fd)


_carried_by_child = weakref.WeakKeyDictionary()  # popen -> {fd: _CarriedFd}


def _carried(fd):
    """multiprocessing's DupFd of `fd`: listed once for the child being started, or offered by
    its resource sharer (a copy, served on request) when no child is being started; that offer
    is noted, so that a queue put that fails takes it back (_revoke_carried)."""
    popen = _mp_context.get_spawning_popen()
    if popen is None:
        dup_fd = _mp_reduction.DupFd(fd)
        _mproc._note_carried(dup_fd)
        return dup_fd
    carried = _carried_by_child.setdefault(popen, {})
    if fd not in carried:
        carried[fd] = _CarriedFd(_mp_reduction.DupFd(fd))
    return carried[fd]


def _revoke_carried(dup_fds):
    """Takes back the resource sharer's offers for a message that was never sent (a put that
    failed), closing its copies: otherwise they would stay open until this process exits, and
    a copy of a Connection's socket would keep its peer from seeing the end of the stream."""
    sharer = getattr(_mp_resource_sharer, "_resource_sharer", None)
    for d in dup_fds:
        try:
            with sharer._lock:
                entry = sharer._cache.pop(d._id[1], None)
        except (AttributeError, TypeError, IndexError):  # another Python's internals: leave it
            continue
        if entry is not None:
            entry[1]()  # its close()


def _received_descriptors(dup_fds):
    """The descriptors _send_descriptors sent, now this process's, close-on-exec (a program
    this process execs must not hold a Connection's socket open)."""
    fds = []
    try:
        for d in dup_fds:
            fds.append(d.detach())
            os.set_inheritable(fds[-1], False)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _how(create, open_existing):
    if create and open_existing:
        return "open_or_create"
    return "create" if create else "open"


# ---- queues -------------------------------------------------------------------------------


class Queue(_mproc._Queue):
    """A process-shared FIFO queue, as :class:`multiprocessing.Queue`.

    ``maxsize`` bounds the number of messages (0: no bound but the ring's ``capacity`` bytes).
    Objects travel by pickle (protocol 5, out-of-band buffers gathered into the record);
    ``bytes``, ``bytearray``, ``memoryview`` and ``str`` travel without pickling. ``put`` and
    ``get`` raise :class:`queue.Full` and :class:`queue.Empty` as multiprocessing's do.
    ``close()`` closes this handle only; ``shutdown()`` closes the queue for every process.
    """

    _joinable = False
    _kind = "q"

    def __init__(self, maxsize=0, *, capacity=DEFAULT_CAPACITY, message_type="bytes",
                 _attach=None):
        if _attach is None:
            name = _anonymous_name(self._kind)
            super().__init__(name, "create", capacity, max(maxsize, 0), self._joinable,
                             message_type, _MODE, False)
            _own(self, _mproc._Queue._unlink, name, self._joinable)
        else:
            name, how, mode, persistent = _attach
            super().__init__(name, how, capacity, max(maxsize, 0), self._joinable, message_type,
                             mode, persistent)
        self._message_type = message_type

    @classmethod
    def create(cls, name, maxsize=0, *, capacity=DEFAULT_CAPACITY, message_type="bytes",
               mode=_MODE, persistent=False):
        """Create the named queue ``name`` (FileExistsError if it exists).
        ``message_type="str"`` makes it a C++ ``Queue<std::string>``; the default, a
        ``Queue<mproc::Bytes>``."""
        return cls(maxsize, capacity=capacity, message_type=message_type,
                   _attach=(name, "create", mode, persistent))

    @classmethod
    def open(cls, name, *, message_type="bytes"):
        """Open the existing named queue ``name`` (FileNotFoundError if there is none)."""
        return cls(0, capacity=0, message_type=message_type, _attach=(name, "open", _MODE, False))

    @classmethod
    def open_or_create(cls, name, maxsize=0, *, capacity=DEFAULT_CAPACITY,
                       message_type="bytes", mode=_MODE, persistent=False):
        """Open the named queue ``name``, or create it if it does not exist (race-free)."""
        return cls(maxsize, capacity=capacity, message_type=message_type,
                   _attach=(name, "open_or_create", mode, persistent))

    @classmethod
    def unlink(cls, name):
        """Remove the name ``name`` (processes that have the queue open keep using it)."""
        _mproc._Queue._unlink(name, cls._joinable)

    def close(self):
        """Close this handle: later calls through it raise ValueError. Other processes (and
        other handles) are unaffected; see shutdown()."""
        if not self._closed:
            self._close()
        _release_name(self)

    def join_thread(self):
        """For multiprocessing compatibility: there is no feeder thread to join."""

    def cancel_join_thread(self):
        """For multiprocessing compatibility: there is no feeder thread."""

    def __reduce__(self):
        return (_reattach_queue, (type(self), self.name, self._message_type))

    def __repr__(self):
        state = "closed" if self._closed else f"qsize={self.qsize()}"
        return f"<mproc.{type(self).__name__} {self.name!r} {state}>"


class JoinableQueue(Queue):
    """A Queue that counts unfinished tasks, as :class:`multiprocessing.JoinableQueue`:
    ``task_done()`` after each ``get()``, ``join()`` waits until every task is done."""

    _joinable = True
    _kind = "jq"


class SimpleQueue(Queue):
    """:class:`multiprocessing.SimpleQueue`: ``put``, ``get``, ``empty``, ``close`` (the full
    Queue interface is there too)."""

    _kind = "sq"

    def __init__(self, _maxsize=0, *, capacity=DEFAULT_CAPACITY, message_type="bytes",
                 _attach=None, ctx=None):
        # _maxsize: for the factories (create(name, maxsize)); ctx: multiprocessing's keyword.
        super().__init__(_maxsize, capacity=capacity, message_type=message_type,
                         _attach=_attach)


def _reattach_queue(cls, name, message_type):
    return cls.open(name, message_type=message_type)


# ---- locks --------------------------------------------------------------------------------


class _NamedMixin:
    """create/open/open_or_create/unlink and pickling by name for the simple primitives."""

    _kind = "x"
    _base = None  # the _mproc class underneath

    def _init_named(self, _attach, *args):
        base = self._base
        if _attach is None:
            name = _anonymous_name(self._kind)
            base.__init__(self, name, "create", *args, _MODE, False)
            _own(self, base._unlink, name)
        else:
            name, how, mode, persistent = _attach
            base.__init__(self, name, how, *args, mode, persistent)

    @classmethod
    def unlink(cls, name):
        """Remove the name ``name`` (processes that have the object open keep using it)."""
        cls._base._unlink(name)

    def close(self):
        """Give up this process's name responsibility (anonymous objects: remove the name)."""
        _release_name(self)

    def __reduce__(self):
        return (_reattach_simple, (type(self), self.name))

    def __repr__(self):
        return f"<mproc.{type(self).__name__} {self.name!r}>"


def _reattach_simple(cls, name):
    return cls.open(name)


def _lock_factories(cls):
    def create(klass, name, *, mode=_MODE, persistent=False):
        """Create the named object ``name`` (FileExistsError if it exists)."""
        return klass(_attach=(name, "create", mode, persistent))

    def open_(klass, name):
        """Open the existing named object ``name``."""
        return klass(_attach=(name, "open", _MODE, False))

    def open_or_create(klass, name, *, mode=_MODE, persistent=False):
        """Open the named object ``name``, or create it (race-free)."""
        return klass(_attach=(name, "open_or_create", mode, persistent))

    cls.create = classmethod(create)
    cls.open = classmethod(open_)
    cls.open_or_create = classmethod(open_or_create)
    return cls


@_lock_factories
class Lock(_NamedMixin, _mproc._Lock):
    """A crash-safe lock, as :class:`multiprocessing.Lock` but with an owner.

    If the holder dies (SIGKILL included), the next ``acquire()`` raises :class:`OwnerDied`
    *with the lock held*: repair the guarded data, call ``mark_consistent()``, then
    ``release()``. In a ``with`` statement the lock is released again before OwnerDied
    propagates (``e.held`` is False). Only the thread that acquired it may release it.
    """

    _kind = "l"
    _base = _mproc._Lock

    def __init__(self, *, _attach=None):
        self._init_named(_attach)


@_lock_factories
class RLock(_NamedMixin, _mproc._RLock):
    """A recursive crash-safe lock, as :class:`multiprocessing.RLock` (owner death as Lock)."""

    _kind = "r"
    _base = _mproc._RLock

    def __init__(self, *, _attach=None):
        self._init_named(_attach)


class _SemaphoreMixin(_NamedMixin):
    """What Semaphore and BoundedSemaphore share."""

    def __init__(self, value=1, *, _attach=None):
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._init_named(_attach, value)

    @classmethod
    def create(cls, name, value=1, *, mode=_MODE, persistent=False):
        """Create the named semaphore ``name`` with count ``value``."""
        return cls(value, _attach=(name, "create", mode, persistent))

    @classmethod
    def open(cls, name):
        """Open the existing named semaphore ``name``."""
        return cls(0, _attach=(name, "open", _MODE, False))

    @classmethod
    def open_or_create(cls, name, value=1, *, mode=_MODE, persistent=False):
        """Open the named semaphore ``name``, or create it with count ``value``."""
        return cls(value, _attach=(name, "open_or_create", mode, persistent))

    def __repr__(self):
        return f"<mproc.{type(self).__name__} {self.name!r} value={self.get_value()}>"


class Semaphore(_SemaphoreMixin, _mproc._Semaphore):
    """A counting semaphore, as :class:`multiprocessing.Semaphore` (no owner: any process may
    release; a count held by a process that dies is lost)."""

    _kind = "s"
    _base = _mproc._Semaphore


class BoundedSemaphore(_SemaphoreMixin, _mproc._BoundedSemaphore):
    """A semaphore whose count may not exceed its initial value: a release beyond it raises
    ValueError (:class:`UsageError`), as :class:`multiprocessing.BoundedSemaphore`."""

    _kind = "bs"
    _base = _mproc._BoundedSemaphore


@_lock_factories
class Event(_NamedMixin, _mproc._Event):
    """A flag processes set, clear and wait for, as :class:`multiprocessing.Event`."""

    _kind = "e"
    _base = _mproc._Event

    def __init__(self, *, _attach=None):
        self._init_named(_attach)


@_lock_factories
class Condition(_NamedMixin, _mproc._Condition):
    """A condition variable, as :class:`multiprocessing.Condition`.

    ``Condition()`` has an RLock of its own and pickles by name. Over a lock you pass
    (``Condition(lock)``), the lock pickles by itself and the condition's memory as a
    descriptor, as a Connection does: both reach spawned and forkserver children.
    """

    _kind = "c"
    _base = _mproc._Condition

    def __init__(self, lock=None, *, _attach=None):
        self._lock_arg = lock
        if lock is None:
            self._init_named(_attach)
        else:
            _mproc._Condition.__init__(self, lock)  # TypeError unless an mproc Lock or RLock

    def wait_for(self, predicate, timeout=None):
        """Wait until ``predicate()`` is true (the lock held); returns its last value."""
        result = predicate()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not result:
            if deadline is None:
                self.wait()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            result = predicate()
        return result

    def __reduce__(self):
        if self._lock_arg is None:
            return super().__reduce__()
        # The lock travels by itself (by name; pickled once with everything that names it), the
        # condition's own memory as a descriptor.
        data, dup_fds = _send_descriptors(self._export_block, "Condition(lock)", "a Condition()")
        return (_rebuild_condition, (type(self), self._lock_arg, data, dup_fds))


def _rebuild_condition(cls, lock, data, dup_fds):
    cond = cls.__new__(cls)
    cond._lock_arg = lock
    # Takes the descriptors in every case: closes them if the lock is not an mproc lock.
    _mproc._Condition.__init__(cond, lock, data, _received_descriptors(dup_fds))
    return cond


class Barrier(_NamedMixin, _mproc._Barrier):
    """``parties`` processes wait until all have arrived, as :class:`multiprocessing.Barrier`.

    ``action`` runs in the last process to arrive; a timeout (of ``wait`` or the default
    ``timeout``) breaks the barrier (:class:`threading.BrokenBarrierError`). ``wait`` does not
    answer Ctrl-C until it returns (slicing it would break the barrier).
    """

    _kind = "b"
    _base = _mproc._Barrier

    def __init__(self, parties, action=None, timeout=None, *, _attach=None):
        if _attach is None and parties < 1:
            raise ValueError("parties must be at least 1")
        self._init_named(_attach, parties, action, timeout)
        self._timeout = timeout

    @classmethod
    def create(cls, name, parties, action=None, timeout=None, *, mode=_MODE, persistent=False):
        """Create the named barrier ``name`` for ``parties`` processes."""
        return cls(parties, action, timeout, _attach=(name, "create", mode, persistent))

    @classmethod
    def open(cls, name, action=None, timeout=None):
        """Open the existing named barrier (the action and timeout are this process's own)."""
        return cls(1, action, timeout, _attach=(name, "open", _MODE, False))

    @classmethod
    def open_or_create(cls, name, parties, action=None, timeout=None, *, mode=_MODE,
                       persistent=False):
        """Open the named barrier ``name``, or create it for ``parties`` processes."""
        return cls(parties, action, timeout, _attach=(name, "open_or_create", mode, persistent))

    def __reduce__(self):
        return (_reattach_barrier, (type(self), self.name, self.action, self._timeout))


def _reattach_barrier(cls, name, action, timeout):
    return cls.open(name, action, timeout)


# ---- pipes --------------------------------------------------------------------------------

Connection = _mproc._Connection


def _connection_reduce(self):
    """As multiprocessing's Connection: its descriptors (the pair's memory, this end's sockets) go
    with multiprocessing's DupFd, so the end reaches a spawned or forkserver child, or another
    process through a queue. The sender keeps its copy: close it for end of stream to work."""
    data, dup_fds = _send_descriptors(self._export, "Connection", "an mproc.Queue")
    return (_rebuild_connection, (data, dup_fds))


def _rebuild_connection(data, dup_fds):
    return Connection._adopt(data, _received_descriptors(dup_fds))


Connection.__reduce__ = _connection_reduce


def Pipe(duplex=True, *, capacity=DEFAULT_CAPACITY):  # noqa: N802 (multiprocessing's name)
    """A connected pair of Connections, as :func:`multiprocessing.Pipe`: both ends send and
    receive, or (``duplex=False``) the first receives and the second sends. ``recv`` raises
    EOFError once the other end is closed by every process that had it (or they died)."""
    return _mproc._pipe(duplex, capacity)


def wait(object_list, timeout=None):
    """Wait until one of ``object_list`` is ready, as
    :func:`multiprocessing.connection.wait`: Connections (mproc's or multiprocessing's),
    sockets, or anything with ``fileno()``. Returns the ready ones ([] on timeout)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
        ready = _mp_connection.wait(object_list, remaining)
        # An mproc descriptor may wake with nothing to read: confirm with poll().
        confirmed = [o for o in ready if not isinstance(o, Connection) or o.poll(0)]
        if confirmed or (deadline is not None and time.monotonic() >= deadline):
            return confirmed
