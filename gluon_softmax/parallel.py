"""Scale-out: one global batch shared out over devices and over worker processes.

This layer wraps the chapter's pieces from outside; the chapter never imports
it. A *worker* is a training process of a ``dist_sync`` job (started by
``python -m gluon_softmax.launch``); DataLoader processes are *loader workers*.

A *global batch* is the batch a single process on a single device would train
on. Every worker process draws the same global batches (same seed, so the same
shuffling), takes its rank's share of each, and splits that share over its
devices with ``gluon.utils.split_and_load``. Gradients are summed over devices
and workers (by a kvstore, or by hand for the scratch model) and the step
divides by the global batch size, so the update is the single-device one up to
the order of floating-point additions.
"""
import copy
import hashlib
import os

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np

from gluon_softmax import concise
from gluon_softmax.settings import KVSTORES
from gluon_softmax.training import correct_count

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


def sum_on(ctx, arrays):
    """The sum of 0-d ``arrays`` (0 for none), on ``ctx``."""
    total = None  # not 0: "0 + a" would cost one more device op per batch
    for a in arrays:
        total = a.as_in_ctx(ctx) if total is None else total + a.as_in_ctx(ctx)
    return 0 if total is None else total


def build_trainer(net, lr, momentum=0.0, wd=0.0, num_updates=None, kvstore='device',
                  workers=None):
    """:func:`gluon_softmax.concise.build_trainer` for a net on several devices or workers.

    ``kvstore`` None is refused for a net on several devices. With the
    ``workers`` of a distributed job the gradients are summed over all of them
    (:class:`WorkerSumTrainer`) before each update.
    """
    num_devices = len(next(iter(net.collect_params().values())).list_ctx())
    if kvstore is None and num_devices > 1:
        # measured: without a kvstore every device steps on its own gradients and the
        # copies of the parameters silently drift apart
        raise ParallelError(f'a net on {num_devices} devices needs a kvstore to sum their '
                            "gradients ('device' or 'local'), not None")
    if workers is None or not workers.distributed:
        return concise.build_trainer(net, lr, momentum, wd, num_updates, kvstore)
    # each worker updates its own copy from the summed gradients: the servers only add,
    # and the optimizer state stays local, where a checkpoint can save it
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            concise.sgd_options(lr, momentum, wd, num_updates),
                            kvstore=workers.kv, update_on_kvstore=False)
    return WorkerSumTrainer(trainer, net.collect_params().values(), workers)


class ScratchReplicas:
    """A :class:`~gluon_softmax.scratch.SoftmaxRegressionScratch` with a copy on every device.

    Calling it multiplies a batch by the copy on the batch's own device; the
    first copy (``W``, ``b``) is the one saved and reported.
    """

    def __init__(self, model, ctxs):
        self.replicas = [model]
        for ctx in ctxs[1:]:
            replica = copy.copy(model)
            replica.W, replica.b = model.W.copyto(ctx), model.b.copyto(ctx)
            for param in replica.parameters():
                param.attach_grad()
            self.replicas.append(replica)
        self.W, self.b = model.W, model.b

    def __call__(self, X):
        for replica in self.replicas:
            if replica.W.ctx == X.ctx:
                return replica(X)
        raise ValueError(f'input on {X.ctx}, but the model is on '
                         f'{", ".join(str(r.W.ctx) for r in self.replicas)}')

    def parameters(self):
        """The first copy's ``[W, b]``."""
        return self.replicas[0].parameters()

    def parameter_copies(self):
        """Per parameter, its copies on every device: ``[[W, W', ...], [b, b', ...]]``."""
        return [list(copies) for copies in zip(*(r.parameters() for r in self.replicas))]

    def save_parameters(self, path):
        """Write the first copy's ``W`` and ``b``."""
        self.replicas[0].save_parameters(path)

    def load_parameters(self, path):
        """Read ``W`` and ``b`` into every copy."""
        for replica in self.replicas:
            replica.load_parameters(path)

    def __repr__(self):
        return f'ScratchReplicas({self.replicas[0]!r}, copies={len(self.replicas)})'


