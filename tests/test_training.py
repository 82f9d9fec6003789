"""The training loop: accuracy helpers against d2l's, and training both models on separable data."""
import math

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from gluon_softmax import training
from gluon_softmax.compose import build_model
from gluon_softmax.run.model import as_model
from gluon_softmax.data import ArrayLoader
from gluon_softmax.run.settings import Recipe

SIDE = 4  # tiny "images": 4 x 4 = 16 features
NUM_INPUTS = SIDE * SIDE


def d2l():
    """d2l's MXNet module, imported by the tests that compare with it, not at collection (it
    brings pandas and matplotlib: a second of CPU in every test process)."""
    from d2l import mxnet  # pylint: disable=import-outside-toplevel
    return mxnet


def separable(n, seed):
    """``X`` (n, 16) Gaussian and ``y`` = argmax of a fixed linear map: linearly separable."""
    M = onp.random.RandomState(123).randn(NUM_INPUTS, 10)
    X = onp.random.RandomState(seed).randn(n, NUM_INPUTS).astype(onp.float32)
    return X, (X @ M).argmax(axis=1)


def np_softmax(o):
    e = onp.exp(o - o.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_model(impl, lr):
    """(net, loss, updater) of one implementation, for NUM_INPUTS features."""
    model = build_model(Recipe(impl=impl, lr=lr, resize=SIDE), [mx.cpu()], 1)
    return model.net, model.loss, model.updater


def weights_of(net):
    """(W (inputs, outputs), b) as float64 NumPy arrays, for either implementation."""
    model = as_model(net)
    return (model.weight_matrix().astype(onp.float64),
            model.parameters()[1].asnumpy().astype(onp.float64))


def mean_loss(net, X, y):
    """Mean cross-entropy of ``net`` on (X, y), computed in NumPy from its weights."""
    W, b = weights_of(net)
    p = np_softmax(X.astype(onp.float64) @ W + b)
    return float(-onp.log(p[onp.arange(len(y)), y]).mean())


# --- accuracy -----------------------------------------------------------------------------

@pytest.mark.parametrize('seed', range(3))
def test_accuracy_agrees_with_d2l(seed):
    rng = onp.random.RandomState(seed)
    y_hat = np.array(rng.randn(17, 10), dtype='float32')
    y = np.array(rng.randint(0, 10, 17), dtype='int32')
    y_hat[:4] = 0
    y_hat[onp.arange(4), y[:4].asnumpy()] = 1  # at least four are right
    got = training.accuracy(y_hat, y)
    assert isinstance(got, float)
    assert got == d2l().accuracy(y_hat, y)
    assert got == float((y_hat.asnumpy().argmax(axis=1) == y.asnumpy()).sum()) >= 4


def test_accuracy_counts():
    y_hat = np.array([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])  # the book's example
    assert training.accuracy(y_hat, np.array([0, 2])) == 1.0
    assert training.accuracy(y_hat, np.array([2, 2])) == 2.0
    assert training.accuracy(y_hat, np.array([1, 1])) == 0.0


@pytest.mark.parametrize('impl', ['scratch', 'concise'])
def test_evaluate_accuracy_agrees_with_d2l(impl):
    X, y = separable(45, seed=1)
    net, _, _ = make_model(impl, 0.1)
    loader = ArrayLoader(X, y, 8)
    got = training.evaluate_accuracy(net, loader, mx.cpu())
    assert got == pytest.approx(d2l().evaluate_accuracy(net, loader), abs=1e-12)
    W, b = weights_of(net)
    assert got == pytest.approx(((X @ W + b).argmax(axis=1) == y).mean(), abs=1e-12)


# --- one epoch against a NumPy reference --------------------------------------------------

def test_train_epoch_matches_a_numpy_reference():
    lr, batch_size = 0.3, 16
    X, y = separable(70, seed=2)
    net, loss, updater = make_model('scratch', lr)
    W, b = weights_of(net)
    losses, correct = [], 0
    for start in range(0, len(y), batch_size):  # the book's loop, in float64 NumPy
        Xb, yb = X[start:start + batch_size].astype(onp.float64), y[start:start + batch_size]
        p = np_softmax(Xb @ W + b)
        losses.extend(-onp.log(p[onp.arange(len(yb)), yb]))
        correct += (p.argmax(axis=1) == yb).sum()
        delta = p - onp.eye(10)[yb]
        W = W - lr * (Xb.T @ delta) / len(yb)
        b = b - lr * delta.sum(axis=0) / len(yb)

    train_loss, train_acc = training.train_epoch(net, ArrayLoader(X, y, batch_size), loss,
                                                 updater, mx.cpu())
    assert train_loss == pytest.approx(onp.mean(losses), rel=1e-5)
    assert train_acc == pytest.approx(correct / len(y), abs=1e-12)
    onp.testing.assert_allclose(net.W.asnumpy(), W, rtol=1e-4, atol=1e-6)
    onp.testing.assert_allclose(net.b.asnumpy(), b, rtol=1e-4, atol=1e-6)


# --- training both models -----------------------------------------------------------------

@pytest.mark.parametrize('impl', ['scratch', 'concise'])
def test_train_reduces_the_loss_and_reports_every_epoch(impl):
    mx.random.seed(0)
    X, y = separable(1024, seed=3)
    X_test, y_test = separable(128, seed=4)
    train_iter = ArrayLoader(X, y, 64, shuffle=True, rng=onp.random.RandomState(0))
    test_iter = ArrayLoader(X_test, y_test, 32)
    net, loss, updater = make_model(impl, 0.5)
    initial_loss = mean_loss(net, X, y)
    assert initial_loss == pytest.approx(math.log(10), abs=0.2)  # small weights: ~uniform

    seen = []
    history = training.train(net, train_iter, test_iter, loss, updater,
                             training.Epochs(6, mx.cpu(), callback=seen.append))

    assert [entry['epoch'] for entry in history] == [1, 2, 3, 4, 5, 6]
    assert seen == history  # the callback got each epoch's entry, once, in order
    for entry in history:
        assert set(entry) == {'epoch', 'train_loss', 'train_acc', 'test_loss', 'test_acc',
                              'seconds'}
        assert 0 <= entry['train_acc'] <= 1 and 0 <= entry['test_acc'] <= 1
        assert entry['seconds'] > 0 and math.isfinite(entry['train_loss'])
    assert history[-1]['train_loss'] < history[0]['train_loss']
    final_loss = mean_loss(net, X, y)
    assert final_loss < 0.5 * initial_loss
    # the reported test accuracy is the model's, computed independently
    W, b = weights_of(net)
    expected_acc = ((X_test @ W + b).argmax(axis=1) == y_test).mean()
    assert history[-1]['test_acc'] == pytest.approx(expected_acc, abs=1e-12)
    assert history[-1]['test_loss'] == pytest.approx(mean_loss(net, X_test, y_test), rel=1e-4)
    assert history[-1]['test_acc'] > 0.7 and history[-1]['train_acc'] > history[0]['train_acc']


def test_train_continues_a_history():
    X, y = separable(64, seed=5)
    loader = ArrayLoader(X, y, 16)
    net, loss, updater = make_model('scratch', 0.1)
    first = training.train(net, loader, loader, loss, updater, training.Epochs(2, mx.cpu()))
    calls = []
    both = training.train(net, loader, loader, loss, updater,
                          training.Epochs(3, mx.cpu(), callback=calls.append, history=first))
    assert [e['epoch'] for e in both] == [1, 2, 3]
    assert both[:2] == first and [e['epoch'] for e in calls] == [3]


def test_epoch_fn_replaces_the_epoch_and_sees_the_loop_s_arguments():
    X, y = separable(40, seed=6)
    loader = ArrayLoader(X, y, 10)
    net, loss, updater = make_model('concise', 0.1)
    calls = []

    def epoch_fn(*args):
        calls.append(args)
        return training.train_epoch(*args)

    history = training.train(net, loader, loader, loss, updater,
                             training.Epochs(2, mx.cpu(), epoch_fn=epoch_fn))
    assert calls == [(net, loader, loss, updater, mx.cpu())] * 2
    assert [e['epoch'] for e in history] == [1, 2]


def test_evaluate_gives_the_mean_loss_and_accuracy_of_one_pass():
    X, y = separable(50, seed=7)
    net, loss, _ = make_model('scratch', 0.1)
    test_loss, test_acc = training.evaluate(net, ArrayLoader(X, y, 16), loss)
    W, b = weights_of(net)
    assert test_loss == pytest.approx(mean_loss(net, X, y), rel=1e-5)
    assert test_acc == pytest.approx(((X @ W + b).argmax(axis=1) == y).mean(), abs=1e-12)
    assert test_acc == training.evaluate_accuracy(net, ArrayLoader(X, y, 16))


def test_validation_loss_and_accuracy_are_recorded_when_asked():
    X, y = separable(40, seed=8)
    loader = ArrayLoader(X, y, 10)
    net, loss, updater = make_model('scratch', 0.1)
    entry, = training.train(net, loader, loader, loss, updater,
                            training.Epochs(1, val_iter=loader))
    assert (entry['val_loss'], entry['val_acc']) == (entry['test_loss'], entry['test_acc'])
