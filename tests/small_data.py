"""A small Fashion-MNIST for tests of mechanics (signals, resume, run directories, reports, CLI
flags): the first examples of the real data set, in its own format (four gzipped IDX files).

The programs verify the data set (example counts and SHA-256 of the published files), so a run on
the small copy pins the small copy's counts and digests in place of the published ones; the
verification code itself runs unchanged. In this process: the ``small_data_dir`` fixture
(conftest.py). In a child process: :func:`command` runs a module under ``python small_data.py``,
which pins, then runs the module as ``python -m`` would.

Without the real data set the copy is synthetic (each class a different band of bright rows), so
these tests run everywhere; the tests whose point is the real data keep ``real_data_dir``.
"""
import gzip
import hashlib
import json
import os
import runpy
import signal
import struct
import sys

# the package before anything that imports NumPy or MXNet (its NumPy shim, see _compat.py)
from gluon_softmax import idx  # noqa: E402  pylint: disable=wrong-import-position
import numpy as onp  # noqa: E402

TRAIN_SIZE, TEST_SIZE = 2000, 500
PINS = 'pins.json'
UNPINNED = '-'  # command()'s directory argument when nothing is pinned


def idx_bytes(array, magic):
    """The IDX encoding of a uint8 array: magic, dimensions, raw bytes."""
    array = onp.ascontiguousarray(array, dtype=onp.uint8)
    return (struct.pack('>I', magic) + struct.pack('>' + 'I' * array.ndim, *array.shape)
            + array.tobytes())


def synthetic_split(n, seed):
    """``n`` 28x28 uint8 images whose class decides which rows are bright, and their labels."""
    rng = onp.random.RandomState(seed)
    labels = (onp.arange(n) % idx.NUM_CLASSES).astype(onp.uint8)
    rng.shuffle(labels)
    images = rng.randint(0, 96, size=(n, idx.IMAGE_SIDE, idx.IMAGE_SIDE)).astype(onp.uint8)
    for c in range(idx.NUM_CLASSES):
        images[labels == c, 2 * c + 4:2 * c + 8, :] += 150
    return images, labels


def write_small_dataset(directory, source=None, sizes=(TRAIN_SIZE, TEST_SIZE)):
    """Write the four ``.gz`` IDX files of the small copy into ``directory``, and its pins.

    ``source``: the directory of the real data set (its first examples are taken), or None for
    a synthetic copy.
    """
    os.makedirs(directory, exist_ok=True)
    pins = {'files': {}, 'counts': {}}
    for train, size in zip((True, False), sizes):
        images_name, labels_name, _ = idx.SPLITS[train]
        if source is not None:
            images, labels = idx.read_split(source, train, verify=False)
            images, labels = images[:size], labels[:size]
        else:
            images, labels = synthetic_split(size, 1 if train else 2)
        for name, array, magic in ((images_name, images, idx.IMAGES_MAGIC),
                                   (labels_name, labels, idx.LABELS_MAGIC)):
            content = idx_bytes(array, magic)
            with gzip.open(os.path.join(directory, name + '.gz'), 'wb', compresslevel=1) as f:
                f.write(content)
            pins['files'][name] = [magic, hashlib.sha256(content).hexdigest()]
        pins['counts'][str(train)] = size
    with open(os.path.join(directory, PINS), 'w', encoding='utf-8') as f:
        json.dump(pins, f)
    return directory


def pinned_values(directory):
    """``(IDX_FILES entries, SPLITS entries)`` that make ``directory`` the verified data set."""
    with open(os.path.join(directory, PINS), encoding='utf-8') as f:
        pins = json.load(f)
    files = {name: tuple(value) for name, value in pins['files'].items()}
    splits = {train: (*idx.SPLITS[train][:2], pins['counts'][str(train)])
              for train in (True, False)}
    return files, splits


def pin(directory):
    """Make ``directory``'s small copy the published data set in this process (in place, so
    every module that imported ``IDX_FILES`` or ``SPLITS`` sees it)."""
    files, splits = pinned_values(directory)
    idx.IDX_FILES.update(files)
    idx.SPLITS.update(splits)


def command(directory, module, *args, signal_after=None):
    """argv of ``python -m module args`` on the small copy in ``directory`` (None: on the
    data set the program finds itself, nothing pinned; for ``signal_after`` on the real data).

    ``signal_after=(signum, prefix)``: the program sends itself ``signum`` right after it has
    printed a stdout line starting with ``prefix``, as a user would on seeing the line, but at
    the same point of the run on every machine however fast (the runs on the small copy are
    too short for a test to send a signal in time from outside).
    """
    signal_args = [] if signal_after is None else [
        '--signal-after', signal.Signals(signal_after[0]).name, signal_after[1]]
    pinned = UNPINNED if directory is None else os.fspath(directory)
    return [sys.executable, os.path.abspath(__file__), *signal_args, pinned, module,
            *map(str, args)]


class SignalAfterLine:
    """A text stream that sends this process ``signum`` once, after writing a line that starts
    with ``prefix``; everything else goes to ``stream``."""

    def __init__(self, stream, signum, prefix):
        self._stream, self._signum, self._prefix = stream, signum, prefix
        self._line, self._sent = '', False

    def write(self, text):
        written = self._stream.write(text)
        if not self._sent:
            self._line += text
            *lines, self._line = self._line.split('\n')
            if any(line.startswith(self._prefix) for line in lines):
                self._stream.flush()
                self._sent = True
                os.kill(os.getpid(), self._signum)
        return written

    def __getattr__(self, name):
        return getattr(self._stream, name)


def is_small_copy(directory):
    """True if ``directory`` holds a copy written by :func:`write_small_dataset`."""
    return os.path.isfile(os.path.join(os.fspath(directory), PINS))


def python_m(module, *args, signal_after=None):
    """argv of ``python -m module args``, pinned (:func:`command`) when ``--data-dir`` in
    ``args`` names a small copy (only then with ``signal_after``)."""
    args = [str(a) for a in args]
    for flag, value in zip(args, args[1:]):
        if flag == '--data-dir' and is_small_copy(value):
            return command(value, module, *args, signal_after=signal_after)
    assert signal_after is None, 'signal_after needs --data-dir of a small copy'
    return [sys.executable, '-m', module, *args]


if __name__ == '__main__':
    # as python -m MODULE ARGS with DIR pinned
    # python small_data.py [--signal-after SIGNAME PREFIX] DIR|- MODULE ARGS...
    rest = sys.argv[1:]
    if rest[0] == '--signal-after':
        sys.stdout = SignalAfterLine(sys.stdout, signal.Signals[rest[1]], rest[2])
        rest = rest[3:]
    directory, module = rest[:2]
    if directory != UNPINNED:
        pin(directory)
    sys.argv = [sys.argv[0], *rest[2:]]
    runpy.run_module(module, run_name='__main__', alter_sys=True)
