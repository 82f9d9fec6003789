"""The NumPy-only IDX reader: no MXNet, and sizes checked before anything large is read."""
import gzip
import json
import os
import struct
import sys
import zlib

import numpy as onp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import IMAGES_MAGIC, LABELS_MAGIC, tiny_arrays, write_idx, write_tiny_dataset
from gluon_softmax import data, idx
from gluon_softmax.idx import DataError, read_idx

import procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(idx.__file__)))
GIB = 1 << 30
# Run one read in a fresh interpreter: report the DataError and how far the peak RSS
# grew. The address space is capped 1 GiB above what the imports mapped, so a reader
# that tries to load a huge file fails with MemoryError instead of swamping the machine.
READER = '''
import json, resource, sys
from gluon_softmax.idx import DataError, read_idx
with open('/proc/self/status') as f:
    mapped = next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmSize:'))
resource.setrlimit(resource.RLIMIT_AS, (mapped + (1 << 30), resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_idx(sys.argv[1], int(sys.argv[2]), count=json.loads(sys.argv[3]))
    error = None
except DataError as e:
    error = str(e)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({'error': error, 'rss_growth_mib': (after - before) / 1024}))
'''


def run_isolated(code, *args):
    """Run ``code`` in a fresh interpreter that imports this checkout; its stdout as JSON."""
    env = dict(os.environ, PYTHONPATH=REPO)
    result = procs.run([sys.executable, '-c', code, *map(str, args)], env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def read_isolated(path, magic=IMAGES_MAGIC, count=None):
    """``read_idx(path, magic, count=count)`` in a fresh interpreter: (error, RSS growth MiB)."""
    report = run_isolated(READER, path, magic, json.dumps(count))
    return report['error'], report['rss_growth_mib']


def header(magic, *dims):
    """The bytes of an IDX header."""
    return struct.pack('>I', magic) + struct.pack('>' + 'I' * len(dims), *dims)


# --- one reader, and no MXNet --------------------------------------------------------------

def test_reading_a_split_through_idx_does_not_import_mxnet(tmp_path):
    directory = write_tiny_dataset(tmp_path / 'd')
    report = run_isolated('''
import json, sys
from gluon_softmax import idx
images, labels = idx.read_split(sys.argv[1], train=False, verify=False)
print(json.dumps({'shape': images.shape, 'labels': labels.tolist(),
                  'mxnet': sorted(m for m in sys.modules if m.split('.')[0] == 'mxnet')}))
''', directory)
    assert report['mxnet'] == []
    assert report['shape'] == [8, 28, 28]
    assert report['labels'] == tiny_arrays(False)[1].tolist()


def test_data_reexports_the_reader():
    # the CLI catches data.DataError: it must be the class idx raises
    assert data.DataError is idx.DataError
    for name in ('read_idx', 'parse_idx', 'read_split', 'idx_path', 'IDX_FILES', 'SPLITS',
                 'IMAGES_MAGIC', 'LABELS_MAGIC', 'IMAGE_SIDE', 'NUM_CLASSES'):
        assert getattr(data, name) is getattr(idx, name)


def test_parse_idx_reads_bytes_in_memory():
    images = tiny_arrays(True)[0]
    content = header(IMAGES_MAGIC, 12, 28, 28) + images.tobytes()
    onp.testing.assert_array_equal(idx.parse_idx(content, 'mem', IMAGES_MAGIC), images)
    with pytest.raises(DataError, match='mem: header says 12 items .* file has 9407 bytes'):
        idx.parse_idx(content[:-1], 'mem', IMAGES_MAGIC)


# --- sizes checked from the header before reading ------------------------------------------

def sparse_file(path, content, size):
    """``content`` followed by a hole up to ``size`` bytes: no disk used for the hole."""
    with open(path, 'wb') as f:
        f.write(content)
    os.truncate(path, size)
    return str(path)


@pytest.mark.parametrize('count', [60000, None], ids=['verified', 'unverified'])
def test_sparse_100_gb_file_is_rejected_from_its_size(tmp_path, count):
    path = sparse_file(tmp_path / 'train-images-idx3-ubyte', header(IMAGES_MAGIC, 60000, 28, 28),
                       100 * 10**9)
    error, growth = read_isolated(path, count=count)
    assert error == (f'{path}: header says 60000 items (47040000 bytes of data), '
                     f'file has {100 * 10**9 - 16} bytes of data')
    assert growth < 16


def test_sparse_100_gb_file_with_a_matching_header_is_rejected_by_its_count(tmp_path):
    items = 127_551_020  # 16 + items * 784 bytes: just under 100 GB, as the header says
    path = sparse_file(tmp_path / 'train-images-idx3-ubyte', header(IMAGES_MAGIC, items, 28, 28),
                       16 + items * 784)
    error, growth = read_isolated(path)
    assert error == (f'{path}: header says {items} images, more than the '
                     f'{idx.MAX_ITEMS} any MNIST-shaped data set has')
    assert growth < 16
    error, growth = read_isolated(path, count=60000)
    assert error == f'{path}: header says {items} images, expected 60000'
    assert growth < 16


@pytest.fixture(scope='module')
def gzip_bomb(tmp_path_factory):
    """A ~200 KB .gz: a header for 12 images, then 200 MB of zeros."""
    path = tmp_path_factory.mktemp('bomb') / 'train-images-idx3-ubyte.gz'
    with gzip.open(path, 'wb') as f:
        f.write(header(IMAGES_MAGIC, 12, 28, 28))
        zeros = bytes(1 << 20)
        for _ in range(200):
            f.write(zeros)
    return str(path)


def test_gzip_bomb_is_rejected_with_little_memory(gzip_bomb):
    assert os.path.getsize(gzip_bomb) < 1 << 20
    error, growth = read_isolated(gzip_bomb)
    assert growth < 16  # the whole content would be 200 MiB
    assert error == f'{gzip_bomb}: header says 12 items (9408 bytes of data), file has more'


class CountingReader:
    """A binary stream that counts the bytes handed out by ``read`` and ``readinto``."""

    def __init__(self, f):
        self.f, self.count = f, 0

    def read(self, size=-1):
        chunk = self.f.read(size)
        self.count += len(chunk)
        return chunk

    def readinto(self, buffer):
        n = self.f.readinto(buffer)
        self.count += n
        return n


def test_gzip_bomb_is_read_no_further_than_one_byte_past_the_header_size(gzip_bomb):
    # Gunzip keeps no buffer: what it hands out is all it decompressed
    with idx.Gunzip(gzip_bomb) as f:
        counted = CountingReader(f)
        with pytest.raises(DataError, match='file has more'):
            idx.read_stream(counted, gzip_bomb, IMAGES_MAGIC, os.path.getsize(gzip_bomb), True)
    assert counted.count == 16 + 12 * 784 + 1


def content_or_error(read):
    """``read()``'s content, or None if it raised one of the errors read_idx reports."""
    try:
        return read()
    except (OSError, EOFError, zlib.error):
        return None


@settings(max_examples=200, deadline=None)
@given(members=st.lists(st.binary(max_size=3000), max_size=3),
       padding=st.lists(st.integers(0, 3), min_size=3, max_size=3),
       damage=st.one_of(st.none(), st.tuples(st.floats(0, 1, exclude_max=True),
                                             st.integers(0, 255))),
       cut=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)))
