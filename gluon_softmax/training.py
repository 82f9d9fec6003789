"""One training loop for both models.

The contract, stated once: ``loss(y_hat, y)`` returns one loss per example;
``l.backward()`` sums them; ``updater.step(batch_size)`` divides by the batch
size. A ``gluon.Trainer`` and :class:`gluon_softmax.scratch.SGD` both fit it.
"""
import time

from mxnet import autograd


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


def train_epoch(net, train_iter, loss, updater, ctx):
    """One pass over ``train_iter``; returns ``(mean loss per example, train accuracy)``."""
    loss_sum, correct, total = 0, 0, 0
    for X, y in train_iter:
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        with autograd.record():
            y_hat = net(X)
            l = loss(y_hat, y)
        l.backward()
        updater.step(X.shape[0])
        loss_sum = loss_sum + l.sum()
        correct = correct + correct_count(y_hat, y)
        total += y.shape[0]
    return float(loss_sum.item()) / total, float(correct.item()) / total


def train(net, train_iter, test_iter, loss, updater, num_epochs, ctx, callback=None,
          wrap_batches=None, first_epoch=1, history=None):
    """Train for epochs ``first_epoch..num_epochs``; returns the history, a list of dicts.

    Each entry holds ``epoch``, ``train_loss``, ``train_acc``, ``test_acc`` and
    ``seconds`` (training plus evaluation). ``callback(entry)`` runs after every
    epoch (printing, live plots); ``wrap_batches(iterable)`` may wrap the batches
    of each epoch (a progress bar).
    """
    history = list(history or [])
    for epoch in range(first_epoch, num_epochs + 1):
        start = time.perf_counter()
        batches = wrap_batches(train_iter) if wrap_batches else train_iter
        train_loss, train_acc = train_epoch(net, batches, loss, updater, ctx)
        test_acc = evaluate_accuracy(net, test_iter, ctx)
        entry = {'epoch': epoch, 'train_loss': train_loss, 'train_acc': train_acc,
                 'test_acc': test_acc, 'seconds': time.perf_counter() - start}
        history.append(entry)
        if callback is not None:
            callback(entry)
    return history
