"""The worker processes of a job: rank, sums over workers, joining the job of a kvstore."""
import hashlib
import os

import mxnet as mx
import numpy as onp
from mxnet import np

from gluon_softmax.scale import KVSTORES


# keys for sums over workers; the Trainer's parameters use 0, 1, ..., so start far above
FIRST_SUM_KEY = 1 << 20


class ParallelError(Exception):
    """A device list or kvstore setting that cannot train correctly."""


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

    def _key(self, shape, purpose=None):
        """The kvstore key for arrays of ``shape`` summed for ``purpose``, made on first use."""
        # One key per purpose too, not only per shape: measured with MXNet 1.9.1, a loss
        # check of shape (10,) that shared the key of the bias gradients' sums came back
        # holding gradient values.
        if (purpose, shape) not in self._keys:
            self._keys[purpose, shape] = FIRST_SUM_KEY + len(self._keys)
            self.kv.init(self._keys[purpose, shape], np.zeros(shape))
        return self._keys[purpose, shape]

    def sum(self, array, purpose=None):
        """``array`` summed over all workers (``array`` itself for one process).

        ``purpose`` (any name) keeps sums made for different ends apart in the kvstore.
        """
        if self.num_workers == 1:
            return array
        out = np.zeros(array.shape, ctx=array.ctx)
        self.kv.pushpull(self._key(array.shape, purpose), array.astype('float32'), out=out)
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