class ReplicaSGD:
    """Minibatch SGD for :class:`ScratchReplicas`: one step on the gradients summed over copies.

    Given the ``workers`` of a distributed job, the sums are also added over
    the workers. The first copy is updated, then copied to the others: the same
    update as on one device.
    """

    def __init__(self, replicas, lr, workers=None):
        self.params, self.lr = replicas.parameter_copies(), lr
        self.workers = workers or Workers()

    def step(self, batch_size):
        """Update every parameter from the summed gradients of its copies."""
        for copies in self.params:
            param = copies[0]
            grad = sum_on(param.ctx, [copy_.grad for copy_ in copies])
            grad = self.workers.sum(grad)
            param[:] = param - self.lr * grad / batch_size
            for copy_ in copies[1:]:
                copy_[:] = param.as_in_ctx(copy_.ctx)

    def __repr__(self):
        return f'ReplicaSGD(lr={self.lr}, params={len(self.params)}, {self.workers!r})'


def replicate_scratch(model, lr, ctxs, workers=None):
    """``(net, updater)`` for the scratch ``model`` trained on ``ctxs`` and ``workers``."""
    replicas = ScratchReplicas(model, ctxs)
    return replicas, ReplicaSGD(replicas, lr, workers)


class DataParallel:
    """The epoch function of several devices and worker processes, for ``training.train``.

    Each batch is split over ``ctxs`` (and, in a distributed job, over the
    ``workers``); ``updater.step`` gets the whole batch's size; the figures
    returned cover the whole batch, all workers included. On one device and one
    process it computes what :func:`gluon_softmax.training.train_epoch` does.
    ``watch``, if given, sees every batch's loss sum (``watch.batch(i, loss_sum,
    batch_size)``) and the end of the epoch (``watch.end()``): the divergence check.
    """

    def __init__(self, ctxs, workers=None, watch=None):
        self.ctxs, self.workers, self.watch = ctx_list(ctxs), workers or Workers(), watch

    def train_epoch(self, net, train_iter, loss, updater, ctx=None):
        """One pass; returns ``(mean loss per example, train accuracy)``. ``ctx`` is unused."""
        ctxs, workers = self.ctxs, self.workers
        loss_sum, correct, total = 0.0, 0.0, 0
        for i, (X, y) in enumerate(train_iter, 1):
            pieces = split_batch(X, y, ctxs, workers)  # [(X_k, y_k, weight)], one per device
            with autograd.record():
                outputs = [(net(X_k), y_k) for X_k, y_k, _ in pieces]
                # a weight-0 piece only keeps its device's gradient fresh (and zero)
                losses = [loss(y_hat, y_k) if weight else loss(y_hat, y_k) * 0
                          for (y_hat, y_k), (_, _, weight) in zip(outputs, pieces)]
            for l in losses:
                l.backward()
            updater.step(X.shape[0])
            batch_loss = sum_on(ctxs[0], [l.sum() for l in losses])
            loss_sum = loss_sum + batch_loss
            correct = correct + sum_on(ctxs[0], [correct_count(y_hat, y_k) for (y_hat, y_k), piece
                                                 in zip(outputs, pieces) if piece[2]])
            total += sum(y_k.shape[0] for _, y_k, weight in pieces if weight)
            if self.watch is not None:
                self.watch.batch(i, batch_loss, X.shape[0])
        if self.watch is not None:
            self.watch.end()
        sums = np.stack([np.array(loss_sum, ctx=ctxs[0]).astype('float32'),
                         np.array(correct, ctx=ctxs[0]).astype('float32'),
                         np.array(float(total), ctx=ctxs[0])])
        loss_sum, correct, total = workers.sum(sums).asnumpy().tolist()
        return loss_sum / total, correct / total

    def __repr__(self):
        return f'DataParallel({", ".join(map(str, self.ctxs))}, {self.workers!r})'
