"""The CLI: outputs of a run, and every bad input rejected with one `error:` line and exit 2."""
import json
import os
import re

import mxnet as mx
import pytest
from plotly.offline import get_plotlyjs

from gluon_softmax import concise, scratch

import procs
import small_data
from conftest import assert_usage_error


def run_cli(*args, cwd=None):
    """Run ``python -m gluon_softmax.train`` in a subprocess (on the small data set when
    --data-dir names it); returns the CompletedProcess."""
    return procs.run(small_data.python_m('gluon_softmax.train', *args), cwd=cwd)


@pytest.mark.parametrize('argv, needle', [
    (['--epochs', '0'], '--epochs'),
    (['--epochs', 'ten'], '--epochs'),
    (['--batch-size', '-1'], '--batch-size'),
    (['--resize', '0'], '--resize'),
    (['--lr', '0'], '--lr'),
    (['--lr', 'nan'], '--lr'),
    (['--lr', 'inf'], '--lr'),
    (['--lr', '-0.1'], '--lr'),
    (['--impl', 'mlp'], '--impl'),
    (['--ctx', 'tpu'], '--ctx'),
    (['--ctx', 'cpu:x'], '--ctx'),
    (['--num-workers', '-2'], '--num-workers'),
    (['--loader-workers', 'x'], '--loader-workers'),
    (['--seed', '4294967296'], '--seed'),
    (['--seed', '-1'], '--seed'),
    (['--lr', '1e39'], '--lr'),
    (['--wd', '1e39'], '--wd'),
    (['--momentum', '1'], '--momentum'),
])
def test_bad_flags_exit_2_with_one_error_line(capsys, tmp_path, argv, needle):
    out = tmp_path / 'run'
    assert_usage_error(capsys, argv + ['--out', str(out)], needle)
    assert not out.exists()


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason='this MXNet sees a GPU')
def test_gpu_on_cpu_build_says_how_to_get_one(capsys, tmp_path):
    line = assert_usage_error(capsys, ['--ctx', 'gpu', '--out', str(tmp_path / 'r')],
                              '--ctx', 'no GPU', 'mxnet-cu')
    assert 'Traceback' not in line


def test_missing_data_dir_names_it_and_writes_nothing(capsys, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    out = tmp_path / 'run'
    assert_usage_error(capsys, ['--data-dir', str(empty), '--out', str(out)], str(empty),
                       'dataset-fashion-mnist', '--download')
    assert not out.exists()


def test_out_that_is_a_file_is_rejected(capsys, tmp_path, real_data_dir):
    out = tmp_path / 'file'
    out.write_text('keep me')
    assert_usage_error(capsys, ['--out', str(out), '--epochs', '1'], str(out))
    assert out.read_text() == 'keep me'


def test_out_that_is_another_directory_is_rejected(capsys, tmp_path, real_data_dir):
    (tmp_path / 'notes.txt').write_text('keep me')
    assert_usage_error(capsys, ['--out', str(tmp_path), '--epochs', '1'], str(tmp_path),
                       "not a run's", 'notes.txt')
    assert sorted(os.listdir(tmp_path)) == ['notes.txt']


def test_subprocess_error_has_no_traceback(tmp_path):
    result = run_cli('--data-dir', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'r'))
    assert result.returncode == 2
    assert result.stderr.startswith('error: ')
    assert 'Traceback' not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_short_run_writes_metrics_curves_and_parameters(tmp_path, small_data_dir, impl):
    out = tmp_path / 'run'
    result = run_cli('--impl', impl, '--epochs', '2', '--seed', '3', '--out', str(out),
                     '--data-dir', small_data_dir)
    assert result.returncode == 0, result.stderr
    assert len([ln for ln in result.stdout.splitlines() if ln.startswith('epoch ')]) == 2

    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['impl'] == impl and metrics['ctx'] == 'cpu(0)' and metrics['seed'] == 3
    assert metrics['hyperparameters']['lr'] == 0.1
    assert metrics['hyperparameters']['batch_size'] == 256
    assert [e['epoch'] for e in metrics['epochs']] == [1, 2]
    for entry in metrics['epochs']:
        assert set(entry) == {'epoch', 'train_loss', 'train_acc', 'test_loss', 'test_acc',
                              'seconds'}
        assert 0 < entry['train_loss'] < 2.31 and 0.5 < entry['test_acc'] <= 1
        assert 0 < entry['test_loss'] < 2.31

    html = (out / 'curves.html').read_text()
    # offline: the only script loaded is the one copy of plotly.js beside the page
    assert re.findall(r'<script[^>]*\ssrc="([^"]*)"', html) == ['plotly.min.js']
    for name in ('train loss', 'test loss', 'train acc', 'test acc'):
        assert f'"name":"{name}"' in html
    assert f'{impl}, 2 epochs, lr 0.1, batch size 256, seed 3, on cpu(0)' in html  # subtitle

    report = (out / 'report.html').read_text()
    assert report.count('class="plotly-graph-div"') == 7 and f'<td>{impl}</td>' in report
    assert re.findall(r'<script[^>]*\ssrc="([^"]*)"', report) == ['plotly.min.js']
    for heading in ('Mistakes', 'Most-confused pairs', 'Predictions', 'Weight templates'):
        assert f'<h2>{heading}</h2>' in report
    assert 'did not complete' not in report

    # one copy of plotly.js in the run directory, which stays small
    bundle = get_plotlyjs()[:300]
    files = [path for path in out.iterdir() if path.is_file()]
    assert [p.name for p in files if bundle in p.read_text(errors='ignore')] == ['plotly.min.js']
    assert sum(p.stat().st_size for p in files) <= 6 * 2 ** 20

    # the saved parameters load into a fresh model of the same kind
    if impl == 'concise':
        net = concise.build_net(hybridize=False)
        net.load_parameters(str(out / 'model.params'))
        assert net[0].weight.data().shape == (10, 784)
    else:
        net = scratch.SoftmaxRegressionScratch()
        net.load_parameters(str(out / 'model.params'))
        assert net.W.shape == (784, 10)


def test_out_that_cannot_be_created_is_rejected(capsys, tmp_path, real_data_dir):
    blocker = tmp_path / 'file'
    blocker.write_text('keep me')
    assert_usage_error(capsys, ['--out', str(blocker / 'run'), '--epochs', '1'],
                       str(blocker / 'run'), 'cannot create')
    assert blocker.read_text() == 'keep me'


def test_resume_of_a_directory_that_is_not_a_run(capsys, tmp_path):
    assert_usage_error(capsys, ['--resume', str(tmp_path)], '--resume', 'not a run directory')
