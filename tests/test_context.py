"""Device specs: parsing, rejecting malformed ones, GPUs only where MXNet has them."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from gluon_softmax import training
from gluon_softmax.compose import build_model
from gluon_softmax.data import set_seed
from gluon_softmax.scale.context import ContextError, parse_ctx, try_gpu
from gluon_softmax.data import ArrayLoader
from gluon_softmax.scale.parallel import DataParallel
from gluon_softmax.run.settings import Recipe

NUM_GPUS = mx.context.num_gpus()
cpu_build_only = pytest.mark.skipif(NUM_GPUS > 0, reason='checks the CPU build (no GPU seen)')


@pytest.mark.parametrize('spec, expected', [
    ('cpu', [mx.cpu()]),
    ('cpu:0', [mx.cpu(0)]),
    ('cpu:1', [mx.cpu(1)]),
    ('CPU', [mx.cpu()]),
    (' cpu ', [mx.cpu()]),
    ('cpu:0,cpu:1', [mx.cpu(0), mx.cpu(1)]),
    ('cpu:1, cpu:2', [mx.cpu(1), mx.cpu(2)]),
], ids=repr)
def test_parse_cpu_specs(spec, expected):
    got = parse_ctx(spec)
    assert got == expected
    assert all(isinstance(c, mx.Context) for c in got)


@pytest.mark.parametrize('spec', ['tpu', 'cpu:x', '', '   ', 'cpu:', 'cpu,cpu', 'cpu:0,cpu',
                                  'cpu:-1', 'cpu:1:2', ',', 'cpu,', 'gpux', None, 0])
def test_malformed_specs_raise_context_error(spec):
    with pytest.raises(ContextError):
        parse_ctx(spec)


@cpu_build_only
@pytest.mark.parametrize('spec', ['gpu', 'gpu:0', 'gpu:all', 'cpu,gpu', 'gpu:1'])
def test_gpu_specs_on_the_cpu_build_say_how_to_get_a_gpu_build(spec):
    with pytest.raises(ContextError) as info:
        parse_ctx(spec)
    assert 'mxnet-cu' in str(info.value)
    assert spec in str(info.value)


@cpu_build_only
def test_try_gpu_falls_back_to_the_cpu():
    assert try_gpu() == mx.cpu()
    assert try_gpu(3) == mx.cpu()


@pytest.mark.gpu
@pytest.mark.skipif(NUM_GPUS == 0, reason='no GPU: mx.context.num_gpus() is 0')
@pytest.mark.parametrize('impl', ['scratch', 'concise'])
def test_one_batch_trains_on_the_gpu(impl):
    ctx = mx.gpu(0)
    assert parse_ctx('gpu') == [ctx] and parse_ctx('gpu:all') == [mx.gpu(i)
                                                                   for i in range(NUM_GPUS)]
    rng = onp.random.RandomState(0)
    X = rng.rand(8, 1, 28, 28).astype(onp.float32)
    y = rng.randint(0, 10, 8)
    model = build_model(Recipe(impl=impl), [ctx], 1)
    assert model.ctx == ctx
    before = model.weight_matrix().copy()
    train_loss, _ = training.train_epoch(model.net, ArrayLoader(X, y, 8, ctx=ctx), model.loss,
                                         model.updater, ctx)
    assert onp.isfinite(train_loss)
    assert model.parameters()[0].ctx == ctx
    assert not onp.allclose(model.weight_matrix(), before)
    assert model.net(np.array(X, ctx=ctx)).ctx == ctx


@pytest.mark.gpu
@pytest.mark.skipif(NUM_GPUS < 2, reason=f'needs 2 GPUs: mx.context.num_gpus() is {NUM_GPUS}')
def test_gpu_all_trains_on_every_gpu_like_one_gpu():
    ctxs = parse_ctx('gpu:all')
    rng = onp.random.RandomState(0)
    X = rng.rand(512, 1, 28, 28).astype(onp.float32)
    y = rng.randint(0, 10, 512)
    weights = []
    for devices in ([ctxs[0]], ctxs):
        set_seed(0)
        train_iter = ArrayLoader(X, y, 64, shuffle=True, ctx=devices[0])
        model = build_model(Recipe(), devices, len(train_iter))
        DataParallel(devices).train_epoch(model.net, train_iter, model.loss, model.updater)
        weight = model.net[0].weight
        copies = [weight.data(c).asnumpy() for c in devices]
        assert all((c == copies[0]).all() for c in copies)
        weights.append(copies[0])
    assert onp.abs(weights[0] - weights[1]).max() < 1e-5


def test_a_gpu_without_kernels_for_its_architecture_is_refused_clearly(monkeypatch):
    """What a CUDA wheel says on a card it was not built for becomes one ContextError."""
    from gluon_softmax.scale import context
    message = ('Traceback (most recent call last):\n  File "../src/operator/mxnet_op.h", line 1\n'
               'MXNetError: Check failed: err == cudaSuccess (209 vs. 0) : mxnet_generic_kernel '
               'ErrStr:no kernel image is available for execution on the device')

    def failing_ones(*args, **kwargs):
        raise mx.base.MXNetError(message)
    context.probe(mx.cpu(), 'cpu')  # a device that works passes silently
    monkeypatch.setattr(mx.nd, 'ones', failing_ones)
    with pytest.raises(ContextError) as info:
        context.probe(mx.gpu(0), 'gpu')
    text = str(info.value)
    assert "--ctx 'gpu'" in text and 'no kernel image' in text and '5.0-8.6' in text
    assert '\n' not in text
