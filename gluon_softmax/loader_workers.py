"""DataLoader worker processes that cannot deadlock: :class:`WorkerDataLoader`.

MXNet's ``DataLoader(num_workers=N)`` hands batches to a ``multiprocessing.Pool``.
All of a pool's workers share one task queue and one result queue, each guarded
by a lock (a semaphore): an idle worker holds the task queue's lock while it
waits for a task, a busy one the result queue's while it sends. A worker that
dies at such a moment (SIGKILL from the OOM killer or from clean-up code,
SIGBUS on a full /dev/shm, a signal to its process group) never releases the
lock, so its siblings wait for it forever; the pool silently replaces the dead
worker, whose batch is lost, so the loader waits out its 120 s timeout; and
``Pool.terminate`` (run by ``DataLoader.__del__`` and by the pool's finalizer,
also at exit) takes the task queue's lock first, so clean-up waits forever.

Here every worker has a socket pair of its own and shares no lock with anyone:
killing a worker at any moment harms nobody else. The parent sends a worker
the indices of its batches and gets each batch back on the same socket, its
arrays' shared memory passed as file descriptors beside it (no connection back
to the worker, as MXNet's pickling makes, that a dead or stopped worker would
leave hanging). Every wait of the parent has a bound: a worker that dies is
seen at once (its end of the socket closes), one that sends nothing for
``timeout`` seconds is taken as hung; either raises :class:`LoaderWorkerError`
after all the loader's workers are killed and reaped. Ending the workers is
SIGKILL and a bounded reap, never a handshake with a process that may be gone.
"""
import array
import collections
import contextlib
import ctypes
import io
import itertools
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import warnings
import weakref

import mxnet as mx
from mxnet import gluon
from mxnet.gluon.data.dataloader import default_mp_batchify_fn
from mxnet.util import is_np_array, is_np_shape, set_np

DEFAULT_TIMEOUT = 60  # seconds a worker may take for one batch before it counts as hung
REAP_SECONDS = 5  # bound on reaping SIGKILLed workers (only a process stuck in the kernel lasts)
MAX_FDS = 64  # shared-memory arrays per batch (a batch of (X, y) has 2)
HEADER = struct.Struct('!QqII')  # payload bytes, task id, file descriptors, 1 if an error
PR_SET_PDEATHSIG = 1
# signals a worker leaves to the parent (it ignores them) or dies of (default action); a
# Python handler inherited from the parent would run in the worker instead
IGNORED = (signal.SIGINT,)
DEFAULT_ACTION = tuple(getattr(signal, name) for name in
                       ('SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGALRM')
                       if hasattr(signal, name))


class LoaderWorkerError(Exception):
    """A DataLoader worker process died or hung; the loader's workers have been ended."""


# ---------------------------------------------------------------- batches on the wire

class _BatchPickler(pickle.Pickler):
    """Pickles a batch; its arrays travel as shared-memory file descriptors (``fds``)."""

    def __init__(self, file):
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.fds, self.keep = [], []

    def persistent_id(self, obj):  # pylint: disable=method-hidden
        if not isinstance(obj, mx.nd.NDArray):
            return None
        shared = obj.as_in_context(mx.Context('cpu_shared', 0))  # no copy for batchify's
        pid, fd, shape, dtype = shared._to_shared_mem()  # pylint: disable=protected-access
        self.keep.append(shared)  # its fd stays open until the batch is sent
        self.fds.append(fd)
        return isinstance(obj, mx.np.ndarray), pid, len(self.fds) - 1, shape, dtype


class _BatchUnpickler(pickle.Unpickler):
    """Rebuilds a batch around the file descriptors received with it (MXNet takes them over)."""

    def __init__(self, file, fds):
        super().__init__(file)
        self.fds = fds

    def persistent_load(self, pid):  # pylint: disable=method-hidden
        is_np, owner, index, shape, dtype = pid
        fd, self.fds[index] = self.fds[index], None
        # as MXNet's own rebuild_ndarray does with the descriptor it receives
        new_from_shared_mem = mx.nd.ndarray._new_from_shared_mem  # pylint: disable=protected-access
        handle = new_from_shared_mem(owner, fd, shape, dtype)
        return mx.np.ndarray(handle) if is_np else mx.nd.NDArray(handle)


