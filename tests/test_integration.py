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
def test_fast_path_serves_the_books_dataloader_batches(real_data_dir):
    """On the whole data set, a shuffled epoch and the test split: bit for bit the batches of
    the book's ``transform_first(ToTensor)`` DataLoader, under the same global seed (the next
    epochs' orders: test_data.py, on tiny files)."""
    import numpy as onp

    from gluon_softmax import data
    from gluon_softmax.data import set_seed
    from gluon_softmax.idx import read_split
    book_train, book_test = data.load_data_fashion_mnist(256, root=real_data_dir)
    fast_train, fast_test = data.load_arrays_iters(256, root=real_data_dir)
    set_seed(0)  # as the CLI seeds: both draw their orders from NumPy's global generator
    state, labels = onp.random.get_state(), []
    for book_loader, fast_loader in ((book_train, fast_train), (book_test, fast_test)):
        onp.random.set_state(state)
        book = [(X.asnumpy(), y.asnumpy()) for X, y in book_loader]
        onp.random.set_state(state)
        fast = [(X.asnumpy(), y.asnumpy()) for X, y in fast_loader]
        assert len(book) == len(fast) == len(fast_loader)
        for (book_X, book_y), (fast_X, fast_y) in zip(book, fast):
            assert book_X.dtype == fast_X.dtype and book_X.shape == fast_X.shape
            onp.testing.assert_array_equal(book_X, fast_X)
            onp.testing.assert_array_equal(book_y.astype(onp.int64), fast_y.astype(onp.int64))
        labels.append(onp.concatenate([y for _, y in fast]))
    shuffled, test = labels
    assert len(shuffled) == 60000 and len(test) == 10000
    assert (shuffled != read_split(real_data_dir, True)[1]).any()  # the epoch was shuffled


@pytest.mark.xdist_group('default-concise')
def test_the_cli_with_the_books_dataloader_trains_like_the_fast_path(tmp_path, real_data_dir,
                                                                      default_concise):
    # the loader's wiring in the CLI: the first epoch of the default run, through the book's path
    book = train(tmp_path / 'book', '--data-dir', real_data_dir, '--loader', 'dataloader',
                 '--epochs', '1')
    (fast,), (slow,) = default_concise['epochs'][:1], book['epochs']
    assert slow['train_loss'] == pytest.approx(fast['train_loss'], rel=1e-5)
    assert slow['test_acc'] == fast['test_acc'] and slow['train_acc'] == fast['train_acc']
