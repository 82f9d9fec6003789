"""Fashion-MNIST files: reading, rejecting corrupt files, finding, downloading, serving to Gluon."""
import functools
import gzip
import hashlib
import math
import os
import re
import sys

import numpy as onp
import pytest
from mxnet import gluon
from mxnet.gluon.data.vision import transforms

from conftest import (IDX_NAMES, IMAGES_MAGIC, LABELS_MAGIC, TINY_SPLITS, assert_usage_error,
                      tiny_arrays, write_idx, write_tiny_dataset)
import gluon_softmax
from gluon_softmax import data, data_files
from gluon_softmax.data import DataError, read_idx, read_split

import procs
import small_data


# --- reading valid files ------------------------------------------------------------------

@pytest.mark.parametrize('compress', [True, False], ids=['gz', 'plain'])
@pytest.mark.parametrize('train', [True, False], ids=['train', 'test'])
def test_tiny_files_load(tmp_path, compress, train):
    directory = write_tiny_dataset(tmp_path / 'd', compress=compress)
    assert sorted(os.listdir(directory)) == sorted(n + ('.gz' if compress else '')
                                                   for n in IDX_NAMES)
    images, labels = read_split(directory, train, verify=False)
    expected_images, expected_labels = tiny_arrays(train)
    assert images.shape == (TINY_SPLITS[train][2], 28, 28) and images.dtype == onp.uint8
    assert labels.dtype == onp.int32
    onp.testing.assert_array_equal(images, expected_images)
    onp.testing.assert_array_equal(labels, expected_labels)


def test_read_idx_reads_one_file(tiny_idx_dir):
    images, labels = tiny_arrays(train=False)
    got = read_idx(os.path.join(tiny_idx_dir, 't10k-images-idx3-ubyte.gz'), IMAGES_MAGIC)
    onp.testing.assert_array_equal(got, images)
    sha = hashlib.sha256(gzip.open(tiny_idx_dir / 't10k-labels-idx1-ubyte.gz').read()).hexdigest()
    got = read_idx(os.path.join(tiny_idx_dir, 't10k-labels-idx1-ubyte.gz'), LABELS_MAGIC, sha)
    onp.testing.assert_array_equal(got, labels)


# --- rejecting corrupt files: DataError naming the file -----------------------------------
# Each corruption takes the tiny directory, damages the train split, and returns the path
# the error message must name.

def _path(directory, name):
    return os.path.join(directory, name)


def missing_file(d):
    os.remove(_path(d, 'train-labels-idx1-ubyte.gz'))
    return _path(d, 'train-labels-idx1-ubyte')


def empty_gz_file(d):
    open(_path(d, 'train-images-idx3-ubyte.gz'), 'wb').close()
    return _path(d, 'train-images-idx3-ubyte.gz')


def empty_plain_file(d):
    os.remove(_path(d, 'train-images-idx3-ubyte.gz'))
    open(_path(d, 'train-images-idx3-ubyte'), 'wb').close()
    return _path(d, 'train-images-idx3-ubyte')


