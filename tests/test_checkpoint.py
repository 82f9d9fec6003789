"""Checkpoints, resume, interruption by signals and divergence."""
import json
import os
import shlex
import signal
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest

from gluon_softmax import training
from gluon_softmax.compose import build_model
from gluon_softmax.run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gluon_softmax.data import ArrayLoader
from gluon_softmax.run.epoch import EpochRunner
from gluon_softmax.data import set_seed
from gluon_softmax.run.settings import Recipe
from gluon_softmax.run.watch import Diverged, LossWatch

import procs
import small_data


def cli(*args, **kwargs):
    """Run the training CLI in a subprocess (a hang fails the test with its stacks), on the small
    data set when --data-dir names it."""
    return procs.run(small_data.python_m('gluon_softmax.train', *args), **kwargs)


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


def build(impl='concise', lr=0.5, seed=1, **recipe):
    """A fresh model of ``impl`` after seeding everything with ``seed``."""
    set_seed(seed)
    return build_model(Recipe(impl=impl, lr=lr, **recipe), [mx.cpu()], 4)


def train(model, train_iter, test_iter, num_epochs, **kwargs):
    return training.train(model.net, train_iter, test_iter, model.loss, model.updater,
                          training.Epochs(num_epochs, **kwargs))


@pytest.mark.parametrize('impl, recipe', [('concise', {'momentum': 0.9}), ('scratch', {})])
def test_checkpoint_round_trip_continues_identically(tmp_path, impl, recipe):
    train_iter, test_iter = toy_iters()
    straight = train(build(impl, **recipe), train_iter, test_iter, 4)

    model = build(impl, **recipe)
    first = train(model, train_iter, test_iter, 2)
    path = str(tmp_path / 'checkpoint.npz')
    save_checkpoint(path, model, first)
    onp.random.seed(999)  # disturb the shuffling state: the checkpoint must restore it

    model = build(impl, seed=2, **recipe)  # other initial weights: the checkpoint replaces them
    history = load_checkpoint(path, model)
    resumed = train(model, train_iter, test_iter, 4, history=history)
    key = lambda h: [(e['epoch'], e['train_loss'], e['test_acc']) for e in h]  # noqa: E731
    assert key(resumed) == key(straight)


def test_checkpoint_temporary_files_stay_in_the_run_directory(tmp_path, monkeypatch):
    """Nothing goes through $TMPDIR: a full /tmp must not break a checkpoint."""
    monkeypatch.setenv('TMPDIR', str(tmp_path / 'no-such-dir'))
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', None)  # re-read $TMPDIR
    model = build()
    path = tmp_path / 'run' / 'checkpoint.npz'
    path.parent.mkdir()
    save_checkpoint(str(path), model, [])
    assert load_checkpoint(str(path), build(seed=3)) == []
    assert os.listdir(path.parent) == ['checkpoint.npz']


def test_checkpoint_of_other_model_or_garbage_is_a_clear_error(tmp_path):
    model = build('concise')
    path = str(tmp_path / 'checkpoint.npz')
    save_checkpoint(path, model, [])
    with pytest.raises(CheckpointError, match='concise model, not scratch'):
        load_checkpoint(path, build('scratch'))
    # a model of another shape (14 x 14 inputs)
    with pytest.raises(CheckpointError, match='do not fit'):
        load_checkpoint(path, build('concise', resize=14))
    garbage = tmp_path / 'garbage.npz'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='not a gluon_softmax checkpoint'):
        load_checkpoint(str(garbage), model)
    with pytest.raises(CheckpointError, match='no checkpoint'):
        load_checkpoint(str(tmp_path / 'absent.npz'), model)


def rewrite(path, drop=(), meta_changes=None):
    """Rewrite the checkpoint at ``path`` without the arrays ``drop`` and with ``meta`` changed."""
    with onp.load(path) as f:
        arrays = {name: f[name] for name in f.files if name not in drop}
    meta = json.loads(arrays['meta'].tobytes().decode())
    for key, value in (meta_changes or {}).items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    arrays['meta'] = onp.frombuffer(json.dumps(meta).encode(), dtype=onp.uint8)
    with open(path, 'wb') as f:
        onp.savez(f, **arrays)


