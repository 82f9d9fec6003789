"""One training loop for both models.

The contract, stated once: ``loss(y_hat, y)`` returns one loss per example;
``l.backward()`` sums them; ``updater.step(batch_size)`` divides by the batch
size. A ``gluon.Trainer`` and :class:`gluon_softmax.scratch.SGD` both fit it.
"""
import math
import time

from mxnet import autograd
from mxnet import np

from gluon_softmax.parallel import Workers, ctx_list, split_batch

DEFAULT_MAX_LOSS = 100.0  # mean loss per example; training starts near ln 10 = 2.3
CHECK_EVERY = 20  # batches between divergence checks (each check waits for the device)


class Diverged(Exception):
    """A batch's mean loss was not finite or exceeded the bound."""

    def __init__(self, batch, loss, max_loss, epoch=None):
        self.batch, self.loss, self.max_loss, self.epoch = batch, loss, max_loss, epoch
        where = f'epoch {epoch}, batch {batch}' if epoch is not None else f'batch {batch}'
        super().__init__(f'training diverged at {where}: mean loss {loss:g} '
                         f'(bound {max_loss:g}); try a smaller learning rate')


def correct_count(y_hat, y):
    """Number of rows whose arg-max matches the label, as a 0-d array on the device."""
    return (y_hat.argmax(axis=1).astype(y.dtype) == y).sum()


def accuracy(y_hat, y):
    """Number of correct predictions (a float), as in the book."""
    return float(correct_count(y_hat, y).item())


def evaluate_accuracy(net, data_iter, ctx):
    """Fraction of examples in ``data_iter`` that ``net`` classifies correctly.

    With several devices (a list ``ctx``) the first one evaluates: every
    device holds the same parameters.
    """
    ctx = ctx_list(ctx)[0]
    correct, total = 0, 0
    for X, y in data_iter:
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        # summed on the device; read once at the end, so batches queue without waiting
        correct = correct + correct_count(net(X), y)
        total += y.shape[0]
    return float(correct.item()) / total


def train_epoch(net, train_iter, loss, updater, ctx, max_loss=DEFAULT_MAX_LOSS, workers=None):
    """One pass over ``train_iter``; returns ``(mean loss per example, train accuracy)``.

    ``ctx`` is a device or a list of them: each batch is split over the devices
    (and, with ``workers`` of a distributed job, over the worker processes),
    and ``updater.step`` gets the whole batch's size. The figures returned
    cover the whole batch, all workers included.

    Raises :class:`Diverged` when a batch's mean loss is not finite or exceeds
    ``max_loss`` (None: never). The check reads batch losses in groups, so the
    device is waited for only every ``CHECK_EVERY`` batches.
    """
    ctxs, workers = ctx_list(ctx), workers or Workers()
    loss_sum, correct, total = 0, 0, 0
    pending = []  # (batch number, summed loss on the device, batch size) not yet checked
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
        if max_loss is not None:
            pending.append((i, batch_loss, X.shape[0]))
            if len(pending) == CHECK_EVERY:
                check_losses(pending, max_loss, workers)
                pending = []
    if max_loss is not None and pending:
        check_losses(pending, max_loss, workers)
    sums = np.stack([np.array(loss_sum, ctx=ctxs[0]).astype('float32'),
                     np.array(correct, ctx=ctxs[0]).astype('float32'),
                     np.array(float(total), ctx=ctxs[0])])
    loss_sum, correct, total = workers.sum(sums).asnumpy().tolist()
    return loss_sum / total, correct / total


def sum_on(ctx, arrays):
    """The sum of 0-d ``arrays`` (0 for none), on ``ctx``."""
    total = None  # not 0: "0 + a" would cost one more device op per batch
    for a in arrays:
        total = a.as_in_ctx(ctx) if total is None else total + a.as_in_ctx(ctx)
    return 0 if total is None else total


def check_losses(pending, max_loss, workers=None):
    """Raise :class:`Diverged` for the first ``(batch, loss sum, size)`` out of bounds.

    With several workers the loss sums are added over them first, so every
    worker sees the same losses and stops at the same batch.
    """
    workers = workers or Workers()
    sums = workers.sum(np.stack([loss_sum for _, loss_sum, _ in pending])).asnumpy()
    for (batch, _, size), loss_sum in zip(pending, sums):  # one device wait above
        mean = float(loss_sum) / size
        if not math.isfinite(mean) or mean > max_loss:
            raise Diverged(batch, mean, max_loss)


def train(net, train_iter, test_iter, loss, updater, num_epochs, ctx, callback=None,
          wrap_batches=None, history=None, max_loss=DEFAULT_MAX_LOSS, val_iter=None,
          workers=None):
    """Train up to epoch ``num_epochs``; returns the history, a list of dicts.

    Each entry holds ``epoch``, ``train_loss``, ``train_acc``, ``test_acc`` and
    ``seconds`` (training plus evaluation), and ``val_acc`` when a validation
    iterator is given (to choose settings without looking at the test set).
    ``callback(entry)`` runs after every epoch (printing, live plots,
    checkpoints); ``wrap_batches(iterable)`` may wrap the batches of each epoch
    (a progress bar). Passing the ``history`` of an earlier run continues it
    from the epoch after its last. ``ctx`` and ``workers`` are as for
    :func:`train_epoch`.
    """
    history = list(history or [])
    for epoch in range(len(history) + 1, num_epochs + 1):
        start = time.perf_counter()
        batches = wrap_batches(train_iter) if wrap_batches else train_iter
        try:
            train_loss, train_acc = train_epoch(net, batches, loss, updater, ctx,
                                                max_loss, workers)
        except Diverged as e:
            raise Diverged(e.batch, e.loss, e.max_loss, epoch) from None
        test_acc = evaluate_accuracy(net, test_iter, ctx)
        entry = {'epoch': epoch, 'train_loss': train_loss, 'train_acc': train_acc,
                 'test_acc': test_acc}
        if val_iter is not None:
            entry['val_acc'] = evaluate_accuracy(net, val_iter, ctx)
        entry['seconds'] = time.perf_counter() - start
        history.append(entry)
        if callback is not None:
            callback(entry)
    return history