def _close_fds(fds):
    for fd in fds:
        if fd is not None:
            os.close(fd)


def _recv_exactly(sock, size):
    """``size`` bytes from ``sock``; EOFError when the other end has closed."""
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError
        got += n
    return bytes(buf)


def _send_message(sock, task_id, payload, fds=(), error=False):
    """One message: header and payload in one ``sendmsg``, the descriptors attached to it."""
    data = HEADER.pack(len(payload), task_id, len(fds), int(error)) + payload
    ancillary = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))]
                 if fds else [])
    sent = sock.sendmsg([data], ancillary)
    if sent < len(data):
        sock.sendall(data[sent:])


def _recv_message(sock):
    """``(task id, payload, fds, error)`` of the next message on ``sock``."""
    first, ancillary, flags, _ = sock.recvmsg(HEADER.size, socket.CMSG_SPACE(4 * MAX_FDS))
    fds = array.array('i')
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    if not first:
        _close_fds(fds)
        raise EOFError
    if flags & socket.MSG_CTRUNC:
        _close_fds(fds)
        raise OSError('a batch came with more shared-memory arrays than allowed')
    try:
        head = first + _recv_exactly(sock, HEADER.size - len(first))
        size, task_id, num_fds, error = HEADER.unpack(head)
        payload = _recv_exactly(sock, size)
    except BaseException:
        _close_fds(fds)
        raise
    if num_fds != len(fds):
        _close_fds(fds)
        raise OSError(f'a batch came with {len(fds)} of its {num_fds} arrays')
    return task_id, payload, list(fds), bool(error)


# ---------------------------------------------------------------- the worker process

def _die_with_parent(parent):
    """Ask Linux to SIGKILL this process when ``parent`` dies; leave if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's clean-up alone ends the workers
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def _worker_setup(parent):
    """In a new worker: signals as the kernel's defaults, its own process group."""
    for signum in IGNORED:
        signal.signal(signum, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for signum in DEFAULT_ACTION:
        signal.signal(signum, signal.SIG_DFL)
    # out of the parent's process group: a terminal's Ctrl-Z or a kill of the group reaches
    # the parent, which ends its workers, not a worker in the middle of a batch
    os.setpgid(0, 0)
    _die_with_parent(parent)


def _serve(sock, dataset, batchify_fn, np_shape, np_array):
    """A worker's loop: indices in, a batch out, until the parent closes the socket."""
    set_np(shape=np_shape, array=np_array)
    while True:
        try:
            head = _recv_exactly(sock, HEADER.size)
            size, task_id, _, _ = HEADER.unpack(head)
            samples = pickle.loads(_recv_exactly(sock, size))
        except (EOFError, ConnectionError):
            return
        try:
            batch = batchify_fn([dataset[i] for i in samples])
            buf = io.BytesIO()
            pickler = _BatchPickler(buf)
            pickler.dump(batch)
            if len(pickler.fds) > MAX_FDS:
                raise ValueError(f'a batch of {len(pickler.fds)} arrays; at most {MAX_FDS}')
        except Exception as e:  # pylint: disable=broad-except
            # the parent raises it; a type it cannot unpickle comes as the traceback's text
            text = ''.join(traceback.format_exception(e))
            try:
                payload = pickle.dumps((e, text))
            except Exception:  # pylint: disable=broad-except
                payload = pickle.dumps((None, text))
            _send_message(sock, task_id, payload, error=True)
            continue
        _send_message(sock, task_id, buf.getvalue(), pickler.fds)
        del batch, pickler  # the batch's shared memory now lives on in the parent


def _worker_main(sock, parent, *serve_args):
    """The forked child: set up, serve, and leave without the parent's exit handlers."""
    status = 1
    try:
        _worker_setup(parent)
        _serve(sock, *serve_args)
        status = 0
    except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)  # pylint: disable=protected-access


# ---------------------------------------------------------------- the parent's side

