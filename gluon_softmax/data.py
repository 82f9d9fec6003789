"""Fashion-MNIST: read the files and serve them to Gluon.

Finding the files (and downloading them) lives in :mod:`gluon_softmax.data_files`, with
``python -m gluon_softmax.data_files [DIR]``, the check of a copy, which runs without MXNet;
reading and verifying them in :mod:`gluon_softmax.idx`. Their names stay importable from here.

Two ways to feed a model live here:

* the book's way: :class:`FashionMNIST` (a Gluon ``Dataset``) +
  ``transform_first(ToTensor[, Resize])`` + ``gluon.data.DataLoader``
  (:func:`load_data_fashion_mnist`);
* the fast way: each split decoded once into one float32 array and sliced per
  batch (:func:`load_arrays_iters`, built on :class:`ArrayLoader`).
"""
import os
import random
import resource

import mxnet as mx
import numpy as onp
from mxnet import np
from mxnet.gluon.data import vision

# finding the files lives in the MXNet-free data_files module, the reading in the NumPy-only
# idx module; these names stay importable from here
from gluon_softmax.data_files import (DEBIAN_DIR, ENV_DIR, UPSTREAM_URL,  # noqa: F401
                                      candidate_dirs, download_fashion_mnist, find_data_dir,
                                      how_to_get_data, main, missing_files, mxnet_cache_dir)
from gluon_softmax.idx import (IDX_FILES, IMAGE_SIDE, IMAGES_MAGIC, LABELS_MAGIC,  # noqa: F401
                               NUM_CLASSES, SPLITS, DataError, idx_path, parse_idx, read_idx,
                               read_split)
from gluon_softmax.loader_workers import WorkerDataLoader

TEXT_LABELS = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat',
               'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot')
# the same classes as d2l-zh names them (figures drawn in Chinese use these)
TEXT_LABELS_ZH = ('T恤', '裤子', '套衫', '连衣裙', '外套', '凉鞋', '衬衫', '运动鞋', '包', '短靴')


def set_seed(seed):
    """Seed Python's, NumPy's (the loaders' shuffling) and MXNet's (initial weights) generators."""
    # here because the loaders draw their orders from NumPy's global generator
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)  # on every device


def get_fashion_mnist_labels(labels, lang='en'):
    """The text labels of the book for a sequence of numeric labels (d2l-zh's with 'zh')."""
    names = {'en': TEXT_LABELS, 'zh': TEXT_LABELS_ZH}[lang]
    return [names[int(i)] for i in labels]


class FashionMNIST(vision.FashionMNIST):
    """MXNet's ``FashionMNIST`` reading verified local files instead of downloading.

    Samples are ``(image (28, 28, 1) uint8, label int32)`` as in MXNet, so
    ``transform_first(ToTensor())`` works unchanged.

    Parameters
    ----------
    root : directory holding the four IDX files; default: ``$FASHION_MNIST_DIR``,
        then ``~/.mxnet/datasets/fashion-mnist``, then Debian's package directory.
    train : the 60000-example training split (True) or the 10000-example test split.
    download : fetch the files from upstream when no copy is found.
    verify : check counts and SHA-256 against the published data set.
    """

    def __init__(self, root=None, train=True, transform=None, download=False, verify=True):
        self._verify = verify
        # Resolve first: the parent would create (and then download into) a missing root.
        super().__init__(root=find_data_dir(root, download), train=train, transform=transform)

    def _get_data(self):
        images, labels = read_split_once(self._root, self._train, self._verify)
        # (n, 28, 28) -> (n, 28, 28, 1): height x width x channel, the layout ToTensor expects
        self._data = np.array(images[..., None], dtype=onp.uint8)
        self._label = labels.copy()


