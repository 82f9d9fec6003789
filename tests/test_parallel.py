"""Data parallelism: batch shares, single-process Workers, kvstore refusals, the scale-out epoch
against the chapter's loop, and the acceptance test that several devices train like one."""
import hashlib
import json
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import gluon, np

from gluon_softmax import concise, data, scratch, training
from gluon_softmax.compose import build_model
from gluon_softmax.data import ArrayLoader
from gluon_softmax.data import set_seed
from gluon_softmax.run.settings import IMPLS, Recipe
from gluon_softmax.scale.parallel import DataParallel, ctx_list, share_bounds, split_batch
from gluon_softmax.scale.replicas import ReplicaSGD, ScratchReplicas
from gluon_softmax.scale.trainer import build_parallel_trainer
from gluon_softmax.scale.workers import ParallelError, Workers, connect

import procs
import small_data
from conftest import assert_usage_error

CPU0 = mx.cpu(0)
TWO = [mx.cpu(0), mx.cpu(1)]
THREE = [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
# the synthetic problems are 4 x 4 "images": Recipe(resize=4) gives models 16 inputs
SIDE = 4


class FakeWorkers(Workers):
    """One worker of a pretend job: ``rank`` of ``num_workers``, with no kvstore behind it."""

    def __init__(self, rank, num_workers):
        super().__init__()
        self.rank, self.num_workers = rank, num_workers


def separable(n, seed):
    """``X`` (n, 1, 4, 4) Gaussian and ``y`` = argmax of a fixed linear map: linearly separable."""
    M = onp.random.RandomState(123).randn(SIDE * SIDE, 10)
    X = onp.random.RandomState(seed).randn(n, SIDE * SIDE).astype(onp.float32)
    return X.reshape(n, 1, SIDE, SIDE), (X @ M).argmax(axis=1).astype(onp.int32)


def build(impl, ctxs, steps_per_epoch=1, kvstore='device', **recipe):
    """``build_model`` for a :class:`Recipe` of ``impl`` with the given fields."""
    return build_model(Recipe(impl=impl, **recipe), ctxs, steps_per_epoch, kvstore)


def epoch_fn_for(ctxs):
    """The chapter's own loop on one device (the reference); the scale-out epoch on several."""
    return training.train_epoch if len(ctxs) == 1 else DataParallel(ctxs).train_epoch


def fit(model, ctxs, train_iter, test_iter, epochs, epoch_fn=None):
    """``training.train`` of ``model`` on ``ctxs``; returns the history."""
    return training.train(model.net, train_iter, test_iter, model.loss, model.updater,
                          training.Epochs(epochs, ctxs[0],
                                          epoch_fn=epoch_fn or epoch_fn_for(ctxs)))


def copies_of(model):
    """Per device, that device's parameters as NumPy arrays (in a fixed order)."""
    net = model.net
    if isinstance(net, ScratchReplicas):
        return [[p.asnumpy() for p in replica.parameters()] for replica in net.replicas]
    if isinstance(net, scratch.SoftmaxRegressionScratch):
        return [[p.asnumpy() for p in net.parameters()]]
    params = list(net.collect_params().values())
    return [[p.data(ctx).asnumpy() for p in params] for ctx in params[0].list_ctx()]


def parameter_bytes(model):
    """The first copy's parameters as raw bytes: equal bytes, bitwise equal parameters."""
    return [p.asnumpy().tobytes() for p in model.parameters()]


def max_diff(a, b):
    """The largest absolute difference between two lists of arrays."""
    return max(float(onp.abs(x.astype(onp.float64) - y).max()) for x, y in zip(a, b))


def assert_replicas_bitwise_equal(model):
    first, *others = copies_of(model)
    assert others, 'expected a model on several devices'
    for other in others:
        for x, y in zip(first, other):
            assert x.tobytes() == y.tobytes()


def real_iters(root):
    """The fast loaders of the real data set, batches of 256 on cpu(0)."""
    return data.load_arrays_iters(256, root=root, ctx=CPU0)


def train_real(root, impl, ctxs, kvstore='device', epochs=1, seed=0, lr=0.1):
    """Train on the real data set from ``seed``; returns ``(model, history)``."""
    set_seed(seed)
    train_iter, test_iter = real_iters(root)
    model = build(impl, ctxs, len(train_iter), kvstore, lr=lr, epochs=epochs, seed=seed)
    return model, fit(model, ctxs, train_iter, test_iter, epochs)


def cli(*args):
    """Run ``python -m gluon_softmax.train`` in a subprocess, outside any distributed job (on
    the small data set when --data-dir names it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    return procs.run(small_data.python_m('gluon_softmax.train', *args), env=env)


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


# --- the models the scale-out layer builds --------------------------------------------------

def test_one_device_gets_the_chapters_pieces_unwrapped():
    model = build('scratch', [CPU0], resize=SIDE)
    assert type(model.net) is scratch.SoftmaxRegressionScratch
    assert type(model.updater) is scratch.SGD
    model = build('concise', [CPU0], resize=SIDE)
    assert type(model.updater) is gluon.Trainer


def test_scratch_on_several_devices_gets_replicas_with_equal_initial_copies():
    model = build('scratch', THREE, resize=SIDE)
    assert isinstance(model.net, ScratchReplicas) and isinstance(model.updater, ReplicaSGD)
    assert len(model.net.replicas) == 3
    copies = model.net.parameter_copies()
    assert [[p.ctx for p in param] for param in copies] == [THREE, THREE]  # [[W...], [b...]]
    assert [p.shape for p in model.parameters()] == [(SIDE * SIDE, 10), (10,)]
    assert all(p.ctx == CPU0 for p in model.parameters())  # the first copy is the model's
    assert_replicas_bitwise_equal(model)
    X, _ = separable(5, seed=0)
    for ctx in THREE:  # each batch meets the copy on its own device
        assert model.net(np.array(X, ctx=ctx)).ctx == ctx
    with pytest.raises(ValueError, match='cpu'):
        model.net(np.array(X, ctx=mx.cpu(3)))


def test_concise_on_several_devices_in_one_process_uses_a_plain_trainer():
    model = build('concise', TWO, resize=SIDE)
    assert type(model.updater) is gluon.Trainer
    assert len(copies_of(model)) == 2
    assert_replicas_bitwise_equal(model)


# --- kvstore refusals -----------------------------------------------------------------------

def test_build_parallel_trainer_refuses_no_kvstore_on_several_devices():
    net = build('concise', TWO, resize=SIDE).net
    with pytest.raises(ParallelError, match='kvstore'):
        build_parallel_trainer(net, 0.1, kvstore=None)
    with pytest.raises(ParallelError, match='kvstore'):
        build('concise', TWO, kvstore=None, resize=SIDE)
    assert isinstance(build_parallel_trainer(net, 0.1), gluon.Trainer)  # 'device', the default


def test_build_parallel_trainer_allows_no_kvstore_on_one_device():
    model = build('concise', [CPU0], kvstore=None, resize=SIDE)
    assert isinstance(model.updater, gluon.Trainer)
    assert isinstance(build_parallel_trainer(model.net, 0.1, kvstore=None), gluon.Trainer)


# --- the scale-out epoch against the chapter's loop -----------------------------------------

# the book's recipe for both models, and the concise one with every optimizer option
CHAPTER_RECIPES = [('scratch', {}), ('concise', {}),
                   ('concise', {'momentum': 0.9, 'wd': 1e-3, 'lr_schedule': 'cosine'})]


def run_epochs(epoch_fn, impl, X, y, batch_size, epochs=2, resize=SIDE, **recipe):
    """Train ``epochs`` epochs from seed 0 with ``epoch_fn``; its results and the parameters."""
    set_seed(0)
    loader = ArrayLoader(X, y, batch_size, shuffle=True)
    model = build(impl, [CPU0], len(loader), batch_size=batch_size, resize=resize,
                  epochs=epochs, seed=0, **recipe)
    figures = [epoch_fn(model.net, loader, model.loss, model.updater, CPU0)
               for _ in range(epochs)]
    return figures, parameter_bytes(model)


def assert_scale_out_is_the_chapter(impl, X, y, batch_size, resize=SIDE, **recipe):
    chapter = run_epochs(training.train_epoch, impl, X, y, batch_size, resize=resize, **recipe)
    scale_out = run_epochs(DataParallel([CPU0]).train_epoch, impl, X, y, batch_size,
                           resize=resize, **recipe)
    (first, second), _ = chapter
    assert all(isinstance(v, float) for v in first + second)
    assert second[0] < first[0]  # it trained: the comparison is not of two idle loops
    assert scale_out[0] == chapter[0]  # (loss, acc) of each epoch, exactly
    assert scale_out[1] == chapter[1]  # the parameters, bit for bit


@pytest.mark.parametrize('impl, recipe', CHAPTER_RECIPES, ids=['scratch', 'concise',
                                                               'concise-momentum-wd-cosine'])
def test_scale_out_epoch_on_one_device_is_bitwise_the_chapters(impl, recipe):
    # 1000 examples in batches of 300: three full batches and a last one of 100
    X, y = separable(1000, seed=4)
    assert_scale_out_is_the_chapter(impl, X, y, 300, lr=0.5, **recipe)


@pytest.mark.integration
@pytest.mark.parametrize('impl', IMPLS)
def test_scale_out_epoch_on_one_device_is_bitwise_the_chapters_on_fashion_mnist(real_data_dir,
                                                                                 impl):
    X, y = data.load_arrays(real_data_dir)
    assert_scale_out_is_the_chapter(impl, X[:3000], y[:3000], 256, resize=None)


def test_scale_out_epoch_tells_its_watch_every_batch_and_the_end():
    class Watch:
        def __init__(self):
            self.batches, self.ends = [], 0

        def batch(self, number, loss_sum, size):
            self.batches.append((number, float(loss_sum), size))

        def end(self):
            self.ends += 1

    X, y = separable(1001, seed=5)
    set_seed(0)
    model = build('concise', THREE, resize=SIDE)
    watch = Watch()
    loss, acc = DataParallel(THREE, watch=watch).train_epoch(
        model.net, ArrayLoader(X, y, 500), model.loss, model.updater)
    assert [(n, size) for n, _, size in watch.batches] == [(1, 500), (2, 500), (3, 1)]
    assert watch.ends == 1
    # the batch sums are the whole batch's (padding adds 0), and add up to the epoch's mean
    assert sum(s for _, s, _ in watch.batches) / 1001 == pytest.approx(loss, rel=1e-6)
    assert 0 <= acc <= 1


# --- equivalence with one device: the acceptance test ---------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize('impl, kvstore', [('concise', 'device'), ('concise', 'local'),
                                           ('scratch', 'device')])
@pytest.mark.slow
def test_two_devices_train_like_one_on_fashion_mnist(real_data_dir, impl, kvstore):
    # two epochs: 470 steps of the book's recipe; one device runs the chapter's own loop
    one, one_history = train_real(real_data_dir, impl, [CPU0], kvstore, epochs=2)
    two, two_history = train_real(real_data_dir, impl, TWO, kvstore, epochs=2)

    assert max_diff(copies_of(two)[0], copies_of(one)[0]) < 1e-6
    assert_replicas_bitwise_equal(two)
    for a, b in zip(one_history, two_history):
        assert b['train_loss'] == pytest.approx(a['train_loss'], rel=1e-6)
        assert b['train_acc'] == pytest.approx(a['train_acc'], abs=1e-3)
        assert b['test_loss'] == pytest.approx(a['test_loss'], rel=1e-5)
        assert b['test_acc'] == pytest.approx(a['test_acc'], abs=1e-3)
    assert 0.7 < two_history[-1]['test_acc'] < 0.9  # the book's recipe, not a dead model


@pytest.mark.parametrize('impl', IMPLS)
def test_a_last_batch_smaller_than_the_devices_changes_nothing(impl):
    # 1001 examples in batches of 500: the last batch holds 1 example for 3 devices
    X, y = separable(1001, seed=1)
    runs = {}
    for name, ctxs in (('one', [CPU0]), ('three', THREE)):
        set_seed(0)
        loader = ArrayLoader(X, y, 500, shuffle=True)
        model = build(impl, ctxs, len(loader), lr=0.5, batch_size=500, resize=SIDE)
        initial = copies_of(model)[0]
        runs[name] = model, fit(model, ctxs, loader, loader, 2)
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
    """Negative control: why build_parallel_trainer refuses kvstore=None on several devices."""
    X, y = separable(1024, seed=2)
    ends = {}
    for name in ('kvstore device', 'no kvstore'):
        set_seed(0)
        model = build('concise', TWO, lr=0.5, resize=SIDE)
        before = copies_of(model)
        assert max_diff(before[0], before[1]) == 0  # they start equal
        # the chapter's factory passes kvstore=None through; only the scale-out layer refuses
        updater = (model.updater if name == 'kvstore device' else
                   concise.build_trainer(model.net, 0.5, kvstore=None))
        DataParallel(TWO).train_epoch(model.net, ArrayLoader(X, y, 128), model.loss, updater)
        ends[name] = copies_of(model)
    cpu0, cpu1 = ends['no kvstore']
    assert max_diff(cpu0, cpu1) > 1e-4  # measured: 0.1
    cpu0, cpu1 = ends['kvstore device']
    assert max_diff(cpu0, cpu1) == 0  # the same steps with the kvstore: no drift


@pytest.mark.slow
@pytest.mark.integration
def test_trainer_step_needs_the_total_batch_size_not_the_per_device_one(real_data_dir):
    """Stepping with the per-device size (128 of 256) doubles the effective learning rate."""

    class PerDeviceStep:
        def __init__(self, trainer, num_devices):
            self.trainer, self.num_devices = trainer, num_devices

        def step(self, batch_size):
            self.trainer.step(batch_size // self.num_devices)

    one, _ = train_real(real_data_dir, 'concise', [CPU0])
    double_lr, _ = train_real(real_data_dir, 'concise', [CPU0], lr=0.2)

    set_seed(0)
    train_iter, test_iter = real_iters(real_data_dir)
    two = build('concise', TWO, len(train_iter), lr=0.1, epochs=1, seed=0)
    training.train(two.net, train_iter, test_iter, two.loss, PerDeviceStep(two.updater, 2),
                   training.Epochs(1, CPU0, epoch_fn=DataParallel(TWO).train_epoch))

    assert max_diff(copies_of(two)[0], copies_of(one)[0]) > 1e-2  # measured: 0.3
    # the same as one device at twice the rate, up to rounding (measured: 2e-5)
    assert max_diff(copies_of(two)[0], copies_of(double_lr)[0]) < 1e-4


# --- the CLI --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_cli_on_two_devices_reports_the_single_device_metrics(tmp_path, small_data_dir, impl):
    runs = {}
    for name, ctx in (('one', 'cpu'), ('two', 'cpu:0,cpu:1')):
        out = tmp_path / name
        result = cli('--impl', impl, '--ctx', ctx, '--epochs', '1', '--seed', '0',
                     '--out', str(out), '--data-dir', small_data_dir)
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


@pytest.mark.slow
@pytest.mark.integration
def test_cli_resume_on_two_devices_continues_like_an_uninterrupted_run(tmp_path,
                                                                       small_data_dir):
    flags = ('--momentum', '0.9', '--lr', '0.03', '--seed', '0', '--data-dir', small_data_dir)
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    result = cli('--epochs', '2', '--out', str(whole), *flags)
    assert result.returncode == 0, result.stderr
    result = cli('--ctx', 'cpu:0,cpu:1', '--epochs', '1', '--out', str(part), *flags)
    assert result.returncode == 0, result.stderr
    result = cli('--resume', str(part), '--epochs', '2', '--ctx', 'cpu:0,cpu:1',
                 '--data-dir', small_data_dir)
    assert result.returncode == 0, result.stderr
    assert 'resumed after epoch 1' in result.stdout

    resumed, straight = metrics_of(part), metrics_of(whole)
    assert resumed['status'] == 'complete' and resumed['ctx'] == 'cpu(0),cpu(1)'
    assert [e['epoch'] for e in resumed['epochs']] == [1, 2]
    for a, b in zip(straight['epochs'], resumed['epochs']):
        assert b['train_loss'] == pytest.approx(a['train_loss'], rel=1e-5)
        assert b['train_acc'] == pytest.approx(a['train_acc'], abs=1e-4)
        assert b['test_acc'] == pytest.approx(a['test_acc'], abs=1e-4)
