"""Issue 19, "one loop": on one device and one process the CLI trains with the chapter's own
``training.train_epoch``, the function the notebook prints; run management plugs in from
outside (a loss that feeds the divergence check, a progress bar over the batches), and the
scale-out epoch is used only for several devices or worker processes.
"""
import json

import pytest

from gluon_softmax import training
from gluon_softmax.run import watch
# imported now, not first inside a capsys test: progress.progress_bar binds sys.stderr as its
# default argument when imported, and a capsys stream is closed after its test
from gluon_softmax.train import EXIT_DIVERGED, main


@pytest.fixture
def epoch_calls(monkeypatch):
    """Every call of ``training.train_epoch``, recorded; each still trains (the original runs)."""
    calls = []
    original = training.train_epoch

    def counted(net, train_iter, loss, updater, ctx):
        calls.append({'loss': loss, 'ctx': ctx})
        return original(net, train_iter, loss, updater, ctx)
    monkeypatch.setattr(training, 'train_epoch', counted)
    return calls


def run_cli(tmp_path, data_dir, capsys, *flags):
    """``main`` in this process on the small data set; ``(status, metrics, stderr)``."""
    out = tmp_path / 'run'
    status = main(['--epochs', '2', '--seed', '0', '--data-dir', str(data_dir),
                   '--out', str(out), *flags])
    err = capsys.readouterr().err
    with open(out / 'metrics.json', encoding='utf-8') as f:
        return status, json.load(f), err


@pytest.mark.parametrize('impl', ['scratch', 'concise'])
def test_the_single_device_cli_trains_with_the_chapter_s_train_epoch(
        tmp_path, small_data_dir, capsys, epoch_calls, impl):
    status, metrics, err = run_cli(tmp_path, small_data_dir, capsys, '--impl', impl)
    assert status == 0, err
    assert len(epoch_calls) == 2 == len(metrics['epochs'])  # once per epoch, and nothing else
    # the divergence check plugs in through the loss the loop is given, not inside the loop
    assert all(isinstance(call['loss'], watch.WatchedLoss) for call in epoch_calls)
    assert [str(call['ctx']) for call in epoch_calls] == ['cpu(0)'] * 2


def test_several_devices_train_with_the_scale_out_epoch(tmp_path, small_data_dir, capsys,
                                                        epoch_calls):
    status, metrics, err = run_cli(tmp_path, small_data_dir, capsys, '--ctx', 'cpu:0,cpu:1')
    assert status == 0, err
    assert len(metrics['epochs']) == 2 and epoch_calls == []


def test_the_one_loop_still_stops_a_diverging_run(tmp_path, small_data_dir, capsys, epoch_calls):
    status, metrics, err = run_cli(tmp_path, small_data_dir, capsys, '--lr', '1000')
    assert status == EXIT_DIVERGED, err
    assert len(epoch_calls) == 1 and metrics['status'] == 'diverged'
    assert metrics['ended']['epoch'] == 1 and metrics['ended']['batch'] >= 1
    assert 'training diverged at epoch 1, batch' in err
