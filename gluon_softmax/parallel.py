"""Data parallelism: one global batch shared out over devices and over worker processes.

A *global batch* is the batch a single process on a single device would train
on. Every worker process draws the same global batches (same seed, so the same
shuffling), takes its rank's share of each, and splits that share over its
devices with ``gluon.utils.split_and_load``. Gradients are summed over devices
and workers (by a kvstore, or by hand for the scratch model) and the step
divides by the global batch size, so the update is the single-device one up to
the order of floating-point additions.
"""
import hashlib
import os

import mxnet as mx
import numpy as onp
from mxnet import gluon
from mxnet import np

KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync')
# keys for sums over workers; the Trainer's parameters use 0, 1, ..., so start far above
FIRST_SUM_KEY = 1 << 20


class ParallelError(Exception):
    """A device list or kvstore setting that cannot train correctly."""


def ctx_list(ctx):
    """``ctx`` (a context, a list of them, or None for the CPU) as a non-empty list."""
    if ctx is None:
        return [mx.cpu()]
    ctxs = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if not ctxs:
        raise ParallelError('no device given')
    return ctxs


class Workers:
    """This process's place among the training processes: ``rank``, ``num_workers``, ``kv``.

    ``Workers()`` is a single process. With a distributed kvstore ``kv``,
    :meth:`sum` adds an array over all workers; every worker must make the
    same calls in the same order, as with any collective operation.
    """

    def __init__(self, kv=None):
        self.kv = kv
        self.rank = kv.rank if kv is not None else 0
        self.num_workers = kv.num_workers if kv is not None else 1
        self._keys = {}  # array shape -> kvstore key, assigned in call order

    @property
    def distributed(self):
        """True in a job of worker processes started by the launcher (even a job of one)."""
        return self.kv is not None

    def _key(self, shape):
        """The kvstore key for arrays of ``shape``, initialised on first use."""
        if shape not in self._keys:
            self._keys[shape] = FIRST_SUM_KEY + len(self._keys)
            self.kv.init(self._keys[shape], np.zeros(shape))
        return self._keys[shape]

    def sum(self, array):
        """``array`` summed over all workers (``array`` itself for one process)."""
        if self.num_workers == 1:
            return array
        out = np.zeros(array.shape, ctx=array.ctx)
        self.kv.pushpull(self._key(array.shape), array.astype('float32'), out=out)
        return out

    def gather(self, vector):
        """A (num_workers, n) array whose row ``r`` is worker ``r``'s ``vector``."""
        rows = np.zeros((self.num_workers, vector.shape[0]), ctx=vector.ctx)
        rows[self.rank] = vector
        return self.sum(rows)

    def broadcast(self, array):
        """Worker 0's ``array``, on every worker."""
        if self.num_workers == 1:
            return array
        return self.sum(array if self.rank == 0 else np.zeros_like(array))

    def barrier(self):
        """Return once every worker has called this (at once for one process)."""
        self.sum(np.zeros(1)).asnumpy()  # asnumpy waits for the sum over all workers

    def broadcast_int(self, value):
        """Worker 0's integer ``value`` (0 <= value < 2**32), on every worker."""
        # float32 holds 16-bit halves exactly
        halves = self.broadcast(np.array(divmod(value, 1 << 16), dtype='float32'))
        high, low = (int(v) for v in halves.asnumpy())
        return (high << 16) + low

    def digests(self, arrays):
        """Every worker's SHA-256 of ``arrays``: equal entries mean bitwise equal replicas."""
        digest = hashlib.sha256()
        for array in arrays:
            digest.update(array.asnumpy().astype('<f4').tobytes())
        # 32 bytes as 16 16-bit numbers, exact in float32, gathered from every worker
        words = onp.frombuffer(digest.digest(), dtype='>u2').astype(onp.float32)
        rows = self.gather(np.array(words)).asnumpy().astype('>u2')
        return [row.tobytes().hex() for row in rows]

    def __repr__(self):
        return f'Workers(rank={self.rank}, num_workers={self.num_workers})'


