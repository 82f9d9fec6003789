"""The from-scratch pieces against references: NumPy, npx operators, Gluon loss and Trainer."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np, npx

from gluon_softmax import concise, scratch


def np_softmax(o):
    """Reference softmax in float64 NumPy."""
    o = onp.asarray(o, dtype=onp.float64)
    e = onp.exp(o - o.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def onehot(y, classes=10):
    return onp.eye(classes)[onp.asarray(y)]


@pytest.fixture
def rng():
    return onp.random.RandomState(0)


# --- softmax and losses -------------------------------------------------------------------

def test_softmax_rows_sum_to_one_and_match_npx(rng):
    o = np.array(rng.randn(6, 10) * 3, dtype='float32')
    p = scratch.softmax(o)
    assert p.shape == (6, 10)
    onp.testing.assert_allclose(p.sum(axis=1).asnumpy(), onp.ones(6), rtol=1e-6)
    onp.testing.assert_allclose(p.asnumpy(), npx.softmax(o, axis=1).asnumpy(), rtol=1e-5,
                                atol=1e-7)
    onp.testing.assert_allclose(p.asnumpy(), np_softmax(o.asnumpy()), rtol=1e-5, atol=1e-7)
    assert (p.asnumpy() > 0).all()


@pytest.mark.parametrize('value', [1000.0, -1000.0])
def test_softmax_is_stable_for_huge_logits(value):
    p = scratch.softmax(np.full((1, 3), value)).asnumpy()
    assert onp.isfinite(p).all()
    onp.testing.assert_allclose(p, [[1 / 3] * 3], rtol=1e-6)


def test_softmax_is_stable_for_spread_logits():
    p = scratch.softmax(np.array([[1000.0, -1000.0, 0.0]])).asnumpy()
    assert onp.isfinite(p).all()
    onp.testing.assert_allclose(p, [[1, 0, 0]], atol=1e-7)


def test_cross_entropy_matches_numpy(rng):
    probs = np_softmax(rng.randn(5, 10))
    y = onp.array([0, 3, 9, 3, 7])
    expected = -onp.log(probs[onp.arange(5), y])
    got = scratch.cross_entropy(np.array(probs, dtype='float32'), np.array(y, dtype='int32'))
    assert got.shape == (5,)
    onp.testing.assert_allclose(got.asnumpy(), expected, rtol=1e-5)


def test_cross_entropy_of_the_books_example():
    # the book's y_hat = [[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]], y = [0, 2]
    y_hat = np.array([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    got = scratch.cross_entropy(y_hat, np.array([0, 2]))
    onp.testing.assert_allclose(got.asnumpy(), [-onp.log(0.1), -onp.log(0.5)], rtol=1e-6)


def test_log_softmax_matches_npx(rng):
    o = np.array(rng.randn(7, 10) * 5, dtype='float32')
    onp.testing.assert_allclose(scratch.log_softmax(o).asnumpy(),
                                npx.log_softmax(o, axis=1).asnumpy(), rtol=1e-5, atol=2e-5)
    onp.testing.assert_allclose(scratch.log_softmax(o).asnumpy(),
                                onp.log(np_softmax(o.asnumpy())), rtol=1e-5, atol=2e-5)
    extreme = np.array([[1000.0, -1000.0, 0.0]])
    onp.testing.assert_allclose(scratch.log_softmax(extreme).asnumpy(), [[0, -2000, -1000]],
                                rtol=1e-6)


def test_softmax_cross_entropy_matches_gluon_loss(rng):
    o = np.array(rng.randn(16, 10) * 4, dtype='float32')
    y = np.array(rng.randint(0, 10, 16), dtype='int32')
    expected = gluon.loss.SoftmaxCrossEntropyLoss()(o, y)
    got = scratch.softmax_cross_entropy(o, y)
    assert got.shape == (16,)
    onp.testing.assert_allclose(got.asnumpy(), expected.asnumpy(), rtol=1e-5, atol=1e-6)
    # and the book's two-step version where it is finite
    onp.testing.assert_allclose(got.asnumpy(),
                                scratch.cross_entropy(scratch.softmax(o), y).asnumpy(),
                                rtol=1e-4, atol=1e-5)


def test_softmax_cross_entropy_is_finite_for_extreme_logits():
    o = np.array([[1000.0, -1000.0, 0.0], [1000.0, -1000.0, 0.0]])
    y = np.array([1, 0])
    got = scratch.softmax_cross_entropy(o, y).asnumpy()
    assert onp.isfinite(got).all()
    onp.testing.assert_allclose(got, [2000.0, 0.0], rtol=1e-6, atol=1e-6)
    # where the two-step version overflows to infinity
    assert onp.isinf(scratch.cross_entropy(scratch.softmax(o), y).asnumpy()[0])


# --- gradients ----------------------------------------------------------------------------

def test_gradient_with_respect_to_logits_is_softmax_minus_onehot(rng):
    o = np.array(rng.randn(8, 10), dtype='float32')
    y = rng.randint(0, 10, 8)
    o.attach_grad()
    with autograd.record():
        l = scratch.softmax_cross_entropy(o, np.array(y, dtype='int32'))
    l.backward()  # sums the per-example losses
    expected = np_softmax(o.asnumpy()) - onehot(y)
    onp.testing.assert_allclose(o.grad.asnumpy(), expected, rtol=1e-4, atol=1e-6)


def test_parameter_gradients_of_the_model(rng):
    net = scratch.SoftmaxRegressionScratch(num_inputs=784, num_outputs=10)
    X = rng.rand(6, 1, 28, 28).astype(onp.float32)
    y = rng.randint(0, 10, 6)
    with autograd.record():
        l = scratch.softmax_cross_entropy(net(np.array(X)), np.array(y, dtype='int32'))
    l.backward()
    flat = X.reshape(6, 784).astype(onp.float64)
    logits = flat @ net.W.asnumpy().astype(onp.float64) + net.b.asnumpy()
    delta = np_softmax(logits) - onehot(y)  # (6, 10)
    onp.testing.assert_allclose(net.W.grad.asnumpy(), flat.T @ delta, rtol=1e-4, atol=1e-5)
    onp.testing.assert_allclose(net.b.grad.asnumpy(), delta.sum(axis=0), rtol=1e-4, atol=1e-5)


# --- the model ----------------------------------------------------------------------------

def test_model_output_is_x_w_plus_b(rng):
    net = scratch.SoftmaxRegressionScratch()
    net.b[:] = np.array(rng.randn(10), dtype='float32')
    X = rng.rand(3, 1, 28, 28).astype(onp.float32)
    expected = X.reshape(3, 784) @ net.W.asnumpy() + net.b.asnumpy()
    out = net(np.array(X))
    assert out.shape == (3, 10)
    onp.testing.assert_allclose(out.asnumpy(), expected, rtol=1e-4, atol=1e-5)
    onp.testing.assert_allclose(net.predict_proba(np.array(X)).asnumpy(), np_softmax(expected),
                                rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('ctx', [mx.cpu(), mx.cpu(1)], ids=str)
def test_model_initialisation(ctx):
    mx.random.seed(0)
    net = scratch.SoftmaxRegressionScratch(ctx=ctx)
    W, b = net.W, net.b
    assert W.shape == (784, 10) and b.shape == (10,)
    assert 0.009 < float(W.asnumpy().std()) < 0.011
    assert abs(float(W.asnumpy().mean())) < 0.001
    assert (b.asnumpy() == 0).all()
    assert len(net.parameters()) == 2
    assert all(p is q for p, q in zip(net.parameters(), [W, b]))
    for param in net.parameters():
        assert param.ctx == ctx
        assert param.grad is not None and param.grad.shape == param.shape
        assert param.grad.ctx == ctx


def test_model_sigma_is_used():
    mx.random.seed(0)
    net = scratch.SoftmaxRegressionScratch(num_inputs=50, num_outputs=40, sigma=0.5)
    assert net.W.shape == (50, 40)
    assert 0.45 < float(net.W.asnumpy().std()) < 0.55


# --- the updater --------------------------------------------------------------------------

def test_sgd_updates_param_minus_lr_grad_over_batch_size(rng):
    params = [np.array(rng.randn(4, 3), dtype='float32'), np.array(rng.randn(3),
                                                                   dtype='float32')]
    grads = [rng.randn(4, 3).astype(onp.float32), rng.randn(3).astype(onp.float32)]
    before = [p.asnumpy().copy() for p in params]
    for p, g in zip(params, grads):
        p.attach_grad()
        p.grad[:] = np.array(g)
    scratch.sgd(params, 0.3, 8)
    for p, b, g in zip(params, before, grads):
        expected = b.astype(onp.float64) - 0.3 * g.astype(onp.float64) / 8
        onp.testing.assert_allclose(p.asnumpy(), expected, rtol=1e-6, atol=1e-7)


def test_sgd_class_steps_like_the_function(rng):
    net = scratch.SoftmaxRegressionScratch(num_inputs=5, num_outputs=3)
    updater = scratch.SGD(net.parameters(), lr=0.5)
    W0, b0 = net.W.asnumpy().copy(), net.b.asnumpy().copy()
    net.W.grad[:] = np.ones((5, 3))
    net.b.grad[:] = np.full(3, 2.0)
    updater.step(4)
    onp.testing.assert_allclose(net.W.asnumpy(), W0 - 0.5 * 1 / 4, rtol=1e-6)
    onp.testing.assert_allclose(net.b.asnumpy(), b0 - 0.5 * 2 / 4, rtol=1e-6)


def test_one_scratch_step_equals_one_trainer_step(rng):
    lr, batch_size = 0.1, 16
    X = np.array(rng.rand(batch_size, 1, 28, 28), dtype='float32')
    y = np.array(rng.randint(0, 10, batch_size), dtype='int32')

    mine = scratch.SoftmaxRegressionScratch()
    W0 = mine.W.asnumpy().copy()
    net = concise.build_net(hybridize=False)
    dense = net[0]
    dense.weight.set_data(np.array(W0.T))  # Dense keeps (num_outputs, num_inputs)
    dense.bias.set_data(np.zeros(10))
    trainer = concise.build_trainer(net, lr)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()

    # same starting point gives the same logits
    onp.testing.assert_allclose(net(X).asnumpy(), mine(X).asnumpy(), rtol=1e-5, atol=1e-6)

    updater = scratch.SGD(mine.parameters(), lr)
    with autograd.record():
        l = scratch.softmax_cross_entropy(mine(X), y)
    l.backward()
    updater.step(batch_size)

    with autograd.record():
        l = loss(net(X), y)
    l.backward()
    trainer.step(batch_size)

    assert not onp.allclose(mine.W.asnumpy(), W0)  # the step did something
    onp.testing.assert_allclose(mine.W.asnumpy(), dense.weight.data().asnumpy().T,
                                rtol=0, atol=1e-6)
    onp.testing.assert_allclose(mine.b.asnumpy(), dense.bias.data().asnumpy(), rtol=0,
                                atol=1e-6)


# --- saving and loading -------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    a = scratch.SoftmaxRegressionScratch()
    a.b[:] = np.arange(10)
    path = str(tmp_path / 'params.npz')
    a.save_parameters(path)
    b = scratch.SoftmaxRegressionScratch()
    W_array = b.W
    assert not onp.array_equal(a.W.asnumpy(), b.W.asnumpy())
    b.load_parameters(path)
    onp.testing.assert_array_equal(b.W.asnumpy(), a.W.asnumpy())
    onp.testing.assert_array_equal(b.b.asnumpy(), onp.arange(10))
    assert b.W is W_array  # loaded in place: an updater's references stay valid


def test_load_of_wrong_shapes_raises_value_error(tmp_path):
    path = str(tmp_path / 'small.npz')
    scratch.SoftmaxRegressionScratch(num_inputs=20, num_outputs=10).save_parameters(path)
    net = scratch.SoftmaxRegressionScratch()
    W0 = net.W.asnumpy().copy()
    with pytest.raises(ValueError, match='shape'):
        net.load_parameters(path)
    onp.testing.assert_array_equal(net.W.asnumpy(), W0)


def test_load_of_wrong_names_raises_value_error(tmp_path):
    path = str(tmp_path / 'other.npz')
    npx.save(path, {'weight': np.zeros((784, 10)), 'b': np.zeros(10)})
    with pytest.raises(ValueError):
        scratch.SoftmaxRegressionScratch().load_parameters(path)


ZERO_ROWS = '''
import gluon_softmax  # first: on Python 3.12 it restores numpy.bool for MXNet
import mxnet as mx
from mxnet import autograd, np, npx
npx.set_np()
from gluon_softmax import scratch
o, y = np.zeros((0, 10)), np.zeros(0, dtype='int32')
o.attach_grad()
with autograd.record():
    l = scratch.softmax_cross_entropy(o, y)
l.backward()
shapes = [scratch.softmax(o).shape, scratch.log_softmax(o).shape,
          scratch.cross_entropy(scratch.softmax(o), y).shape, l.shape, o.grad.shape]
mx.nd.waitall()  # MXNet reports a failed operator here, or at exit
print(shapes)
'''


def test_zero_rows_give_empty_results():
    """MXNet 1.9.1's sum fails on (0, 10) arrays at the next wait: scratch must not call it."""
    import sys
    import procs
    # in a process of its own (a fork of the tests' zygote), where a failure cannot end pytest
    result = procs.run([sys.executable, '-c', ZERO_ROWS], code_may_fork=True)
    assert result.returncode == 0 and 'MXNetError' not in result.stderr, result.stderr
    assert result.stdout.strip() == '[(0, 10), (0, 10), (0,), (0,), (0, 10)]'
