"""The book's checks on the real data set: the default recipe, both implementations, 10 epochs."""
import json
import sys

import pytest

import procs

# 10 epochs over the whole data set: longer bounds than other tests' (procs.py)
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.timeout(procs.LONG_TEST_SECONDS)]


def train(tmp_path, *args):
    """Run the CLI with the default recipe plus ``args``; returns metrics.json as a dict."""
    out = tmp_path / 'run'
    result = procs.run([sys.executable, '-m', 'gluon_softmax.train', '--out', str(out),
                        '--seed', '0', *args], timeout=procs.LONG_RUN_SECONDS)
    assert result.returncode == 0, result.stderr
    return json.loads((out / 'metrics.json').read_text())


@pytest.fixture(scope='module')
def default_concise(tmp_path_factory):
    """The default recipe's run (concise, memory loader, seed 0): two tests read it."""
    from gluon_softmax import data
    try:
        data_dir = data.find_data_dir()
    except data.DataError as e:
        pytest.skip(f'real Fashion-MNIST not installed: {e}')
    return train(tmp_path_factory.mktemp('default-concise'), '--data-dir', data_dir)


# in one xdist worker (--dist loadgroup), so the shared run is made once
@pytest.mark.xdist_group('default-concise')
@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_default_recipe_reaches_the_books_accuracy(tmp_path, real_data_dir, impl, request):
    if impl == 'concise':
        metrics = request.getfixturevalue('default_concise')
    else:
        metrics = train(tmp_path, '--impl', impl, '--data-dir', real_data_dir)
    last = metrics['epochs'][-1]
    assert len(metrics['epochs']) == 10
    assert last['test_acc'] >= 0.82
    assert last['train_loss'] < 0.5


@pytest.mark.xdist_group('default-concise')
def test_fast_path_matches_the_books_dataloader_path(tmp_path, real_data_dir, default_concise):
    fast = default_concise
    book = train(tmp_path / 'book', '--data-dir', real_data_dir, '--loader', 'dataloader')
    assert abs(fast['epochs'][-1]['test_acc'] - book['epochs'][-1]['test_acc']) <= 0.005
    # same seed -> same shuffles and same pixel values, so the curves agree epoch by epoch
    for f, b in zip(fast['epochs'], book['epochs']):
        assert f['train_loss'] == pytest.approx(b['train_loss'], rel=1e-4)