@pytest.mark.parametrize('drop, meta, needle', [
    (('numpy_rng_keys',), None, 'no numpy_rng_keys'),
    (('params',), None, 'no params'),
    (('trainer',), None, 'no trainer state'),
    ((), {'numpy_rng': None}, 'numpy_rng'),
    ((), {'numpy_rng': 'MT19937'}, 'numpy_rng'),
    ((), {'python_rng': None}, 'python_rng'),
    ((), {'history': {'epoch': 1}}, 'history'),
    ((), {'history': [{'epoch': 2}]}, 'history'),
    ((), {'impl': 'mlp'}, 'impl'),
])
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path, drop, meta, needle):
    model = build('concise')
    path = str(tmp_path / 'checkpoint.npz')
    save_checkpoint(path, model, [])
    rewrite(path, drop, meta)
    with pytest.raises(CheckpointError, match='damaged checkpoint') as info:
        load_checkpoint(path, build('concise'))
    assert needle in str(info.value)


def watched(max_loss=100.0, check_every=20):
    """An epoch function that checks the batch losses as the CLI does on one device: the
    chapter's train_epoch, given a loss that feeds the watch."""
    return EpochRunner(training.train_epoch, watch=LossWatch(max_loss, check_every=check_every))


@pytest.mark.parametrize('check_every', [1, 2, 20])
def test_a_nan_in_a_batch_stops_training_naming_the_batch(check_every):
    X = onp.random.default_rng(0).random((8 * 5, 1, 28, 28), dtype=onp.float32)
    X[8 * 2 + 3, 0, 0, 0] = onp.nan  # in the third batch
    loader = ArrayLoader(X, onp.zeros(len(X), onp.int32), 8)
    with pytest.raises(Diverged) as info:
        train(build('scratch', 0.1), loader, loader, 3, epoch_fn=watched(check_every=check_every))
    assert info.value.batch == 3 and info.value.epoch == 1
    assert 'epoch 1, batch 3' in str(info.value) and 'smaller learning rate' in str(info.value)


def test_the_bound_is_configurable():
    train_iter, test_iter = toy_iters()
    # the first batch's loss is about ln 10 = 2.3, above a bound of 1
    with pytest.raises(Diverged) as info:
        train(build('scratch', 0.1), train_iter, test_iter, 1, epoch_fn=watched(1.0))
    assert info.value.batch == 1 and info.value.loss == pytest.approx(onp.log(10), abs=0.1)


def test_the_teaching_loop_has_no_divergence_check():
    """The chapter's train_epoch trains on, as the book's does; the CLI's epoch function stops."""
    X = onp.random.default_rng(0).random((16, 1, 28, 28), dtype=onp.float32)
    X[3, 0, 0, 0] = onp.nan
    loader = ArrayLoader(X, onp.zeros(len(X), onp.int32), 8)
    entry, = train(build('scratch', 0.1), loader, loader, 1)
    assert onp.isnan(entry['train_loss'])