@contextlib.contextmanager
def _handlers_deferred():
    """Python signal handlers only note signals during the block; they run as it ends.

    A handler that raises (Ctrl-C's KeyboardInterrupt, the CLI's Interrupted)
    may otherwise run inside ``os.fork``'s hooks (logging's lock release), where
    the exception is printed and lost: the run would go on as if never signalled.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only, never in this one's fork
        return
    noted, previous = [], {}
    for signum in IGNORED + DEFAULT_ACTION:
        if callable(signal.getsignal(signum)):
            previous[signum] = signal.signal(signum, lambda signum, _: noted.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(noted):
            signal.raise_signal(signum)


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self, index, count, pid, sock):
        self.index, self.count, self.pid, self.sock = index, count, pid, sock
        self.outstanding = collections.deque()  # task ids sent, in order
        self.status = None  # wait status once reaped

    def __str__(self):
        return f'DataLoader worker {self.index + 1} of {self.count} (pid {self.pid})'

    def reap(self, deadline):
        """Collect the process's exit status, waiting until ``deadline`` at most."""
        while self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler, a waiter of all)
                self.status = -1
                return
            if pid:
                self.status = status
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)

    def end_text(self):
        """How the process ended, in words (after :meth:`reap`)."""
        if self.status is None:
            return 'still running'
        if self.status == -1:
            return 'exit status unknown'
        if os.WIFSIGNALED(self.status):
            signum = os.WTERMSIG(self.status)
            return f'killed by {signal.Signals(signum).name}'
        return f'exit status {os.waitstatus_to_exitcode(self.status)}'


def _end_workers(workers, held):
    """Kill and reap ``workers``, close their sockets and ``held`` descriptors; bounded."""
    for worker in workers:
        if worker.status is None:
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for worker in workers:
        worker.sock.close()
    deadline = time.monotonic() + REAP_SECONDS
    for worker in workers:
        worker.reap(deadline)
    for fds in held.values():
        _close_fds(fds)
    held.clear()


class WorkerPool:
    """``num_workers`` forked processes turning lists of indices into batches of ``dataset``."""

    def __init__(self, num_workers, dataset, batchify_fn, timeout=DEFAULT_TIMEOUT):
        self.timeout = timeout
        self._ids = itertools.count()
        self._owner = {}  # task id -> its worker
        self._ready = {}  # task id -> (payload, fds, error): read, not yet taken
        self._dropped = set()  # ids whose batches nobody will take (an abandoned iterator)
        self._error = None
        self.workers = []
        self._finalizer = weakref.finalize(self, _end_workers, self.workers, self._ready)
        flags = (is_np_shape(), is_np_array())
        for index in range(num_workers):
            self.workers.append(self._start(index, num_workers, dataset, batchify_fn, flags))

    def _start(self, index, count, dataset, batchify_fn, flags):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent = os.getpid()
        with _handlers_deferred(), warnings.catch_warnings():
            # Python 3.12 warns about fork() with threads; MXNet's engine handles its own
            # threads around fork (as it does for its own multiprocessing DataLoader)
            warnings.simplefilter('ignore', DeprecationWarning)
            pid = os.fork()
            if pid == 0:
                ours.close()
                _worker_main(theirs, parent, dataset, batchify_fn, *flags)  # never returns
        theirs.close()
        ours.settimeout(self.timeout)  # every send and receive of the parent is bounded
        return _Worker(index, count, pid, ours)

    def close(self):
        """Kill and reap the workers (bounded); the pool serves no more batches."""
        self._finalizer()

    @property
    def closed(self):
        return not self._finalizer.alive

    def _fail(self, worker, what):
        """End every worker and raise :class:`LoaderWorkerError` about ``worker``."""
        self.close()
        self._error = LoaderWorkerError(f'{worker} {what}' if worker else what)
        raise self._error

    def _check_open(self):
        if self._error is not None:
            raise LoaderWorkerError(str(self._error))
        if self.closed:
            raise LoaderWorkerError('the DataLoader\'s workers were ended')

    def submit(self, samples):
        """Send one batch's indices to a worker (in turn); the task's id."""
        self._check_open()
        task_id = next(self._ids)
        worker = self.workers[task_id % len(self.workers)]
        payload = pickle.dumps([int(i) for i in samples], pickle.HIGHEST_PROTOCOL)
        try:
            worker.sock.sendall(HEADER.pack(len(payload), task_id, 0, 0) + payload)
        except socket.timeout:
            self._fail(worker, f'took no work for {self.timeout:g} s (hung)')
        except OSError:
            self._died(worker)
        worker.outstanding.append(task_id)
        self._owner[task_id] = worker
        return task_id

    def _died(self, worker):
        worker.reap(time.monotonic() + 1)  # its status, if it is already gone
        hint = ('; /dev/shm is probably too small for the batches in flight'
                if worker.status is not None and worker.status != -1
                and os.WIFSIGNALED(worker.status) and os.WTERMSIG(worker.status) == signal.SIGBUS
                else '')
        self._fail(worker, f'died ({worker.end_text()}) before sending its batches{hint}')

    def _read(self, worker):
        """Read ``worker``'s next message into ``_ready`` (or drop it if nobody wants it)."""
        try:
            task_id, payload, fds, error = _recv_message(worker.sock)
        except socket.timeout:
            self._fail(worker, f'sent no batch for {self.timeout:g} s (hung)')
        except (EOFError, OSError):
            self._died(worker)
        expected = worker.outstanding.popleft()
        if task_id != expected:
            _close_fds(fds)
            self._fail(worker, f'sent batch {task_id}, expected {expected}')
        del self._owner[task_id]
        if task_id in self._dropped:
            self._dropped.discard(task_id)
            _close_fds(fds)
        else:
            self._ready[task_id] = payload, fds, error

    def result(self, task_id):
        """The batch of task ``task_id``, waiting for it at most ``timeout`` s per message."""
        try:
            while task_id not in self._ready:
                self._check_open()
                self._read(self._owner[task_id])
        except BaseException:
            self.discard([task_id])  # e.g. a signal while waiting: the batch is not taken
            raise
        payload, fds, error = self._ready.pop(task_id)
        if error:
            _close_fds(fds)
            exc, text = pickle.loads(payload)
            if exc is None:
                raise LoaderWorkerError(f'a DataLoader worker failed on a batch:\n{text}')
            raise exc
        try:
            return _BatchUnpickler(io.BytesIO(payload), fds).load()
        finally:
            _close_fds(fds)  # those MXNet did not take over (on an error)

    def discard(self, task_ids):
        """Batches nobody will take: freed now if they came, dropped as they come otherwise."""
        for task_id in task_ids:
            if task_id in self._ready:
                _close_fds(self._ready.pop(task_id)[1])
            elif task_id in self._owner:
                self._dropped.add(task_id)


