"""The book's checks on the real data set: the default recipe, both implementations, 10 epochs."""
import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def train(tmp_path, *args):
    """Run the CLI with the default recipe plus ``args``; returns metrics.json as a dict."""
    out = tmp_path / 'run'
    result = subprocess.run([sys.executable, '-m', 'gluon_softmax.train', '--out', str(out),
                             '--seed', '0', *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads((out / 'metrics.json').read_text())


@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_default_recipe_reaches_the_books_accuracy(tmp_path, real_data_dir, impl):
    metrics = train(tmp_path, '--impl', impl, '--data-dir', real_data_dir)
    last = metrics['epochs'][-1]
    assert len(metrics['epochs']) == 10
    assert last['test_acc'] >= 0.82
    assert last['train_loss'] < 0.5


def test_fast_path_matches_the_books_dataloader_path(tmp_path, real_data_dir):
    fast = train(tmp_path / 'fast', '--data-dir', real_data_dir)
    book = train(tmp_path / 'book', '--data-dir', real_data_dir, '--loader', 'dataloader')
    assert abs(fast['epochs'][-1]['test_acc'] - book['epochs'][-1]['test_acc']) <= 0.005
    # same seed -> same shuffles and same pixel values, so the curves agree epoch by epoch
    for f, b in zip(fast['epochs'], book['epochs']):
        assert f['train_loss'] == pytest.approx(b['train_loss'], rel=1e-4)