@pytest.mark.slow
@pytest.mark.integration
def test_huge_learning_rate_exits_3_and_keeps_the_last_good_checkpoint(tmp_path, small_data_dir):
    out, data = tmp_path / 'run', ('--data-dir', small_data_dir)
    assert cli('--epochs', '1', '--seed', '0', '--out', str(out), *data).returncode == 0
    before = (out / 'checkpoint.npz').read_bytes()
    result = cli('--resume', str(out), '--epochs', '2', '--max-loss', '1e-3', *data)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith('error: training diverged at epoch 2, batch ')
    assert 'Traceback' not in result.stderr
    assert (out / 'checkpoint.npz').read_bytes() == before
    assert metrics_of(out)['status'] == 'diverged' and len(metrics_of(out)['epochs']) == 1
    # the pages say why the run ended, and where
    ended = metrics_of(out)['ended']
    why = f"This run did not complete: diverged at epoch 2, batch {ended['batch']}"
    assert why in (out / 'curves.html').read_text() and why in (out / 'report.html').read_text()

    fresh = tmp_path / 'lr1000'
    result = cli('--lr', '1000', '--seed', '0', '--out', str(fresh), *data)
    assert result.returncode == 3
    assert 'diverged at epoch 1' in result.stderr and '--lr 1000' in result.stderr


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_resume_gives_the_metrics_of_an_uninterrupted_run(tmp_path, small_data_dir, impl):
    whole, part, data = tmp_path / 'whole', tmp_path / 'part', ('--data-dir', small_data_dir)
    assert cli('--impl', impl, '--epochs', '3', '--seed', '7', '--out', str(whole),
               *data).returncode == 0
    assert cli('--impl', impl, '--epochs', '1', '--seed', '7', '--out', str(part),
               *data).returncode == 0
    result = cli('--resume', str(part), '--epochs', '3', *data)
    assert result.returncode == 0, result.stderr
    assert curves(metrics_of(part)) == curves(metrics_of(whole))
    assert metrics_of(part)['status'] == 'complete'


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('signum, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_epoch_keeps_the_last_epoch_and_says_how_to_resume(
        tmp_path, real_data_dir, signum, status):
    out = tmp_path / 'run'
    # the program signals itself as it prints epoch 1's line (small_data.py, nothing pinned:
    # the real data set), so the signal lands at the start of epoch 2 on any machine
    proc = procs.start(small_data.command(None, 'gluon_softmax.train', '--epochs', '3',
                                          '--seed', '0', '--out', out,
                                          signal_after=(signum, 'epoch 1/3')),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = procs.communicate(proc, 60)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert f'-m gluon_softmax.train --resume {out}' in err and 'Traceback' not in err
    metrics = metrics_of(out)
    assert metrics['status'] == 'interrupted' and [e['epoch'] for e in metrics['epochs']] == [1]
    assert (out / 'checkpoint.npz').exists() and (out / 'curves.html').exists()
    assert not [name for name in os.listdir(out) if name.endswith('.tmp')]
    why = f'This run did not complete: interrupted by {signal.Signals(signum).name} during epoch 2'
    assert why in (out / 'report.html').read_text() and why in (out / 'curves.html').read_text()

    # the hint works as printed: pasted into a shell elsewhere, with no venv activated
    hint = err.split('continue with: ', 1)[1].strip()
    resumed = procs.run(['sh', '-c', hint], cwd='/', env={'PATH': '/usr/bin:/bin'})
    assert resumed.returncode == 0, resumed.stderr
    assert metrics_of(out)['status'] == 'complete' and len(metrics_of(out)['epochs']) == 3


@pytest.mark.slow
@pytest.mark.integration
def test_the_resume_hint_of_a_run_given_data_dir_carries_it(tmp_path, small_data_copy):
    # a resume looks for the data set as a new run does: the hint names the run's --data-dir
    out = tmp_path / 'run'
    cut = procs.run(small_data.command(small_data_copy, 'gluon_softmax.train', '--epochs', 2,
                                       '--seed', 0, '--data-dir', small_data_copy, '--out', out,
                                       signal_after=(signal.SIGINT, 'epoch 1/2')))
    assert cut.returncode == 130, cut.stderr
    hint = cut.stderr.split('continue with: ', 1)[1].strip()
    argv = shlex.split(hint)
    assert argv[:3] == [sys.executable, '-m', 'gluon_softmax.train'], hint
    assert argv[3:] == ['--resume', str(out), '--data-dir', small_data_copy], hint
    # as printed, on the small copy (its counts pinned, as for every run on it)
    resumed = procs.run(small_data.command(small_data_copy, *argv[2:]))
    assert resumed.returncode == 0, resumed.stderr
    assert metrics_of(out)['status'] == 'complete' and len(metrics_of(out)['epochs']) == 2
