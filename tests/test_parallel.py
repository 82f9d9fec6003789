"""Data parallelism: batch shares, single-process Workers, kvstore refusals, and the acceptance
test that training on several devices gives the single-device result."""
import hashlib
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest
from mxnet import gluon, np

from gluon_softmax import concise, data, scratch, training
from gluon_softmax.data import ArrayLoader
from gluon_softmax.parallel import (ParallelError, Workers, connect, ctx_list, share_bounds,
                                    split_batch)

from conftest import assert_usage_error

TWO = [mx.cpu(0), mx.cpu(1)]
THREE = [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
NUM_INPUTS = 20  # features of the synthetic problems


class FakeWorkers(Workers):
    """One worker of a pretend job: ``rank`` of ``num_workers``, with no kvstore behind it."""

    def __init__(self, rank, num_workers):
        super().__init__()
        self.rank, self.num_workers = rank, num_workers


def separable(n, seed):
    """``X`` (n, 20) Gaussian and ``y`` = argmax of a fixed linear map: linearly separable."""
    M = onp.random.RandomState(123).randn(NUM_INPUTS, 10)
    X = onp.random.RandomState(seed).randn(n, NUM_INPUTS).astype(onp.float32)
    return X, (X @ M).argmax(axis=1).astype(onp.int32)


def make_model(impl, ctxs, lr, num_inputs=784, kvstore='device'):
    """``(net, loss, updater)`` of one implementation, parameters on every device of ``ctxs``."""
    if impl == 'scratch':
        net = scratch.SoftmaxRegressionScratch(num_inputs=num_inputs, ctx=ctxs)
        return net, scratch.softmax_cross_entropy, scratch.SGD(net.parameter_copies(), lr)
    net = concise.build_net(num_inputs=num_inputs, ctx=ctxs)
    return net, concise.build_loss(), concise.build_trainer(net, lr, kvstore=kvstore)


def copies_of(net):
    """Per device, that device's parameters as NumPy arrays (in a fixed order)."""
    if isinstance(net, scratch.SoftmaxRegressionScratch):
        return [[p.asnumpy() for p in copy] for copy in net.copies]
    params = list(net.collect_params().values())
    return [[p.data(ctx).asnumpy() for p in params] for ctx in params[0].list_ctx()]


def max_diff(a, b):
    """The largest absolute difference between two lists of arrays."""
    return max(float(onp.abs(x.astype(onp.float64) - y).max()) for x, y in zip(a, b))


def assert_replicas_bitwise_equal(net):
    first, *others = copies_of(net)
    assert others, 'expected a model on several devices'
    for other in others:
        for x, y in zip(first, other):
            assert x.tobytes() == y.tobytes()


def seeded(seed=0):
    onp.random.seed(seed)
    mx.random.seed(seed)


def real_iters(root):
    """The fast loaders of the real data set, batches of 256 on cpu(0)."""
    return data.load_arrays_iters(256, root=root, ctx=mx.cpu(0))


def train_real(root, impl, ctxs, kvstore='device', epochs=1, seed=0, lr=0.1):
    """Train on the real data set from ``seed``; returns ``(net, history)``."""
    seeded(seed)
    train_iter, test_iter = real_iters(root)
    net, loss, updater = make_model(impl, ctxs, lr, kvstore=kvstore)
    history = training.train(net, train_iter, test_iter, loss, updater, epochs, ctxs)
    return net, history


def cli(*args):
    """Run ``python -m gluon_softmax.train`` in a subprocess, outside any distributed job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    return subprocess.run([sys.executable, '-m', 'gluon_softmax.train', *args],
                          capture_output=True, text=True, timeout=600, env=env)


def metrics_of(out):
    return json.loads((out / 'metrics.json').read_text())


# --- ctx_list, share_bounds -----------------------------------------------------------------

def test_ctx_list_accepts_a_context_a_list_or_none():
    assert ctx_list(None) == [mx.cpu()]
    assert ctx_list(mx.cpu(1)) == [mx.cpu(1)]
    assert ctx_list(tuple(TWO)) == TWO
    with pytest.raises(ParallelError):
        ctx_list([])


@pytest.mark.parametrize('size, num_workers',
                         [(256, 1), (256, 2), (256, 3), (96, 5), (7, 3), (1, 4), (0, 2)])
def test_share_bounds_cover_the_batch_once_in_near_equal_shares(size, num_workers):
    shares = [share_bounds(size, r, num_workers) for r in range(num_workers)]
    covered = [i for start, stop in shares for i in range(start, stop)]
    assert covered == list(range(size))  # each example once, in order
    sizes = [stop - start for start, stop in shares]
    assert max(sizes) - min(sizes) <= 1


# --- split_batch ----------------------------------------------------------------------------

def batch(n):
    """A batch whose rows are recognisable: ``X[i] = i`` (n, 3) and ``y[i] = 100 + i``."""
    X = np.array(onp.repeat(onp.arange(n, dtype=onp.float32)[:, None], 3, axis=1))
    return X, np.array(onp.arange(100, 100 + n, dtype=onp.int32))


def test_split_batch_on_one_device_is_the_batch():
    X, y = batch(7)
    [(X_k, y_k, weight)] = split_batch(X, y, [mx.cpu(0)])
    assert weight == 1 and X_k.ctx == mx.cpu(0) and y_k.ctx == mx.cpu(0)
    onp.testing.assert_array_equal(X_k.asnumpy(), X.asnumpy())
    onp.testing.assert_array_equal(y_k.asnumpy(), y.asnumpy())


@pytest.mark.parametrize('ctxs', [TWO, THREE], ids=['2', '3'])
@pytest.mark.parametrize('n', [256, 96, 7, 4])
def test_split_batch_over_devices_reassembles_the_batch(ctxs, n):
    X, y = batch(n)
    pieces = split_batch(X, y, ctxs)
    assert [X_k.ctx for X_k, _, _ in pieces] == ctxs
    assert [y_k.ctx for _, y_k, _ in pieces] == ctxs
    assert [weight for _, _, weight in pieces] == [1.0] * len(ctxs)
    onp.testing.assert_array_equal(onp.concatenate([X_k.asnumpy() for X_k, _, _ in pieces]),
                                   X.asnumpy())
    onp.testing.assert_array_equal(onp.concatenate([y_k.asnumpy() for _, y_k, _ in pieces]),
                                   y.asnumpy())


def test_one_example_on_three_devices_gives_two_weight_zero_pieces():
    X, y = batch(1)
    pieces = split_batch(X, y, THREE)
    assert [X_k.ctx for X_k, _, _ in pieces] == THREE
    assert [weight for _, _, weight in pieces] == [1.0, 0.0, 0.0]
    for X_k, y_k, _ in pieces:  # every device gets exactly one example, on that device
        assert X_k.shape == (1, 3) and y_k.shape == (1,) and y_k.ctx == X_k.ctx
    real = [(X_k, y_k) for X_k, y_k, weight in pieces if weight]
    onp.testing.assert_array_equal(real[0][0].asnumpy(), X.asnumpy())


def test_two_examples_on_three_devices_use_two_and_pad_one():
    X, y = batch(2)
    pieces = split_batch(X, y, THREE)
    assert [weight for _, _, weight in pieces] == [1.0, 1.0, 0.0]
    onp.testing.assert_array_equal(
        onp.concatenate([y_k.asnumpy() for _, y_k, weight in pieces if weight]), y.asnumpy())
    assert pieces[2][0].shape[0] == 1 and pieces[2][0].ctx == mx.cpu(2)


@pytest.mark.parametrize('n', [256, 96, 10, 5])
@pytest.mark.parametrize('num_workers', [2, 3])
@pytest.mark.parametrize('ctxs', [[mx.cpu(0)], TWO], ids=['1', '2'])
def test_each_worker_gets_its_share_of_the_global_batch(n, num_workers, ctxs):
    X, y = batch(n)
    for rank in range(num_workers):
        start, stop = share_bounds(n, rank, num_workers)
        pieces = split_batch(X, y, ctxs, FakeWorkers(rank, num_workers))
        assert [X_k.ctx for X_k, _, _ in pieces] == ctxs
        real = [(X_k, y_k) for X_k, y_k, weight in pieces if weight]
        assert real  # every share here has at least one example per device
        onp.testing.assert_array_equal(onp.concatenate([X_k.asnumpy() for X_k, _ in real]),
                                       X.asnumpy()[start:stop])
        onp.testing.assert_array_equal(onp.concatenate([y_k.asnumpy() for _, y_k in real]),
                                       y.asnumpy()[start:stop])


def test_a_worker_with_an_empty_share_still_gives_every_device_a_zero_weight_example():
    X, y = batch(2)
    # 2 examples, 3 workers: worker 0's share is empty (share_bounds(2, 0, 3) == (0, 0))
    assert share_bounds(2, 0, 3) == (0, 0)
    pieces = split_batch(X, y, TWO, FakeWorkers(0, 3))
    assert [weight for _, _, weight in pieces] == [0.0, 0.0]
    assert [X_k.ctx for X_k, _, _ in pieces] == TWO
    assert all(X_k.shape[0] == 1 and y_k.shape[0] == 1 for X_k, y_k, _ in pieces)


# --- Workers in a single process ------------------------------------------------------------

def test_single_process_workers_are_the_identity():
    workers = Workers()
    assert (workers.rank, workers.num_workers, workers.distributed) == (0, 1, False)
    a = np.array([[1.5, -2.0], [3.0, 0.25]])
    assert workers.sum(a) is a
    assert workers.broadcast(a) is a
    v = np.array([1.0, 2.0, 3.0])
    gathered = workers.gather(v)
    assert gathered.shape == (1, 3)
    onp.testing.assert_array_equal(gathered.asnumpy(), [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize('value', [0, 1, 65535, 65536, 65537, 123456789, 2 ** 31 - 1])
def test_broadcast_int_round_trips(value):
    got = Workers().broadcast_int(value)
    assert got == value and isinstance(got, int)


def test_digests_are_sha256_of_the_float32_little_endian_bytes():
    rng = onp.random.RandomState(0)
    W = rng.randn(784, 10).astype(onp.float32)
    b = rng.randn(10).astype(onp.float32)
    expected = hashlib.sha256(W.astype('<f4').tobytes() + b.astype('<f4').tobytes()).hexdigest()
    workers = Workers()
    assert workers.digests([np.array(W), np.array(b)]) == [expected]

    W2 = W.copy()
    W2[783, 9] = onp.nextafter(W2[783, 9], onp.float32(onp.inf))  # one ulp, one element
    assert workers.digests([np.array(W2), np.array(b)]) != [expected]


# --- connect --------------------------------------------------------------------------------

@pytest.mark.parametrize('kvstore, environ', [
    ('bogus', {}),
    ('nccl', {}),
    ('dist_sync', {}),
    ('dist_device_sync', {'DMLC_ROLE': 'server'}),
    ('device', {'DMLC_ROLE': 'worker'}),
    ('local', {'DMLC_ROLE': 'worker'}),
])
def test_connect_refuses_what_cannot_train(kvstore, environ):
    with pytest.raises(ParallelError, match='--kvstore'):
        connect(kvstore, environ=environ)


def test_connect_dist_outside_a_job_says_how_to_launch():
    with pytest.raises(ParallelError, match='gluon_softmax.launch'):
        connect('dist_sync', environ={'DMLC_ROLE': 'scheduler'})


@pytest.mark.parametrize('kvstore', ['device', 'local'])
def test_connect_non_dist_is_a_single_process(kvstore):
    workers = connect(kvstore, environ={})
    assert isinstance(workers, Workers)
    assert (workers.rank, workers.num_workers, workers.distributed) == (0, 1, False)


# --- build_trainer --------------------------------------------------------------------------

def test_build_trainer_refuses_no_kvstore_on_several_devices():
    net = concise.build_net(num_inputs=NUM_INPUTS, ctx=TWO)
    with pytest.raises(ParallelError, match='kvstore'):
        concise.build_trainer(net, 0.1, kvstore=None)
    assert isinstance(concise.build_trainer(net, 0.1), gluon.Trainer)  # 'device', the default


def test_build_trainer_allows_no_kvstore_on_one_device():
    net = concise.build_net(num_inputs=NUM_INPUTS, ctx=[mx.cpu(0)])
    assert isinstance(concise.build_trainer(net, 0.1, kvstore=None), gluon.Trainer)


# --- equivalence with one device: the acceptance test ---------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize('impl, kvstore', [('concise', 'device'), ('concise', 'local'),
                                           ('scratch', None)])
def test_two_devices_train_like_one_on_fashion_mnist(real_data_dir, impl, kvstore):
    # two epochs: 470 steps of the book's recipe
    one, one_history = train_real(real_data_dir, impl, [mx.cpu(0)], kvstore or 'device',
                                  epochs=2)
    two, two_history = train_real(real_data_dir, impl, TWO, kvstore or 'device', epochs=2)

    assert max_diff(copies_of(two)[0], copies_of(one)[0]) < 1e-6
    assert_replicas_bitwise_equal(two)
    for a, b in zip(one_history, two_history):
        assert b['train_loss'] == pytest.approx(a['train_loss'], rel=1e-6)
        assert b['train_acc'] == pytest.approx(a['train_acc'], abs=1e-3)
        assert b['test_acc'] == pytest.approx(a['test_acc'], abs=1e-3)
    assert 0.7 < two_history[-1]['test_acc'] < 0.9  # the book's recipe, not a dead model


@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_a_last_batch_smaller_than_the_devices_changes_nothing(impl):
    # 1001 examples in batches of 500: the last batch holds 1 example for 3 devices
    X, y = separable(1001, seed=1)
    runs = {}
    for name, ctxs in (('one', [mx.cpu(0)]), ('three', THREE)):
        seeded(0)
        loader = ArrayLoader(X, y, 500, shuffle=True)
        net, loss, updater = make_model(impl, ctxs, 0.5, num_inputs=NUM_INPUTS)
        initial = copies_of(net)[0]
        runs[name] = net, training.train(net, loader, loader, loss, updater, 2, ctxs)
    (one, one_history), (three, three_history) = runs['one'], runs['three']
    assert max_diff(copies_of(three)[0], copies_of(one)[0]) < 1e-6
    assert_replicas_bitwise_equal(three)
    for a, b in zip(one_history, three_history):
        assert b['train_loss'] == pytest.approx(a['train_loss'], rel=1e-6)
        assert b['train_acc'] == a['train_acc']  # counted over the 1001 real examples only
    # the parameters did move, so the comparison is not between two untouched models
    assert max_diff(copies_of(three)[0], initial) > 1e-2


# --- what the rules prevent -----------------------------------------------------------------

def test_without_a_kvstore_the_copies_drift_apart():
    """Negative control: why build_trainer refuses kvstore=None on several devices."""
    X, y = separable(1024, seed=2)
    mx.random.seed(0)
    net = concise.build_net(num_inputs=NUM_INPUTS, ctx=TWO)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5}, kvstore=None)
    before = copies_of(net)
    assert max_diff(before[0], before[1]) == 0  # they start equal
    training.train_epoch(net, ArrayLoader(X, y, 128), concise.build_loss(), trainer, TWO)
    cpu0, cpu1 = copies_of(net)
    assert max_diff(cpu0, cpu1) > 1e-4  # measured: 0.1


@pytest.mark.integration
def test_trainer_step_needs_the_total_batch_size_not_the_per_device_one(real_data_dir):
    """Stepping with the per-device size (128 of 256) doubles the effective learning rate."""

    class PerDeviceStep:
        def __init__(self, trainer, num_devices):
            self.trainer, self.num_devices = trainer, num_devices

        def step(self, batch_size):
            self.trainer.step(batch_size // self.num_devices)

    one, _ = train_real(real_data_dir, 'concise', [mx.cpu(0)])
    double_lr, _ = train_real(real_data_dir, 'concise', [mx.cpu(0)], lr=0.2)

    seeded(0)
    train_iter, test_iter = real_iters(real_data_dir)
    two, loss, trainer = make_model('concise', TWO, 0.1)
    training.train(two, train_iter, test_iter, loss, PerDeviceStep(trainer, 2), 1, TWO)

    assert max_diff(copies_of(two)[0], copies_of(one)[0]) > 1e-2  # measured: 0.3
    # the same as one device at twice the rate, up to rounding (measured: 2e-5)
    assert max_diff(copies_of(two)[0], copies_of(double_lr)[0]) < 1e-4


# --- the CLI --------------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_cli_on_two_devices_reports_the_single_device_metrics(tmp_path, real_data_dir, impl):
    runs = {}
    for name, ctx in (('one', 'cpu'), ('two', 'cpu:0,cpu:1')):
        out = tmp_path / name
        result = cli('--impl', impl, '--ctx', ctx, '--epochs', '1', '--seed', '0',
                     '--out', str(out), '--data-dir', real_data_dir)
        assert result.returncode == 0, result.stderr
        runs[name] = metrics_of(out)
    one, two = runs['one'], runs['two']
    assert (one['ctx'], two['ctx']) == ('cpu(0)', 'cpu(0),cpu(1)')
    assert two['kvstore'] == 'device' and two['worker_processes'] == 1
    assert two['status'] == 'complete' and len(two['epochs']) == 1
    for a, b in zip(one['epochs'], two['epochs']):
        assert b['train_loss'] == pytest.approx(a['train_loss'], rel=1e-6)
        assert b['test_acc'] == a['test_acc']


def test_cli_dist_kvstore_outside_a_job_is_one_error_line(tmp_path):
    out = tmp_path / 'run'
    result = cli('--kvstore', 'dist_sync', '--epochs', '1', '--out', str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    assert '--kvstore' in lines[0] and 'gluon_softmax.launch' in lines[0]
    assert 'Traceback' not in result.stderr
    assert not out.exists()


def test_cli_unknown_kvstore_is_a_usage_error(capsys, tmp_path):
    out = tmp_path / 'run'
    assert_usage_error(capsys, ['--kvstore', 'bogus', '--out', str(out)], '--kvstore', 'bogus')
    assert not out.exists()


def test_cli_non_dist_kvstore_inside_a_job_is_a_usage_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv('DMLC_ROLE', 'worker')
    out = tmp_path / 'run'
    assert_usage_error(capsys, ['--kvstore', 'device', '--out', str(out)], '--kvstore',
                       'dist_sync')
    assert not out.exists()


@pytest.mark.integration
def test_cli_resume_on_two_devices_continues_like_an_uninterrupted_run(tmp_path, real_data_dir):
    flags = ('--momentum', '0.9', '--lr', '0.03', '--seed', '0', '--data-dir', real_data_dir)
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    result = cli('--epochs', '2', '--out', str(whole), *flags)
    assert result.returncode == 0, result.stderr
    result = cli('--ctx', 'cpu:0,cpu:1', '--epochs', '1', '--out', str(part), *flags)
    assert result.returncode == 0, result.stderr
    result = cli('--resume', str(part), '--epochs', '2', '--ctx', 'cpu:0,cpu:1',
                 '--data-dir', real_data_dir)
    assert result.returncode == 0, result.stderr
    assert 'resumed after epoch 1' in result.stdout

    resumed, straight = metrics_of(part), metrics_of(whole)
    assert resumed['status'] == 'complete' and resumed['ctx'] == 'cpu(0),cpu(1)'
    assert [e['epoch'] for e in resumed['epochs']] == [1, 2]
    for a, b in zip(straight['epochs'], resumed['epochs']):
        assert b['train_loss'] == pytest.approx(a['train_loss'], rel=1e-5)
        assert b['train_acc'] == pytest.approx(a['train_acc'], abs=1e-4)
        assert b['test_acc'] == pytest.approx(a['test_acc'], abs=1e-4)
