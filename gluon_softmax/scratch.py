"""Softmax regression from scratch: ``mxnet.np`` arrays, ``attach_grad`` and ``autograd`` only."""
from mxnet import np, npx


def softmax(X):
    """Row-wise softmax of a (batch, classes) array, stable for any finite input.

    Subtracting the row maximum leaves the result unchanged (it cancels in the
    ratio) but keeps every ``exp`` argument <= 0, so nothing overflows.
    """
    X_exp = np.exp(X - X.max(axis=1, keepdims=True))
    return X_exp / X_exp.sum(axis=1, keepdims=True)


def cross_entropy(y_hat, y):
    """Per-example cross-entropy of predicted probabilities ``y_hat`` and labels ``y``.

    The book's definition, ``-log y_hat[i, y_i]``; it is infinite when a
    probability underflows to 0, which is why training uses
    :func:`softmax_cross_entropy` on logits instead.
    """
    return -np.log(pick(y_hat, y))


def pick(y_hat, y):
    """``y_hat[i, y[i]]`` for every row ``i``."""
    return npx.pick(y_hat, y.astype('int32'), axis=1)


def log_softmax(o):
    """``log softmax(o)`` via the LogSumExp trick: ``o - max - log sum exp(o - max)``."""
    shifted = o - o.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(o, y):
    """Per-example cross-entropy computed from logits ``o``; finite for any finite logits."""
    return -pick(log_softmax(o), y)


def sgd(params, lr, batch_size):
    """Minibatch SGD: ``param -= lr * grad / batch_size`` (the loss is summed over the batch)."""
    for param in params:
        param[:] = param - lr * param.grad / batch_size


class SGD:
    """:func:`sgd` behind the ``step(batch_size)`` interface of ``gluon.Trainer``.

    ``params`` holds arrays, or, for a model on several devices, one list per
    parameter of its copies (:meth:`SoftmaxRegressionScratch.parameter_copies`).
    Then each step sums the copies' gradients (and, given the ``workers`` of a
    distributed job, the workers' sums), updates the first copy and copies it
    to the others: the same update as on one device.
    """

    def __init__(self, params, lr, workers=None):
        self.params = [list(p) if isinstance(p, (list, tuple)) else [p] for p in params]
        self.lr = lr
        self.workers = workers

    def step(self, batch_size):
        """Update every parameter from its gradient."""
        distributed = self.workers is not None and self.workers.num_workers > 1
        if not distributed and all(len(copies) == 1 for copies in self.params):
            sgd([copies[0] for copies in self.params], self.lr, batch_size)
            return
        for copies in self.params:
            param = copies[0]
            grad = param.grad
            for copy in copies[1:]:
                grad = grad + copy.grad.as_in_ctx(param.ctx)
            if distributed:
                grad = self.workers.sum(grad)
            param[:] = param - self.lr * grad / batch_size
            for copy in copies[1:]:
                copy[:] = param.as_in_ctx(copy.ctx)

    def __repr__(self):
        return f'SGD(lr={self.lr}, params={len(self.params)})'


class SoftmaxRegressionScratch:
    """``softmax(X W + b)``: ``W ~ N(0, sigma^2)`` of shape (num_inputs, num_outputs), ``b = 0``.

    Calling the model returns the logits ``X W + b``; :func:`softmax` turns them
    into probabilities, and training pairs them with :func:`softmax_cross_entropy`.
    ``ctx`` may be a list of devices: each then holds a copy of ``W`` and ``b``,
    and a batch is multiplied by the copy on its own device.
    """

    def __init__(self, num_inputs=784, num_outputs=10, sigma=0.01, ctx=None):
        self.num_inputs, self.num_outputs, self.sigma = num_inputs, num_outputs, sigma
        ctxs = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
        self.W = np.random.normal(0, sigma, (num_inputs, num_outputs), ctx=ctxs[0])
        self.b = np.zeros(num_outputs, ctx=ctxs[0])
        # one [W, b] per device, all equal; the first is the one saved and reported
        self.copies = [[self.W, self.b]] + [[self.W.copyto(c), self.b.copyto(c)]
                                            for c in ctxs[1:]]
        for copy in self.copies:
            for param in copy:
                param.attach_grad()

    def __call__(self, X):
        W, b = self._copy_on(X.ctx)
        # (batch, 1, 28, 28) -> (batch, 784) @ (784, 10) -> (batch, 10)
        return np.dot(X.reshape(-1, self.num_inputs), W) + b

    def _copy_on(self, ctx):
        """The ``[W, b]`` held on ``ctx`` (with one device, that device's)."""
        if len(self.copies) == 1:
            return self.copies[0]
        for copy in self.copies:
            if copy[0].ctx == ctx:
                return copy
        raise ValueError(f'input on {ctx}, but the model is on '
                         f'{", ".join(str(c[0].ctx) for c in self.copies)}')

    def predict_proba(self, X):
        """Class probabilities, ``softmax(X W + b)``."""
        return softmax(self(X))

    def parameters(self):
        """The trainable arrays, in a fixed order: ``[W, b]`` (on the first device)."""
        return [self.W, self.b]

    def parameter_copies(self):
        """Per parameter, its copies on every device: ``[[W, W', ...], [b, b', ...]]``."""
        return [list(copies) for copies in zip(*self.copies)]

    def save_parameters(self, path):
        """Write ``W`` and ``b`` to ``path`` (MXNet's ``npx.save`` format)."""
        npx.save(path, {'W': self.W, 'b': self.b})

    def load_parameters(self, path):
        """Read ``W`` and ``b`` written by :meth:`save_parameters` into the existing arrays.

        Copying in place (on every device) keeps the arrays an updater already
        holds valid.
        """
        loaded = npx.load(path)
        if not isinstance(loaded, dict) or set(loaded) != {'W', 'b'}:
            found = sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__
            raise ValueError(f'{path}: expected arrays W and b, found {found}')
        for name in ('W', 'b'):
            if loaded[name].shape != getattr(self, name).shape:
                raise ValueError(f'{path}: {name} has shape {loaded[name].shape}, '
                                 f'expected {getattr(self, name).shape}')
        for copy in self.copies:
            for name, param in zip(('W', 'b'), copy):
                param[:] = loaded[name].as_in_ctx(param.ctx)

    def __repr__(self):
        ctxs = ', '.join(str(copy[0].ctx) for copy in self.copies)
        return (f'SoftmaxRegressionScratch(num_inputs={self.num_inputs}, '
                f'num_outputs={self.num_outputs}, ctx={ctxs})')
