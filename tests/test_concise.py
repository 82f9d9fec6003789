"""The concise model: Dense net, Gluon loss, Trainer."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np

from gluon_softmax import concise


def np_softmax(o):
    e = onp.exp(o - o.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def rng():
    return onp.random.RandomState(0)


@pytest.mark.parametrize('hybridize', [True, False])
def test_net_outputs_logits_of_shape_batch_by_10(rng, hybridize):
    net = concise.build_net(hybridize=hybridize)
    X = rng.rand(5, 1, 28, 28).astype(onp.float32)
    out = net(np.array(X))
    assert out.shape == (5, 10)
    W, b = net[0].weight.data().asnumpy(), net[0].bias.data().asnumpy()
    onp.testing.assert_allclose(out.asnumpy(), X.reshape(5, 784) @ W.T + b, rtol=1e-4,
                                atol=1e-5)


@pytest.mark.parametrize('ctx', [mx.cpu(), mx.cpu(1)], ids=str)
def test_net_initialisation(ctx):
    mx.random.seed(0)
    net = concise.build_net(ctx=ctx)
    params = list(net.collect_params().values())
    assert len(params) == 2
    weight, bias = net[0].weight, net[0].bias
    assert weight.shape == (10, 784) and bias.shape == (10,)  # created at once (in_units)
    w = weight.data(ctx).asnumpy()
    assert 0.009 < float(w.std()) < 0.011
    assert abs(float(w.mean())) < 0.001
    assert (bias.data(ctx).asnumpy() == 0).all()
    for param in params:
        assert param.list_ctx() == [ctx]
    assert net(np.zeros((2, 1, 28, 28), ctx=ctx)).ctx == ctx


def test_net_sizes_and_sigma_are_used():
    mx.random.seed(0)
    net = concise.build_net(num_outputs=30, num_inputs=40, sigma=0.5)
    assert net[0].weight.shape == (30, 40)
    assert 0.45 < float(net[0].weight.data().asnumpy().std()) < 0.55
    assert net(np.ones((3, 40))).shape == (3, 30)


@pytest.mark.parametrize('hybridize', [True, False])
def test_loss_is_per_example_cross_entropy(rng, hybridize):
    loss = concise.build_loss(hybridize=hybridize)
    o = rng.randn(6, 10).astype(onp.float32) * 3
    y = rng.randint(0, 10, 6)
    l = loss(np.array(o), np.array(y, dtype='int32'))
    assert l.shape == (6,)
    expected = -onp.log(np_softmax(o.astype(onp.float64))[onp.arange(6), y])
    onp.testing.assert_allclose(l.asnumpy(), expected, rtol=1e-5, atol=1e-5)


def test_loss_is_finite_for_extreme_logits():
    l = concise.build_loss()(np.array([[1000.0, -1000.0, 0.0]]), np.array([1]))
    onp.testing.assert_allclose(l.asnumpy(), [2000.0], rtol=1e-6)


@pytest.mark.parametrize('hybridize', [True, False])
def test_trainer_step_is_sgd(rng, hybridize):
    lr, batch_size = 0.2, 8
    net = concise.build_net(hybridize=hybridize)
    loss = concise.build_loss(hybridize=hybridize)
    trainer = concise.build_trainer(net, lr)
    X = np.array(rng.rand(batch_size, 1, 28, 28), dtype='float32')
    y = np.array(rng.randint(0, 10, batch_size), dtype='int32')
    with autograd.record():
        l = loss(net(X), y)
    l.backward()
    params = [net[0].weight, net[0].bias]
    before = [p.data().asnumpy().astype(onp.float64) for p in params]
    grads = [p.grad().asnumpy().astype(onp.float64) for p in params]
    assert all(onp.abs(g).max() > 0 for g in grads)
    trainer.step(batch_size)
    for p, b, g in zip(params, before, grads):
        onp.testing.assert_allclose(p.data().asnumpy(), b - lr * g / batch_size, rtol=0,
                                    atol=1e-7)
    # the gradient itself is the summed cross-entropy's: X^T (softmax - onehot)
    flat = X.asnumpy().reshape(batch_size, 784).astype(onp.float64)
    delta = np_softmax(flat @ before[0].T + before[1]) - onp.eye(10)[y.asnumpy()]
    onp.testing.assert_allclose(grads[0], delta.T @ flat, rtol=1e-4, atol=1e-5)
