"""One training loop for both models.

The contract, stated once: ``loss(y_hat, y)`` returns one loss per example;
``l.backward()`` sums them; ``updater.step(batch_size)`` divides by the batch
size. A ``gluon.Trainer`` and :class:`gluon_softmax.scratch.SGD` both fit it.
"""
import math
import time

from mxnet import autograd
from mxnet import np

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
    """Fraction of examples in ``data_iter`` that ``net`` classifies correctly."""
    correct, total = 0, 0
    for X, y in data_iter:
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        # summed on the device; read once at the end, so batches queue without waiting
        correct = correct + correct_count(net(X), y)
        total += y.shape[0]
    return float(correct.item()) / total


def train_epoch(net, train_iter, loss, updater, ctx, max_loss=DEFAULT_MAX_LOSS):
    """One pass over ``train_iter``; returns ``(mean loss per example, train accuracy)``.

    Raises :class:`Diverged` when a batch's mean loss is not finite or exceeds
    ``max_loss`` (None: never). The check reads batch losses in groups, so the
    device is waited for only every ``CHECK_EVERY`` batches.
    """
    loss_sum, correct, total = 0, 0, 0
    pending = []  # (batch number, summed loss on the device, batch size) not yet checked
    for i, (X, y) in enumerate(train_iter, 1):
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        with autograd.record():
            y_hat = net(X)
            l = loss(y_hat, y)
        l.backward()
        updater.step(X.shape[0])
        batch_loss = l.sum()
        loss_sum = loss_sum + batch_loss
        correct = correct + correct_count(y_hat, y)
        total += y.shape[0]
        if max_loss is not None:
            pending.append((i, batch_loss, y.shape[0]))
            if len(pending) == CHECK_EVERY:
                check_losses(pending, max_loss)
                pending = []
    if max_loss is not None and pending:
        check_losses(pending, max_loss)
    return float(loss_sum.item()) / total, float(correct.item()) / total


def check_losses(pending, max_loss):
    """Raise :class:`Diverged` for the first ``(batch, loss sum, size)`` out of bounds."""
    sums = np.stack([loss_sum for _, loss_sum, _ in pending]).asnumpy()  # one device wait
    for (batch, _, size), loss_sum in zip(pending, sums):
        mean = float(loss_sum) / size
        if not math.isfinite(mean) or mean > max_loss:
            raise Diverged(batch, mean, max_loss)


def train(net, train_iter, test_iter, loss, updater, num_epochs, ctx, callback=None,
          wrap_batches=None, history=None, max_loss=DEFAULT_MAX_LOSS, val_iter=None):
    """Train up to epoch ``num_epochs``; returns the history, a list of dicts.

    Each entry holds ``epoch``, ``train_loss``, ``train_acc``, ``test_acc`` and
    ``seconds`` (training plus evaluation), and ``val_acc`` when a validation
    iterator is given (to choose settings without looking at the test set).
    ``callback(entry)`` runs after every epoch (printing, live plots,
    checkpoints); ``wrap_batches(iterable)`` may wrap the batches of each epoch
    (a progress bar). Passing the ``history`` of an earlier run continues it
    from the epoch after its last.
    """
    history = list(history or [])
    for epoch in range(len(history) + 1, num_epochs + 1):
        start = time.perf_counter()
        batches = wrap_batches(train_iter) if wrap_batches else train_iter
        try:
            train_loss, train_acc = train_epoch(net, batches, loss, updater, ctx, max_loss)
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