def test_gunzip_reads_what_gzip_reads(tmp_path_factory, members, padding, damage, cut):
    # concatenated members, zero padding, a damaged byte, a cut: never other content, never
    # content where gzip fails
    raw = bytearray(b''.join(gzip.compress(m, mtime=0) + bytes(p)
                             for m, p in zip(members, padding)))
    if damage is not None and raw:
        raw[int(damage[0] * len(raw))] = damage[1]
    if cut is not None:
        raw = raw[:int(cut * len(raw))]
    path = tmp_path_factory.mktemp('gz') / 'f.gz'
    path.write_bytes(bytes(raw))

    def gunzip():
        with idx.Gunzip(path) as f:
            return f.read()
    got, expected = content_or_error(gunzip), content_or_error(lambda: gzip.decompress(bytes(raw)))
    if damage is None:
        assert got == expected
    else:  # zlib is the stricter: it rejects reserved header flags, as RFC 1952 asks
        assert got is None or got == expected


def test_small_gzip_claiming_more_than_it_can_hold(tmp_path):
    path = str(tmp_path / 'train-images-idx3-ubyte.gz')
    with gzip.open(path, 'wb') as f:
        f.write(header(IMAGES_MAGIC, 60000, 28, 28))
    with pytest.raises(DataError) as info:
        read_idx(path, IMAGES_MAGIC)
    assert str(info.value) == (f'{path}: header says 60000 items (47040000 bytes of data), '
                               f'more than a {os.path.getsize(path)}-byte gzip file can hold')


@pytest.mark.parametrize('compress', [True, False], ids=['gz', 'plain'])
def test_truncated_data_is_rejected(tmp_path, compress):
    path = str(tmp_path / ('f.gz' if compress else 'f'))
    content = header(LABELS_MAGIC, 12) + tiny_arrays(True)[1].tobytes()
    with (gzip.open(path, 'wb') if compress else open(path, 'wb')) as f:
        f.write(content[:-5])
    with pytest.raises(DataError) as info:
        read_idx(path, LABELS_MAGIC)
    # a plain file is caught by its size before reading, a .gz by running out of data
    detail = '7 bytes of data (truncated)' if compress else '7 bytes of data'
    assert str(info.value) == f'{path}: header says 12 items (12 bytes of data), file has {detail}'


@pytest.mark.parametrize('compress', [True, False], ids=['gz', 'plain'])
def test_zero_byte_file_is_rejected(tmp_path, compress):
    path = tmp_path / ('f.gz' if compress else 'f')
    # an empty .gz is not even a gzip stream: gzip reads it as empty content
    path.write_bytes(b'')
    with pytest.raises(DataError) as info:
        read_idx(path, IMAGES_MAGIC)
    assert str(info.value) == f'{path}: empty (0 bytes), not an IDX file'


def test_count_is_checked_before_the_data_is_read(tmp_path):
    # 12 images where 60000 are expected: rejected from the header, not by the hash
    path = write_idx(tmp_path / 'f.gz', tiny_arrays(True)[0], IMAGES_MAGIC)
    with pytest.raises(DataError) as info:
        read_idx(path, IMAGES_MAGIC, sha256='0' * 64, count=60000)
    assert str(info.value) == f'{path}: header says 12 images, expected 60000'


def test_structure_is_checked_before_the_hash(tmp_path):
    path = write_idx(tmp_path / 'f.gz', tiny_arrays(True)[1], LABELS_MAGIC)
    with pytest.raises(DataError, match='magic number is 2049, expected 2051'):
        read_idx(path, IMAGES_MAGIC, sha256='0' * 64)