def connect(kvstore, environ=None):
    """``Workers`` for a ``--kvstore`` name; a ``dist_*`` name joins the launched job.

    Refuses to create a distributed kvstore outside a job started by
    ``python -m gluon_softmax.launch``: MXNet would wait for a scheduler forever.
    """
    if kvstore not in KVSTORES:
        raise ParallelError(f'--kvstore {kvstore!r}: expected one of {", ".join(KVSTORES)}')
    environ = os.environ if environ is None else environ
    launched = environ.get('DMLC_ROLE') == 'worker'
    if not kvstore.startswith('dist'):
        if launched:
            # each worker would train alone and all would write the same run directory
            raise ParallelError(f'--kvstore {kvstore}: this process is a worker of a '
                                'distributed job (DMLC_ROLE=worker); use --kvstore dist_sync')
        return Workers()
    if not launched:
        raise ParallelError(f'--kvstore {kvstore}: this process is not a worker of a '
                            'distributed job (DMLC_ROLE is not "worker"); start it with '
                            'python -m gluon_softmax.launch -n WORKERS -- python -m '
                            'gluon_softmax.train ...')
    return Workers(mx.kv.create(kvstore))


def share_bounds(size, rank, num_workers):
    """``(start, stop)`` of worker ``rank``'s share of a global batch of ``size`` examples."""
    return rank * size // num_workers, (rank + 1) * size // num_workers


def split_batch(X, y, ctxs, workers=None):
    """This process's pieces of a global batch: a list of ``(X, y, weight)``, one per device.

    The worker's share is split over ``ctxs`` with ``split_and_load``. A device
    left without examples (a last batch smaller than the number of devices)
    gets one example with weight 0: its gradient is then a fresh zero, which the
    kvstore's sum needs from every device and worker on every step.
    """
    workers = workers or Workers()
    if len(ctxs) == 1 and workers.num_workers == 1:
        # the common case, kept free of slicing: one device op fewer per batch
        return [(X.as_in_ctx(ctxs[0]), y.as_in_ctx(ctxs[0]), 1.0)]
    start, stop = share_bounds(X.shape[0], workers.rank, workers.num_workers)
    X_share, y_share = X[start:stop], y[start:stop]
    used = min(len(ctxs), stop - start)
    pieces = []
    if used:
        Xs = gluon.utils.split_and_load(X_share, ctxs[:used], even_split=False)
        ys = gluon.utils.split_and_load(y_share, ctxs[:used], even_split=False)
        pieces = [(X_k, y_k, 1.0) for X_k, y_k in zip(Xs, ys)]
    for ctx in ctxs[used:]:
        pieces.append((X[:1].as_in_ctx(ctx), y[:1].as_in_ctx(ctx), 0.0))
    return pieces


class WorkerSumTrainer:
    """A ``gluon.Trainer`` stepping on gradients summed over devices and worker processes.

    The sum goes through :meth:`Workers.sum`, out of place. Measured with MXNet
    1.9.1: the Trainer's own in-place pushpull of the gradients on a dist
    kvstore (``update_on_kvstore=False``) corrupts them for a hybridized net.
    Every worker then applies the same update to the same sums, so the copies
    of the parameters stay bitwise equal; the optimizer state stays local.
    """

    def __init__(self, trainer, params, workers):
        self.trainer, self.params, self.workers = trainer, list(params), workers

    def step(self, batch_size):
        """Sum every gradient over devices and workers, then update with ``batch_size``."""
        for param in self.params:
            if param.grad_req == 'null':
                continue
            grads = param.list_grad()
            total = grads[0]
            for grad in grads[1:]:
                total = total + grad.as_in_ctx(total.ctx)
            total = self.workers.sum(total)
            for grad in grads:
                grad[:] = total.as_in_ctx(grad.ctx)
        # the first update also broadcasts worker 0's parameters through the kvstore
        self.trainer.update(batch_size)

    def save_states(self, path):
        """The wrapped Trainer's optimizer state, as ``Trainer.save_states``."""
        self.trainer.save_states(path)

    def load_states(self, path):
        """Restore the optimizer state written by :meth:`save_states`."""
        self.trainer.load_states(path)

    def __repr__(self):
        return f'WorkerSumTrainer({self.workers!r})'
