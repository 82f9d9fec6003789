"""One training loop for both models, in the book's shape.

The contract, stated once: ``loss(y_hat, y)`` returns one loss per example;
``l.backward()`` sums them; ``updater.step(batch_size)`` divides by the batch
size. A ``gluon.Trainer`` and :class:`gluon_softmax.scratch.SGD` both fit it.
"""
import time

import mxnet as mx
from mxnet import autograd, np, npx


def correct_count(y_hat, y):
    """Number of rows whose arg-max matches the label, as a 0-d array on the device."""
    return (y_hat.argmax(axis=1).astype(y.dtype) == y).sum()


def accuracy(y_hat, y):
    """Number of correct predictions (a float), as in the book."""
    return float(correct_count(y_hat, y).item())


def evaluate(net, data_iter, loss, ctx=mx.cpu()):
    """``(mean loss per example, accuracy)`` of ``net`` over ``data_iter``, in one pass."""
    loss_sum, correct, total = 0.0, 0.0, 0
    for X, y in data_iter:
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        y_hat = net(X)
        # summed on the device; read once at the end, so batches queue without waiting
        loss_sum = loss_sum + loss(y_hat, y).sum()
        correct = correct + correct_count(y_hat, y)
        total += y.shape[0]
    return float(loss_sum) / total, float(correct) / total


def evaluate_accuracy(net, data_iter, ctx=mx.cpu()):
    """Fraction of examples in ``data_iter`` that ``net`` classifies correctly."""
    correct, total = 0.0, 0
    for X, y in data_iter:
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        correct = correct + correct_count(net(X), y)
        total += y.shape[0]
    return float(correct) / total


def predict(net, data_iter, ctx=mx.cpu()):
    """``(labels, predicted classes, probability of each prediction)`` of ``data_iter``, NumPy."""
    ys, y_hats, probs = [], [], []
    for X, y in data_iter:
        P = npx.softmax(net(X.as_in_ctx(ctx)))  # (batch, 10) probabilities
        # arg-max and max stay on the device; one copy of each to the host at the end
        ys.append(y.as_in_ctx(ctx).astype('int64'))
        y_hats.append(P.argmax(axis=1).astype('int64'))
        probs.append(P.max(axis=1))
    if not ys:
        raise ValueError('the test set is empty')
    return tuple(np.concatenate(parts).asnumpy() for parts in (ys, y_hats, probs))


def train_epoch(net, train_iter, loss, updater, ctx=mx.cpu()):
    """One pass over ``train_iter``; returns ``(mean loss per example, train accuracy)``."""
    loss_sum, correct, total = 0.0, 0.0, 0
    for X, y in train_iter:
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        with autograd.record():
            y_hat = net(X)  # (batch, 1, 28, 28) -> (batch, 10) logits
            l = loss(y_hat, y)  # (batch,): one loss per example
        l.backward()  # gradients of the summed loss
        updater.step(X.shape[0])  # the step divides by the batch size
        # sums stay on the device: reading them here would wait for every batch
        loss_sum = loss_sum + l.sum()
        correct = correct + correct_count(y_hat, y)
        total += y.shape[0]
    return float(loss_sum) / total, float(correct) / total


class Epochs:
    """How :func:`train` runs its epochs, besides the model and the data.

    Up to epoch ``num_epochs``, on ``ctx``. ``callback(entry)`` runs after every
    epoch (printing, live plots). A ``history`` of an earlier run is continued
    from the epoch after its last. ``val_iter``, when given, is evaluated too
    (to choose settings without looking at the test set). ``epoch_fn`` trains
    one epoch, with the signature of :func:`train_epoch`, which it defaults to.
    """

    def __init__(self, num_epochs, ctx=None, callback=None, history=None, val_iter=None,
                 epoch_fn=train_epoch):
        self.num_epochs, self.ctx = num_epochs, mx.cpu() if ctx is None else ctx
        self.callback, self.history = callback, list(history or [])
        self.val_iter, self.epoch_fn = val_iter, epoch_fn

    def __repr__(self):
        return f'Epochs({self.num_epochs}, {self.ctx}, after epoch {len(self.history)})'


def train(net, train_iter, test_iter, loss, updater, epochs):
    """Train for ``epochs`` (a number of epochs, on the CPU, or :class:`Epochs`); returns the
    history, a list of dicts.

    Each entry holds ``epoch``, ``train_loss``, ``train_acc``, ``test_loss``,
    ``test_acc`` and ``seconds`` (training plus evaluation), and ``val_loss``,
    ``val_acc`` when :class:`Epochs` names a validation iterator.
    """
    run = epochs if isinstance(epochs, Epochs) else Epochs(epochs)
    history, ctx = list(run.history), run.ctx
    for epoch in range(len(history) + 1, run.num_epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc = run.epoch_fn(net, train_iter, loss, updater, ctx)
        test_loss, test_acc = evaluate(net, test_iter, loss, ctx)
        entry = {'epoch': epoch, 'train_loss': train_loss, 'train_acc': train_acc,
                 'test_loss': test_loss, 'test_acc': test_acc}
        if run.val_iter is not None:
            entry['val_loss'], entry['val_acc'] = evaluate(net, run.val_iter, loss, ctx)
        entry['seconds'] = time.perf_counter() - start
        history.append(entry)
        if run.callback is not None:
            run.callback(entry)
    return history