def load_data_fashion_mnist(batch_size, resize=None, root=None, num_workers=None,
                            download=False, verify=True):
    """The book's loaders: ``(train_iter, test_iter)`` Gluon DataLoaders, train shuffled.

    Each sample goes through ``transform_first(ToTensor [+ Resize])`` on every
    epoch; ``num_workers`` defaults to 0 (worker processes bring no speed-up on
    small machines). With workers, call ``close()`` on each loader to end them
    (their finalizer does too); a worker that dies or hangs raises
    :class:`gluon_softmax.loader_workers.LoaderWorkerError`.
    """
    trans = [vision.transforms.ToTensor()]
    if resize:
        # Resize works on HWC uint8 images, so it comes before ToTensor
        trans.insert(0, vision.transforms.Resize(resize))
    trans = vision.transforms.Compose(trans)
    directory = find_data_dir(root, download)
    workers = num_workers or 0
    if resize:
        # The DataLoader resizes sample by sample, so only batches exist at the new size:
        # a batch's float32 samples plus their stacked copy, in the main process and in
        # each worker, plus the 2 batches per worker Gluon prefetches by default.
        check_memory(batch_size * resize * resize * 4 * 2 * (1 + 2 * workers),
                     f'--resize {resize}: batches of {batch_size} images of {resize}x{resize} '
                     f'with {workers} workers')
    mnist_train = FashionMNIST(directory, train=True, verify=verify)
    mnist_test = FashionMNIST(directory, train=False, verify=verify)
    # gluon.data.DataLoader, whose worker processes cannot deadlock (see loader_workers)
    return (WorkerDataLoader(mnist_train.transform_first(trans), batch_size, shuffle=True,
                             num_workers=workers),
            WorkerDataLoader(mnist_test.transform_first(trans), batch_size, shuffle=False,
                             num_workers=workers))