class WorkerDataLoader(gluon.data.DataLoader):
    """Gluon's ``DataLoader`` whose ``num_workers`` processes are a :class:`WorkerPool`.

    The same batches in the same order as ``gluon.data.DataLoader`` (the sampler
    runs in this process, as there); with ``num_workers=0`` it is that loader.
    ``timeout`` bounds the wait for each batch; a dead worker is seen at once.
    :meth:`close` ends the workers (the pool's finalizer does too).
    """

    def __init__(self, dataset, batch_size=None, shuffle=False, num_workers=0,
                 timeout=DEFAULT_TIMEOUT, prefetch=None, **kwargs):
        # the parent gets no multiprocessing pool: num_workers=0 there
        super().__init__(dataset, batch_size, shuffle=shuffle, num_workers=0, timeout=timeout,
                         **kwargs)
        self._num_workers = num_workers
        self._prefetch = 2 * num_workers if prefetch is None else max(0, int(prefetch))
        self._workers = None
        if num_workers > 0:
            batchify_fn = kwargs.get('batchify_fn') or default_mp_batchify_fn
            self._workers = WorkerPool(num_workers, dataset, batchify_fn, timeout)

    def __iter__(self):
        if self._workers is None:
            yield from super().__iter__()
            return
        pool, batches = self._workers, iter(self._batch_sampler)
        pending = collections.deque()
        try:
            for samples in itertools.islice(batches, self._prefetch):
                pending.append(pool.submit(samples))
            while True:
                # as MXNet's iterator: the next batch is asked for before this one is taken
                for samples in itertools.islice(batches, 1):
                    pending.append(pool.submit(samples))
                if not pending:
                    return
                yield pool.result(pending.popleft())
        finally:
            if not pool.closed:
                pool.discard(pending)  # an iterator left mid-epoch (islice, break, an error)

    def close(self):
        """End the worker processes (bounded; idempotent)."""
        if self._workers is not None:
            self._workers.close()


def end_workers(*loaders):
    """Close every loader that has worker processes (others are left as they are)."""
    for loader in loaders:
        close = getattr(loader, 'close', None)
        if close is not None and isinstance(loader, WorkerDataLoader):
            close()
