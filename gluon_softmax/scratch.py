"""Softmax regression from scratch: ``mxnet.np`` arrays, ``attach_grad`` and ``autograd`` only."""
import mxnet as mx
from mxnet import np, npx


def row_sums(X):
    """The sum of each row of a (batch, k) array, as a (batch, 1) column."""
    if X.shape[0] == 0:
        # MXNet 1.9.1's sum fails on zero rows (asynchronously, at the next wait)
        return np.zeros((0, 1), ctx=X.ctx)
    return X.sum(axis=1, keepdims=True)


def row_maxes(X):
    """The maximum of each row of a (batch, k) array, as a (batch, 1) column."""
    if X.shape[0] == 0:
        return np.zeros((0, 1), ctx=X.ctx)  # max's gradient fails on zero rows, as sum does
    return X.max(axis=1, keepdims=True)


def softmax(X):
    """Row-wise softmax of a (batch, classes) array, stable for any finite input.

    Subtracting the row maximum leaves the result unchanged (it cancels in the
    ratio) but keeps every ``exp`` argument <= 0, so nothing overflows.
    """
    X_exp = np.exp(X - row_maxes(X))
    return X_exp / row_sums(X_exp)


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
    shifted = o - row_maxes(o)
    return shifted - np.log(row_sums(np.exp(shifted)))


def softmax_cross_entropy(o, y):
    """Per-example cross-entropy computed from logits ``o``; finite for any finite logits."""
    return -pick(log_softmax(o), y)


def sgd(params, lr, batch_size):
    """Minibatch SGD: ``param -= lr * grad / batch_size`` (the loss is summed over the batch)."""
    for param in params:
        param[:] = param - lr * param.grad / batch_size


class SGD:
    """:func:`sgd` behind the ``step(batch_size)`` interface of ``gluon.Trainer``."""

    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def step(self, batch_size):
        """Update every parameter from its gradient."""
        sgd(self.params, self.lr, batch_size)

    def __repr__(self):
        return f'SGD(lr={self.lr}, params={len(self.params)})'


class SoftmaxRegressionScratch:
    """``softmax(X W + b)``: ``W ~ N(0, sigma^2)`` of shape (num_inputs, num_outputs), ``b = 0``.

    Calling the model returns the logits ``X W + b``; :func:`softmax` turns them
    into probabilities, and training pairs them with :func:`softmax_cross_entropy`.
    """

    def __init__(self, num_inputs=784, num_outputs=10, sigma=0.01, ctx=None):
        self.num_inputs, self.num_outputs, self.sigma = num_inputs, num_outputs, sigma
        ctx = ctx or mx.cpu()
        self.W = np.random.normal(0, sigma, (num_inputs, num_outputs), ctx=ctx)
        self.b = np.zeros(num_outputs, ctx=ctx)
        for param in self.parameters():
            param.attach_grad()

    def __call__(self, X):
        # (batch, 1, 28, 28) -> (batch, 784) @ (784, 10) -> (batch, 10)
        return np.dot(X.reshape(-1, self.num_inputs), self.W) + self.b

    def predict_proba(self, X):
        """Class probabilities, ``softmax(X W + b)``."""
        return softmax(self(X))

    def parameters(self):
        """The trainable arrays, in a fixed order: ``[W, b]``."""
        return [self.W, self.b]

    def save_parameters(self, path):
        """Write ``W`` and ``b`` to ``path`` (MXNet's ``npx.save`` format)."""
        npx.save(path, {'W': self.W, 'b': self.b})

    def load_parameters(self, path):
        """Read ``W`` and ``b`` written by :meth:`save_parameters` into the existing arrays.

        Copying in place keeps the arrays an updater already holds valid.
        """
        loaded = npx.load(path)
        if not isinstance(loaded, dict) or set(loaded) != {'W', 'b'}:
            found = sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__
            raise ValueError(f'{path}: expected arrays W and b, found {found}')
        for name, param in (('W', self.W), ('b', self.b)):
            if loaded[name].shape != param.shape:
                raise ValueError(f'{path}: {name} has shape {loaded[name].shape}, '
                                 f'expected {param.shape}')
            param[:] = loaded[name].as_in_ctx(param.ctx)

    def __repr__(self):
        return (f'SoftmaxRegressionScratch(num_inputs={self.num_inputs}, '
                f'num_outputs={self.num_outputs}, ctx={self.W.ctx})')
