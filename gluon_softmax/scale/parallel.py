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
import mxnet as mx
from mxnet import autograd, gluon, np

from gluon_softmax.scale.workers import ParallelError, Workers
from gluon_softmax.training import correct_count


def ctx_list(ctx):
    """``ctx`` (a context, a list of them, or None for the CPU) as a non-empty list."""
    if ctx is None:
        return [mx.cpu()]
    ctxs = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if not ctxs:
        raise ParallelError('no device given')
    return ctxs


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


def sum_on(ctx, arrays):
    """The sum of 0-d ``arrays`` (0 for none), on ``ctx``."""
    total = None  # not 0: "0 + a" would cost one more device op per batch
    for a in arrays:
        total = a.as_in_ctx(ctx) if total is None else total + a.as_in_ctx(ctx)
    return 0 if total is None else total


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