def truncated_gzip(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    raw = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(raw[:len(raw) // 2])
    return path


def not_gzip_but_named_gz(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    write_idx(path, tiny_arrays(True)[0], IMAGES_MAGIC, compress=False)
    return path


def wrong_magic(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    write_idx(path, tiny_arrays(True)[0], LABELS_MAGIC)  # a labels magic on an images file
    return path


def wrong_magic_labels(d):
    path = _path(d, 'train-labels-idx1-ubyte.gz')
    write_idx(path, tiny_arrays(True)[1], 2050)
    return path


def wrong_image_size(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    write_idx(path, onp.zeros((12, 27, 28), onp.uint8), IMAGES_MAGIC)
    return path


def count_mismatch(d):
    path = _path(d, 'train-labels-idx1-ubyte.gz')
    write_idx(path, onp.arange(11) % 10, LABELS_MAGIC)  # 11 labels for 12 images
    return path


def label_out_of_range(d):
    path = _path(d, 'train-labels-idx1-ubyte.gz')
    labels = tiny_arrays(True)[1].copy()
    labels[3] = 10
    write_idx(path, labels, LABELS_MAGIC)
    return path


def header_count_too_large(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    write_idx(path, tiny_arrays(True)[0], IMAGES_MAGIC, dims=(13, 28, 28))
    return path


def header_count_too_small(d):
    path = _path(d, 'train-labels-idx1-ubyte.gz')
    write_idx(path, tiny_arrays(True)[1], LABELS_MAGIC, dims=(11,))
    return path


def header_only_half(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    with gzip.open(path, 'wb') as f:
        f.write(b'\x00\x00\x08\x03\x00\x00')  # six bytes: shorter than the 16-byte header
    return path


CORRUPTIONS = [missing_file, empty_gz_file, empty_plain_file, truncated_gzip,
               not_gzip_but_named_gz, wrong_magic, wrong_magic_labels, wrong_image_size,
               count_mismatch, label_out_of_range, header_count_too_large,
               header_count_too_small, header_only_half]


@pytest.mark.parametrize('corrupt', CORRUPTIONS, ids=lambda f: f.__name__)
def test_corrupt_train_split_raises_data_error_naming_the_file(tiny_idx_dir, corrupt):
    path = corrupt(str(tiny_idx_dir))
    with pytest.raises(DataError) as info:
        read_split(tiny_idx_dir, True, verify=False)
    assert path in str(info.value)
    # the test split is untouched and still reads
    assert len(read_split(tiny_idx_dir, False, verify=False)[0]) == 8


@pytest.mark.parametrize('corrupt, words', [
    (wrong_magic, ['magic', str(LABELS_MAGIC), str(IMAGES_MAGIC)]),
    (wrong_image_size, ['27']),
    (label_out_of_range, ['10']),
    (count_mismatch, ['11', '12']),
    (header_count_too_large, ['13']),
], ids=lambda x: getattr(x, '__name__', None))
def test_error_messages_say_what_is_wrong(tiny_idx_dir, corrupt, words):
    corrupt(str(tiny_idx_dir))
    with pytest.raises(DataError) as info:
        read_split(tiny_idx_dir, True, verify=False)
    for word in words:
        assert word in str(info.value)


def test_read_idx_on_a_missing_file_names_it(tmp_path):
    path = str(tmp_path / 'nothing-here.gz')
    with pytest.raises(DataError, match='nothing-here'):
        read_idx(path, IMAGES_MAGIC)


def test_sha256_mismatch_in_read_idx(tiny_idx_dir):
    path = os.path.join(tiny_idx_dir, 'train-labels-idx1-ubyte.gz')
    with pytest.raises(DataError) as info:
        read_idx(path, LABELS_MAGIC, sha256='0' * 64)
    assert path in str(info.value) and '0' * 64 in str(info.value)


@pytest.mark.parametrize('train', [True, False])
def test_verified_read_rejects_files_that_are_not_the_published_ones(tiny_idx_dir, train):
    images_name = TINY_SPLITS[train][0]
    with pytest.raises(DataError) as info:
        read_split(tiny_idx_dir, train, verify=True)
    assert os.path.join(tiny_idx_dir, images_name) in str(info.value)


# --- finding the data ---------------------------------------------------------------------

@pytest.fixture
def isolated(monkeypatch, tmp_path, tiny_idx_dir):
    """No $FASHION_MNIST_DIR, an empty MXNet cache, and a complete copy at DEBIAN_DIR.

    The complete copy is what a forbidden fallback would find.
    """
    monkeypatch.delenv(data_files.ENV_DIR, raising=False)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet-home'))
    monkeypatch.setattr(data_files, 'DEBIAN_DIR', str(tiny_idx_dir))
    return tiny_idx_dir


def test_default_search_finds_the_debian_copy(isolated):
    assert os.path.samefile(data_files.find_data_dir(), isolated)


def test_default_search_prefers_the_mxnet_cache(isolated, tmp_path):
    cache = tmp_path / 'mxnet-home' / 'datasets' / 'fashion-mnist'
    write_tiny_dataset(cache)
    assert os.path.samefile(data_files.find_data_dir(), cache)


def test_explicit_root_without_files_does_not_fall_back(isolated, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(DataError) as info:
        data_files.find_data_dir(root=str(empty))
    assert str(empty) in str(info.value)
    for name in IDX_NAMES:
        assert name in str(info.value)


def test_explicit_root_missing_one_file_names_it(isolated, tmp_path):
    partial = write_tiny_dataset(tmp_path / 'partial')
    os.remove(partial / 't10k-labels-idx1-ubyte.gz')
    with pytest.raises(DataError) as info:
        data_files.find_data_dir(root=partial)
    assert str(partial) in str(info.value) and 't10k-labels-idx1-ubyte' in str(info.value)
    assert 'train-images-idx3-ubyte' not in str(info.value)


def test_explicit_root_that_does_not_exist_raises(isolated, tmp_path):
    missing = tmp_path / 'no' / 'such' / 'dir'
    with pytest.raises(DataError) as info:
        data_files.find_data_dir(root=str(missing))
    assert str(missing) in str(info.value)
    assert not missing.exists()  # not created as a side effect


def test_explicit_root_with_files_is_used(isolated, tmp_path):
    other = write_tiny_dataset(tmp_path / 'other', compress=False)
    assert os.path.samefile(data_files.find_data_dir(root=str(other)), other)


def test_environment_variable_is_used(isolated, monkeypatch, tmp_path):
    other = write_tiny_dataset(tmp_path / 'from-env')
    monkeypatch.setenv(data_files.ENV_DIR, str(other))
    assert os.path.samefile(data_files.find_data_dir(), other)


def test_environment_variable_never_falls_back(isolated, monkeypatch, tmp_path):
    empty = tmp_path / 'env-empty'
    empty.mkdir()
    monkeypatch.setenv(data_files.ENV_DIR, str(empty))
    with pytest.raises(DataError) as info:
        data_files.find_data_dir()
    assert str(empty) in str(info.value)


def test_environment_variable_naming_a_missing_directory_raises(isolated, monkeypatch, tmp_path):
    monkeypatch.setenv(data_files.ENV_DIR, str(tmp_path / 'typo'))
    with pytest.raises(DataError, match='typo'):
        data_files.find_data_dir()


def test_not_found_says_the_three_ways_to_get_the_data(monkeypatch, tmp_path):
    monkeypatch.delenv(data_files.ENV_DIR, raising=False)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet-home'))
    monkeypatch.setattr(data_files, 'DEBIAN_DIR', str(tmp_path / 'no-debian-copy'))
    with pytest.raises(DataError) as info:
        data_files.find_data_dir()
    message = str(info.value)
    assert 'apt-get install dataset-fashion-mnist' in message
    assert '--data-dir' in message and '$FASHION_MNIST_DIR' in message
    assert '--download' in message
    assert str(tmp_path / 'no-debian-copy') in message  # says where it looked


def test_not_found_when_candidate_dirs_hold_nothing(monkeypatch, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    monkeypatch.setattr(data_files, 'candidate_dirs',
                        lambda root=None: [(str(empty), False), (str(tmp_path / 'nope'), False)])
    with pytest.raises(DataError) as info:
        data_files.find_data_dir()
    for words in ('apt', '--data-dir', 'FASHION_MNIST_DIR', '--download'):
        assert words in str(info.value)


# --- Gluon Dataset and the book's DataLoaders ---------------------------------------------

def test_dataset_with_to_tensor(tiny_idx_dir):
    dataset = data.FashionMNIST(root=tiny_idx_dir, train=True, verify=False)
    assert len(dataset) == 12
    images, labels = tiny_arrays(True)
    tensors = dataset.transform_first(transforms.ToTensor())
    for i in (0, 5, 11):
        X, y = tensors[i]
        X = X.asnumpy()
        assert X.shape == (1, 28, 28) and X.dtype == onp.float32
        assert X.min() >= 0 and X.max() <= 1
        onp.testing.assert_allclose(X[0], images[i] / 255.0, rtol=0, atol=1e-7)
        assert int(y) == labels[i]
    assert tensors[0][0].asnumpy()[0, 0, 0] == 0 and tensors[0][0].asnumpy()[0, 0, 1] == 1


def test_dataset_test_split(tiny_idx_dir):
    dataset = data.FashionMNIST(root=tiny_idx_dir, train=False, verify=False)
    images, labels = tiny_arrays(False)
    assert len(dataset) == 8
    image, label = dataset[3]
    assert image.shape == (28, 28, 1)
    onp.testing.assert_array_equal(image.asnumpy()[..., 0], images[3])
    assert int(label) == labels[3]


def test_dataset_verifies_by_default(tiny_idx_dir):
    with pytest.raises(DataError):
        data.FashionMNIST(root=tiny_idx_dir, train=True)


@pytest.mark.parametrize('resize, side', [(None, 28), (32, 32)])
def test_load_data_fashion_mnist_batches(tiny_idx_dir, resize, side):
    train_iter, test_iter = data.load_data_fashion_mnist(4, resize=resize, root=tiny_idx_dir,
                                                         verify=False)
    train_batches, test_batches = list(train_iter), list(test_iter)
    assert len(train_batches) == 3 and len(test_batches) == 2
    for X, y in train_batches + test_batches:
        assert X.shape == (4, 1, side, side) and y.shape == (4,)
        assert X.dtype == onp.float32
    # every example exactly once per epoch
    seen = onp.sort(onp.concatenate([y.asnumpy() for _, y in train_batches]))
    onp.testing.assert_array_equal(seen, onp.sort(tiny_arrays(True)[1]))
    # the test split is not shuffled
    onp.testing.assert_array_equal(onp.concatenate([y.asnumpy() for _, y in test_batches]),
                                   tiny_arrays(False)[1])


# --- the fast path: arrays decoded once ---------------------------------------------------

def book_tensors(directory, train, resize=None):
    """The book's per-sample pipeline, stacked: (n, 1, side, side) float32 and labels."""
    trans = [transforms.Resize(resize), transforms.ToTensor()] if resize else \
        [transforms.ToTensor()]
    dataset = data.FashionMNIST(directory, train=train, verify=False).transform_first(
        transforms.Compose(trans))
    samples = [dataset[i] for i in range(len(dataset))]
    return (onp.stack([X.asnumpy() for X, _ in samples]),
            onp.array([int(y) for _, y in samples]))


@pytest.mark.parametrize('train', [True, False])
@pytest.mark.parametrize('resize', [None, 28, 32])
def test_load_arrays_equals_the_to_tensor_path(tiny_idx_dir, train, resize):
    X, y = data.load_arrays(root=tiny_idx_dir, train=train, resize=resize, verify=False)
    expected_X, expected_y = book_tensors(tiny_idx_dir, train, resize)
    side = resize or 28
    assert X.shape == (TINY_SPLITS[train][2], 1, side, side) and X.dtype == onp.float32
    onp.testing.assert_array_equal(X, expected_X)
    onp.testing.assert_array_equal(y, expected_y)


def indexed_arrays(n):
    """X whose first pixel is the example's index, so batches reveal the order."""
    X = onp.zeros((n, 1, 2, 2), onp.float32)
    X[:, 0, 0, 0] = onp.arange(n)
    return X, onp.arange(n) % 10


def order_of(loader):
    """The example indices in the order one epoch of ``loader`` yields them."""
    order = []
    for X, y in loader:
        idx = X.asnumpy()[:, 0, 0, 0].astype(int)
        onp.testing.assert_array_equal(y.asnumpy(), idx % 10)  # X and y stay paired
        order.extend(idx.tolist())
    return order


@pytest.mark.parametrize('n, batch_size', [(10, 3), (12, 4), (1, 5), (7, 1)])
def test_array_loader_len_is_the_number_of_batches(n, batch_size):
    for shuffle in (False, True):
        loader = data.ArrayLoader(*indexed_arrays(n), batch_size, shuffle=shuffle)
        batches = list(loader)
        assert len(loader) == math.ceil(n / batch_size) == len(batches)
        assert [len(y) for _, y in batches[:-1]] == [batch_size] * (len(batches) - 1)


def test_array_loader_without_shuffle_keeps_the_order():
    loader = data.ArrayLoader(*indexed_arrays(10), 3)
    assert order_of(loader) == list(range(10))
    assert order_of(loader) == list(range(10))


def test_array_loader_shuffle_is_a_permutation_each_epoch():
    loader = data.ArrayLoader(*indexed_arrays(50), 8, shuffle=True,
                              rng=onp.random.RandomState(0))
    first, second = order_of(loader), order_of(loader)
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert first != list(range(50)) and first != second  # shuffled, freshly each epoch


def test_array_loader_same_seed_same_order():
    a = data.ArrayLoader(*indexed_arrays(30), 7, shuffle=True, rng=onp.random.RandomState(3))
    b = data.ArrayLoader(*indexed_arrays(30), 7, shuffle=True, rng=onp.random.RandomState(3))
    c = data.ArrayLoader(*indexed_arrays(30), 7, shuffle=True, rng=onp.random.RandomState(4))
    epochs_a = [order_of(a) for _ in range(3)]
    assert epochs_a == [order_of(b) for _ in range(3)]
    assert epochs_a != [order_of(c) for _ in range(3)]


def test_array_loader_with_global_seed_matches_the_books_data_loader(tiny_idx_dir):
    # Gluon's RandomSampler draws from NumPy's global generator; so does ArrayLoader by default
    book = gluon.data.DataLoader(
        data.FashionMNIST(tiny_idx_dir, train=True, verify=False).transform_first(
            transforms.ToTensor()), 5, shuffle=True)
    fast = data.ArrayLoader(*data.load_arrays(tiny_idx_dir, True, verify=False), 5,
                            shuffle=True)
    for _ in range(2):
        onp.random.seed(11)
        book_batches = [(X.asnumpy(), y.asnumpy()) for X, y in book]
        onp.random.seed(11)
        fast_batches = [(X.asnumpy(), y.asnumpy()) for X, y in fast]
        assert len(book_batches) == len(fast_batches) == 3
        for (bX, by), (fX, fy) in zip(book_batches, fast_batches):
            onp.testing.assert_array_equal(bX, fX)
            onp.testing.assert_array_equal(by, fy)


def test_load_arrays_iters(tiny_idx_dir):
    train_iter, test_iter = data.load_arrays_iters(5, root=tiny_idx_dir, verify=False,
                                                   rng=onp.random.RandomState(0))
    assert len(train_iter) == 3 and len(test_iter) == 2
    assert train_iter.shuffle and not test_iter.shuffle
    X, y = next(iter(test_iter))
    assert X.shape == (5, 1, 28, 28)
    onp.testing.assert_array_equal(y.asnumpy(), tiny_arrays(False)[1][:5])


# --- text labels --------------------------------------------------------------------------

def test_text_labels():
    assert data.get_fashion_mnist_labels([0, 9]) == ['t-shirt', 'ankle boot']
    assert data.get_fashion_mnist_labels(onp.array([1, 2, 8])) == ['trouser', 'pullover', 'bag']


# --- downloading --------------------------------------------------------------------------

@pytest.fixture
def tiny_server(tmp_path):
    """A ``file://`` base URL serving the tiny gzipped files."""
    served = write_tiny_dataset(tmp_path / 'served')
    return served, served.as_uri() + '/'


def test_download_of_files_with_the_wrong_hash_leaves_nothing(tiny_server, tmp_path):
    _, base_url = tiny_server
    target = tmp_path / 'target'
    with pytest.raises(DataError):
        data_files.download_fashion_mnist(str(target), base_url=base_url)
    assert os.listdir(target) == []  # neither .part files nor an unverified file


def test_download_from_an_unreachable_url_raises_data_error(tmp_path):
    target = tmp_path / 'target'
    with pytest.raises(DataError) as info:
        data_files.download_fashion_mnist(str(target),
                                          base_url=(tmp_path / 'nowhere').as_uri() + '/')
    assert 'download failed' in str(info.value)
    assert os.listdir(target) == []


def test_download_keeps_files_whose_content_hash_matches(tiny_server, tmp_path, monkeypatch):
    # Pin the hashes to the tiny files' decompressed content, as IDX_FILES pins the real ones.
    served, base_url = tiny_server
    pinned = {name: (magic, hashlib.sha256(gzip.open(served / (name + '.gz')).read()).hexdigest())
              for name, (magic, _) in data.IDX_FILES.items()}
    monkeypatch.setattr(data_files, 'IDX_FILES', pinned)
    target = tmp_path / 'target'
    data_files.download_fashion_mnist(str(target), base_url=base_url)
    assert sorted(os.listdir(target)) == sorted(name + '.gz' for name in IDX_NAMES)
    for train in (True, False):
        images, labels = read_split(target, train, verify=False)
        onp.testing.assert_array_equal(images, tiny_arrays(train)[0])
        onp.testing.assert_array_equal(labels, tiny_arrays(train)[1])


# --- the real data set --------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize('train, count', [(True, 60000), (False, 10000)])
def test_real_split_is_complete_and_verified(real_data_dir, train, count):
    images, labels = read_split(real_data_dir, train)  # verify=True: counts and SHA-256
    assert images.shape == (count, 28, 28) and images.dtype == onp.uint8
    assert labels.shape == (count,)
    assert labels.min() == 0 and labels.max() == 9
    onp.testing.assert_array_equal(onp.bincount(labels, minlength=10), [count // 10] * 10)
    assert 0 < images.mean() < 255  # neither blank nor saturated


@pytest.mark.integration
def test_real_files_download_and_verify_from_a_mirror(real_data_dir, tmp_path):
    # the real .gz files served from a file:// mirror must pass the download's own checks
    target = tmp_path / 'downloaded'
    base_url = 'file://' + os.path.abspath(real_data_dir) + '/'
    if any(not os.path.exists(os.path.join(real_data_dir, n + '.gz')) for n in IDX_NAMES):
        pytest.skip('the installed copy is not gzipped')
    data_files.download_fashion_mnist(str(target), base_url=base_url)
    assert sorted(os.listdir(target)) == sorted(name + '.gz' for name in IDX_NAMES)
    assert len(read_split(str(target), False)[0]) == 10000


# --- the troubleshooting table shows what the reader says ---------------------------------

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')


def troubleshooting_messages():
    """The messages (backquoted, abridged) in the first column of the README's table."""
    with open(README, encoding='utf-8') as f:
        section = f.read().split('## Troubleshooting', 1)[1].split('\n## ', 1)[0]
    return [message for line in section.splitlines() if line.startswith('| `')
            for message in re.findall(r'`([^`]*)`', line.split(' | ')[0])]


def as_pattern(message, path):
    """An abridged table message as a regular expression for a message about ``path``."""
    parts = re.split(r'(FILE|SIDE|\.\.\.|\bN\b|\bM\b)', message)
    wildcards = {'FILE': re.escape(str(path)), '...': '.*', 'SIDE': r'\d+', 'N': r'\d+',
                 'M': r'\d+'}
    return ''.join(wildcards.get(part, re.escape(part)) for part in parts)


def table_row_for(error, path, starts):
    """Assert that ``error`` matches the table's message starting with ``starts``."""
    shown = [m for m in troubleshooting_messages() if m.startswith(starts)]
    assert len(shown) == 1, f'the table has no (or several) messages starting {starts!r}'
    assert re.fullmatch(as_pattern(shown[0], path), error), (error, shown[0])


def swapped_files(d):
    images, labels = _path(d, 'train-images-idx3-ubyte.gz'), _path(d, 'train-labels-idx1-ubyte.gz')
    os.rename(images, images + '.tmp')
    os.rename(labels, images)
    os.rename(images + '.tmp', labels)
    return images


def not_idx(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    with gzip.open(path, 'wb') as f:
        f.write(b'<html>404 Not Found</html>\n')
    return path


def gzip_cut_in_its_header(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    raw = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(raw[:12])  # the stream ends before the IDX header is complete
    return path


def too_much_data(d):
    path = _path(d, 'train-images-idx3-ubyte.gz')
    write_idx(path, tiny_arrays(True)[0], IMAGES_MAGIC, dims=(60000, 28, 28))
    with gzip.open(path, 'ab') as f:  # a second gzip member: more data than the header says
        f.write(bytes(60000 * 784))
    return path


@pytest.mark.parametrize('corrupt, starts', [
    (empty_gz_file, 'FILE: empty'),
    (empty_plain_file, 'FILE: empty'),
    (swapped_files, 'FILE: IDX magic number'),
    (wrong_magic, 'FILE: IDX magic number'),
    (not_idx, 'FILE: IDX magic number'),
    (not_gzip_but_named_gz, 'FILE: cannot read'),
    (gzip_cut_in_its_header, 'FILE: cannot read'),
    (wrong_image_size, 'FILE: images are'),
    (header_count_too_large, 'FILE: header says N images, expected'),
    (too_much_data, 'FILE: header says N items'),
], ids=lambda x: getattr(x, '__name__', None))
def test_the_cli_prints_what_the_troubleshooting_table_shows(tiny_idx_dir, capsys, corrupt,
                                                             starts):
    path = corrupt(str(tiny_idx_dir))
    assert data_files.main([str(tiny_idx_dir)]) == 2  # verify=True, as the CLIs read
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    table_row_for(lines[0][len('error: '):], path, starts)


def test_the_resize_message_is_in_the_troubleshooting_table(tiny_idx_dir, monkeypatch):
    monkeypatch.setattr(data, 'available_memory', lambda: 1 << 19)
    with pytest.raises(DataError) as info:
        data.load_arrays(tiny_idx_dir, resize=100, verify=False)
    table_row_for(str(info.value), tiny_idx_dir, '--resize SIDE')


# --- python -m gluon_softmax.data_files ---------------------------------------------------

def test_data_main_has_help(capsys):
    with pytest.raises(SystemExit) as info:
        data_files.main(['--help'])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage: python -m gluon_softmax.data_files [-h] [DIR]')
    assert data_files.ENV_DIR in out and 'SHA-256' in out


def test_data_main_rejects_unknown_options_in_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        data_files.main(['--verbose'])
    assert info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and '--verbose' in lines[0]


def test_data_main_names_a_missing_directory(capsys, tmp_path):
    assert data_files.main([str(tmp_path / 'nowhere')]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f'error: {tmp_path / "nowhere"}: not a directory')


@pytest.mark.integration
def test_data_main_verifies_the_real_copy(real_data_dir, capsys):
    assert data_files.main([real_data_dir]) == 0
    assert capsys.readouterr().out == f'Fashion-MNIST verified in {real_data_dir}\n'


def test_the_check_runs_without_mxnet(small_data_copy):
    # every make target runs it first: without MXNet's import it takes a fraction of the time
    cmd = small_data.command(small_data_copy, 'gluon_softmax.data_files', small_data_copy)
    result = procs.run([cmd[0], '-X', 'importtime', *cmd[1:]], fresh=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == f'Fashion-MNIST verified in {small_data_copy}\n'
    imported = [line.rsplit('|', 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith('import time:')]
    assert {'gluon_softmax.idx', 'gluon_softmax.run.signals'} <= set(imported)
    assert [m for m in imported if m.split('.')[0] == 'mxnet'] == []


def test_data_reexports_the_finding_of_data_files():
    # the chapter and the notebook call data.find_data_dir; python -m gluon_softmax.data runs main
    for name in ('find_data_dir', 'download_fashion_mnist', 'candidate_dirs', 'missing_files',
                 'mxnet_cache_dir', 'how_to_get_data', 'main', 'DEBIAN_DIR', 'ENV_DIR',
                 'UPSTREAM_URL'):
        assert getattr(data, name) is getattr(data_files, name)


def test_the_packages_names_for_finding_the_data_come_without_mxnet(small_data_copy):
    # gluon_softmax.find_data_dir (and the error it raises, and read_split) from the modules
    # that define them, which do not import MXNet; the chapter's data module re-exports them
    code = ('import sys, gluon_softmax as g\n'
            f'print(g.find_data_dir({small_data_copy!r}), g.DataError.__name__, '
            'g.read_split.__name__)\n'
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mxnet'))")
    result = procs.run([sys.executable, '-c', code], fresh=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [f'{small_data_copy} DataError read_split', '[]']
    assert (gluon_softmax.find_data_dir, gluon_softmax.DataError, gluon_softmax.read_split) == (
        data.find_data_dir, data.DataError, data.read_split)


# --- memory guards for --resize -----------------------------------------------------------

def test_available_memory_is_positive_and_within_the_machine():
    available = data.available_memory()
    assert available is None or 0 < available <= os.sysconf('SC_PHYS_PAGES') * \
        os.sysconf('SC_PAGE_SIZE')


def test_available_memory_respects_rlimit_as(monkeypatch):
    limit = data.mapped_bytes() + (1 << 20)
    monkeypatch.setattr(data.resource, 'getrlimit', lambda which: (limit, limit))
    # the address space in use may grow a little between the two reads
    assert data.available_memory() <= 1 << 20


@pytest.mark.parametrize('available', [None, 1 << 30])
def test_resize_proceeds_with_enough_or_unknown_memory(tiny_idx_dir, monkeypatch, available):
    monkeypatch.setattr(data, 'available_memory', lambda: available)
    X, _ = data.load_arrays(tiny_idx_dir, resize=100, verify=False)
    assert X.shape == (12, 1, 100, 100)


def test_resize_beyond_available_memory_raises_before_resizing(tiny_idx_dir, monkeypatch):
    monkeypatch.setattr(data, 'available_memory', lambda: 1 << 19)
    monkeypatch.setattr(data.mx.nd.image, 'resize', None)  # would fail if reached
    with pytest.raises(DataError) as info:
        data.load_arrays(tiny_idx_dir, resize=100, verify=False)
    # 12 images x 100 x 100 pixels x 10 bytes at the peak
    assert str(info.value) == ('--resize 100: 12 images of 100x100 need about 1.1 MiB of '
                               'memory, 0.5 MiB available')


def test_float_images_without_resize_are_guarded_too(tiny_idx_dir, monkeypatch):
    monkeypatch.setattr(data, 'available_memory', lambda: 1 << 10)
    with pytest.raises(DataError, match='12 images as float32 need about 0.1 MiB'):
        data.load_arrays(tiny_idx_dir, verify=False)


@pytest.mark.parametrize('batch_size, workers, fits', [(4, 0, True), (12, 0, False),
                                                        (4, 2, False)])
def test_data_loader_guards_its_batches(tiny_idx_dir, monkeypatch, batch_size, workers, fits):
    # a batch of resized float32 samples and its stacked copy, per process, plus prefetched ones
    monkeypatch.setattr(data, 'available_memory', lambda: 1 << 19)
    load = functools.partial(data.load_data_fashion_mnist, batch_size, resize=100,
                             root=tiny_idx_dir, num_workers=workers, verify=False)
    if fits:
        train_iter, _ = load()
        assert next(iter(train_iter))[0].shape == (batch_size, 1, 100, 100)
        return
    with pytest.raises(DataError) as info:
        load()
    assert str(info.value).startswith(f'--resize 100: batches of {batch_size} images of '
                                      f'100x100 with {workers} workers need about ')


@pytest.mark.integration
def test_real_resize_5000_fails_before_allocating(real_data_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(data.mx.nd.image, 'resize', None)  # would fail if reached
    with pytest.raises(DataError, match=r'^--resize 5000: 60000 images of 5000x5000 need about '
                                        r'[\d,.]+ GiB of memory, [\d,.]+ [GM]iB available$'):
        data.load_arrays(real_data_dir, resize=5000)
    with pytest.raises(DataError, match='^--resize 5000: batches of 256 images'):
        data.load_data_fashion_mnist(256, resize=5000, root=real_data_dir)
    assert_usage_error(capsys, ['--resize', '5000', '--epochs', '1', '--out',
                                str(tmp_path / 'run')], '--resize 5000', 'GiB of memory')


def test_load_arrays_reads_the_files_once_while_they_stay_the_same(tiny_idx_dir, monkeypatch):
    reads = []
    real_read_split = data.read_split
    monkeypatch.setattr(data, 'read_split', lambda *args: reads.append(args) or
                        real_read_split(*args))
    X, y = data.load_arrays(tiny_idx_dir, train=False, verify=False)
    y[:] = 9  # the caller's copy: the remembered labels stay as read
    X_again, y_again = data.load_arrays(tiny_idx_dir, train=False, verify=False)
    assert len(reads) == 1 and (X_again == X).all()
    assert (y_again == tiny_arrays(False)[1]).all()
    # a file written again is read again, and what it now holds is returned
    _, labels = tiny_arrays(False)
    name = os.path.join(tiny_idx_dir, TINY_SPLITS[False][1] + '.gz')
    write_idx(name, labels[::-1], LABELS_MAGIC)
    _, y_new = data.load_arrays(tiny_idx_dir, train=False, verify=False)
    assert len(reads) == 2 and (y_new == labels[::-1]).all()
