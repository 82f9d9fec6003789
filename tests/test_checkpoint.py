"""Checkpoints, resume, interruption by signals and divergence."""
import json
import os
import signal
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np, npx

from gluon_softmax import concise, scratch, training
from gluon_softmax.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gluon_softmax.data import ArrayLoader


def cli(*args, **kwargs):
    """Run the training CLI in a subprocess."""
    return subprocess.run([sys.executable, '-m', 'gluon_softmax.train', *args],
                          capture_output=True, text=True, timeout=600, **kwargs)


def metrics_of(out):
    return json.loads((out / 'metrics.json').read_text())


def curves(metrics):
    return [(e['train_loss'], e['train_acc'], e['test_acc']) for e in metrics['epochs']]


def toy_iters(seed=0, n=64, batch_size=16):
    """A small separable problem: labels are the arg-max of a fixed linear map."""
    rng = onp.random.default_rng(seed)
    X = rng.random((n, 1, 28, 28), dtype=onp.float32)
    y = (X.reshape(n, -1) @ rng.normal(size=(784, 10))).argmax(axis=1).astype(onp.int32)
    return ArrayLoader(X, y, batch_size, shuffle=True), ArrayLoader(X, y, batch_size)


@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_checkpoint_round_trip_continues_identically(tmp_path, impl):
    npx.set_np()

    def fresh(seed):
        mx.random.seed(seed)
        onp.random.seed(seed)
        if impl == 'concise':
            net = concise.build_net()
            return net, concise.build_loss(), concise.build_trainer(net, 0.5)
        net = scratch.SoftmaxRegressionScratch()
        return net, scratch.softmax_cross_entropy, scratch.SGD(net.parameters(), 0.5)

    train_iter, test_iter = toy_iters()
    net, loss, updater = fresh(1)
    straight = training.train(net, train_iter, test_iter, loss, updater, 4, mx.cpu())

    net, loss, updater = fresh(1)
    first = training.train(net, train_iter, test_iter, loss, updater, 2, mx.cpu())
    path = str(tmp_path / 'checkpoint.npz')
    save_checkpoint(path, impl, net, updater, first)
    onp.random.seed(999)  # disturb the shuffling state: the checkpoint must restore it

    net, loss, updater = fresh(2)  # other initial weights: the checkpoint must replace them
    history = load_checkpoint(path, impl, net, updater)
    resumed = training.train(net, train_iter, test_iter, loss, updater, 4, mx.cpu(),
                             history=history)
    key = lambda h: [(e['epoch'], e['train_loss'], e['test_acc']) for e in h]  # noqa: E731
    assert key(resumed) == key(straight)


def test_checkpoint_of_other_model_or_garbage_is_a_clear_error(tmp_path):
    npx.set_np()
    net = concise.build_net()
    trainer = concise.build_trainer(net, 0.1)
    path = str(tmp_path / 'checkpoint.npz')
    save_checkpoint(path, 'concise', net, trainer, [])
    other = scratch.SoftmaxRegressionScratch()
    with pytest.raises(CheckpointError, match='concise model, not scratch'):
        load_checkpoint(path, 'scratch', other, scratch.SGD(other.parameters(), 0.1))
    # a concise net of another shape (20 classes)
    wide = concise.build_net(num_outputs=20)
    wide(np.zeros((1, 784)))
    with pytest.raises(CheckpointError, match='do not fit'):
        load_checkpoint(path, 'concise', wide, concise.build_trainer(wide, 0.1))
    garbage = tmp_path / 'garbage.npz'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='not a gluon_softmax checkpoint'):
        load_checkpoint(str(garbage), 'concise', net, trainer)
    with pytest.raises(CheckpointError, match='no checkpoint'):
        load_checkpoint(str(tmp_path / 'absent.npz'), 'concise', net, trainer)


def test_a_nan_in_a_batch_stops_training_naming_the_batch():
    npx.set_np()
    X = onp.random.default_rng(0).random((8 * 5, 1, 28, 28), dtype=onp.float32)
    X[8 * 2 + 3, 0, 0, 0] = onp.nan  # in the third batch
    loader = ArrayLoader(X, onp.zeros(len(X), onp.int32), 8)
    net = scratch.SoftmaxRegressionScratch()
    with pytest.raises(training.Diverged) as info:
        training.train(net, loader, loader, scratch.softmax_cross_entropy,
                       scratch.SGD(net.parameters(), 0.1), 3, mx.cpu())
    assert info.value.batch == 3 and info.value.epoch == 1
    assert 'epoch 1, batch 3' in str(info.value) and 'smaller learning rate' in str(info.value)


def test_the_bound_is_configurable():
    npx.set_np()
    train_iter, test_iter = toy_iters()
    net = scratch.SoftmaxRegressionScratch()
    # the first batch's loss is about ln 10 = 2.3, above a bound of 1
    with pytest.raises(training.Diverged) as info:
        training.train(net, train_iter, test_iter, scratch.softmax_cross_entropy,
                       scratch.SGD(net.parameters(), 0.1), 1, mx.cpu(), max_loss=1.0)
    assert info.value.batch == 1 and info.value.loss == pytest.approx(onp.log(10), abs=0.1)


@pytest.mark.integration
def test_huge_learning_rate_exits_3_and_keeps_the_last_good_checkpoint(tmp_path, real_data_dir):
    out = tmp_path / 'run'
    assert cli('--epochs', '1', '--seed', '0', '--out', str(out)).returncode == 0
    before = (out / 'checkpoint.npz').read_bytes()
    result = cli('--resume', str(out), '--epochs', '2', '--max-loss', '1e-3')
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith('error: training diverged at epoch 2, batch ')
    assert 'Traceback' not in result.stderr
    assert (out / 'checkpoint.npz').read_bytes() == before
    assert metrics_of(out)['status'] == 'diverged' and len(metrics_of(out)['epochs']) == 1

    fresh = tmp_path / 'lr1000'
    result = cli('--lr', '1000', '--seed', '0', '--out', str(fresh))
    assert result.returncode == 3
    assert 'diverged at epoch 1' in result.stderr and '--lr 1000' in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_resume_gives_the_metrics_of_an_uninterrupted_run(tmp_path, real_data_dir, impl):
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    assert cli('--impl', impl, '--epochs', '3', '--seed', '7', '--out', str(whole)).returncode == 0
    assert cli('--impl', impl, '--epochs', '1', '--seed', '7', '--out', str(part)).returncode == 0
    result = cli('--resume', str(part), '--epochs', '3')
    assert result.returncode == 0, result.stderr
    assert curves(metrics_of(part)) == curves(metrics_of(whole))
    assert metrics_of(part)['status'] == 'complete'


@pytest.mark.integration
@pytest.mark.parametrize('signum, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_epoch_keeps_the_last_epoch_and_says_how_to_resume(
        tmp_path, real_data_dir, signum, status):
    out = tmp_path / 'run'
    # the book's DataLoader path takes seconds per epoch, so the signal lands mid-epoch
    proc = subprocess.Popen([sys.executable, '-m', 'gluon_softmax.train', '--loader',
                             'dataloader', '--epochs', '3', '--seed', '0', '--out', str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith('epoch 1/3'):
                break
        os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert f'--resume {out}' in err and 'Traceback' not in err
    metrics = metrics_of(out)
    assert metrics['status'] == 'interrupted' and [e['epoch'] for e in metrics['epochs']] == [1]
    assert (out / 'checkpoint.npz').exists() and (out / 'curves.html').exists()
    assert not [name for name in os.listdir(out) if name.endswith('.tmp')]