def available_memory():
    """Bytes this process may still allocate (MemAvailable within RLIMIT_AS), None if unknown."""
    room = []
    try:
        with open('/proc/meminfo', encoding='ascii') as f:
            room += [int(line.split()[1]) * 1024 for line in f
                     if line.startswith('MemAvailable:')]
    except (OSError, ValueError, IndexError):
        pass
    if not room:
        try:  # free pages only (no reclaimable cache): the cautious side of MemAvailable
            room.append(os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE'))
        except (ValueError, OSError, AttributeError):
            pass
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:
        # the limit counts the address space already mapped (MXNet maps a lot)
        room.append(max(0, limit - mapped_bytes()))
    return min(room) if room else None


def mapped_bytes():
    """This process's mapped address space (VmSize), or 0 where /proc does not say."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('VmSize:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def size_text(num_bytes):
    """A byte count for people: MiB below a GiB, GiB above."""
    return (f'{num_bytes / 2**30:,.1f} GiB' if num_bytes >= 2**30
            else f'{num_bytes / 2**20:,.1f} MiB')


def check_memory(needed, what):
    """Raise DataError before ``what`` allocates ``needed`` bytes that are not available."""
    available = available_memory()
    if available is not None and needed > available:
        raise DataError(f'{what} need about {size_text(needed)} of memory, '
                        f'{size_text(available)} available')


def to_float_images(images, resize=None):
    """uint8 (n, 28, 28) -> float32 (n, 1, side, side) in [0, 1], resized in one call.

    The same values ``ToTensor`` (and ``Resize`` before it) give per sample.
    """
    n, side = len(images), resize or images.shape[-1]
    resizing = bool(resize) and resize != images.shape[-1]
    # peak bytes per output pixel: the resized uint8 NDArray and its NumPy copy (1 + 1),
    # then the float32 of astype and that of the division (4 + 4)
    check_memory(n * side * side * (10 if resizing else 8),
                 f'--resize {side}: {n} images of {side}x{side}' if resizing
                 else f'{n} images as float32')
    if resizing:
        # one batched bilinear resize, the same kernel Gluon's Resize transform uses
        resized = mx.nd.image.resize(mx.nd.array(images[..., None], dtype=onp.uint8),
                                     size=(resize, resize))
        images = resized.asnumpy()[..., 0]
    return (images.astype(onp.float32) / 255.0)[:, None, :, :]


_SPLITS_READ = {}  # train (True/False) -> (the files' identities and verify, (images, labels))


def read_split_once(directory, train=True, verify=True):
    """:func:`read_split`, remembered in this process while the files stay the same.

    The notebook's sections each load the data again (``load_arrays``, ``FashionMNIST``);
    reading and checking the files (SHA-256) is most of that. A file replaced or rewritten has another identity and is read.
    """
    paths = [idx_path(directory, name) for name in SPLITS[bool(train)][:2]]
    if None in paths:
        return read_split(directory, train, verify)  # it says which file is missing
    stats = [os.stat(path) for path in paths]
    key = tuple((path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                for path, st in zip(paths, stats)) + (bool(verify),)
    remembered = _SPLITS_READ.get(bool(train))
    if remembered is None or remembered[0] != key:  # one copy per split, the latest files read
        images, labels = read_split(directory, train, verify)
        images.setflags(write=False)  # shared by every later caller: never changed in place
        labels.setflags(write=False)
        _SPLITS_READ[bool(train)] = key, (images, labels)
    return _SPLITS_READ[bool(train)][1]


def load_arrays(root=None, train=True, resize=None, download=False, verify=True):
    """One split decoded once: ``(X float32 (n, 1, side, side) in [0, 1], y int32 (n,))``."""
    images, labels = read_split_once(find_data_dir(root, download), train, verify)
    return to_float_images(images, resize), labels.copy()


class ArrayLoader:
    """Minibatches sliced from arrays held in memory on ``ctx``.

    Iterating yields ``(X, y)`` like a DataLoader. With ``shuffle=True`` each
    epoch draws a fresh permutation from ``rng``, by default NumPy's global
    generator, exactly as Gluon's ``RandomSampler`` does: with the same seed the
    batches equal those of the book's DataLoader pipeline.
    """

    def __init__(self, X, y, batch_size, shuffle=False, ctx=None, rng=None):
        self.ctx = ctx or mx.cpu()
        self.X = np.array(X, dtype=onp.float32, ctx=self.ctx)
        self.y = np.array(y, dtype=onp.int32, ctx=self.ctx)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = rng if rng is not None else onp.random

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        n = len(self.y)
        if not self.shuffle:
            for start in range(0, n, self.batch_size):
                yield self.X[start:start + self.batch_size], self.y[start:start + self.batch_size]
            return
        order = np.array(self.rng.permutation(n).astype(onp.int32), ctx=self.ctx)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield np.take(self.X, idx, axis=0), np.take(self.y, idx, axis=0)


VAL_SPLIT_SEED = 20170825  # fixed, so every run holds out the same validation examples


def split_validation(X, y, val_size, seed=VAL_SPLIT_SEED):
    """Carve ``val_size`` random examples out of a training set: ``(X, y), (X_val, y_val)``."""
    if not 0 <= val_size < len(y):
        raise DataError(f'validation size {val_size} must be at least 0 and below the '
                        f'{len(y)} training examples')
    order = onp.random.RandomState(seed).permutation(len(y))
    val, keep = onp.sort(order[:val_size]), onp.sort(order[val_size:])
    return (X[keep], y[keep]), (X[val], y[val])


def load_arrays_iters(batch_size, resize=None, root=None, ctx=None, rng=None,
                      download=False, verify=True, val_size=0):
    """The fast loaders: ``(train_iter, test_iter)`` of :class:`ArrayLoader`, train shuffled.

    With ``val_size > 0``, returns ``(train_iter, val_iter, test_iter)``, the
    validation examples held out of the training set.
    """
    directory = find_data_dir(root, download)
    X, y = load_arrays(directory, True, resize, verify=verify)
    if val_size:
        (X, y), (X_val, y_val) = split_validation(X, y, val_size)
    train = ArrayLoader(X, y, batch_size, shuffle=True, ctx=ctx, rng=rng)
    test = ArrayLoader(*load_arrays(directory, False, resize, verify=verify), batch_size,
                       shuffle=False, ctx=ctx)
    if val_size:
        return train, ArrayLoader(X_val, y_val, batch_size, ctx=ctx), test
    return train, test


if __name__ == '__main__':
    raise SystemExit(main(prog='python -m gluon_softmax.data'))
