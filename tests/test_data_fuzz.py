"""Property test: the IDX reader returns valid arrays or raises DataError, never anything else."""
import gzip
import struct

import numpy as onp
from hypothesis import given, settings
from hypothesis import strategies as st

from gluon_softmax.data import IMAGES_MAGIC, LABELS_MAGIC, DataError, read_idx


def valid_idx(magic, n):
    """Bytes of a small valid IDX file: n images 28x28 or n labels 0..9."""
    if magic == IMAGES_MAGIC:
        return struct.pack('>IIII', magic, n, 28, 28) + bytes(range(256)) * (n * 784 // 256) \
            + bytes(n * 784 % 256)
    return struct.pack('>II', magic, n) + bytes(i % 10 for i in range(n))


def check(path, magic):
    """Read ``path``; a result must satisfy everything the reader promises."""
    try:
        array = read_idx(str(path), magic)
    except DataError as e:
        assert str(path) in str(e)
        return
    assert array.dtype == onp.uint8
    if magic == IMAGES_MAGIC:
        assert array.ndim == 3 and array.shape[1:] == (28, 28)
    else:
        assert array.ndim == 1 and (array.size == 0 or array.max() <= 9)


@settings(max_examples=150, deadline=None)
@given(content=st.binary(max_size=200), magic=st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC]),
       compress=st.booleans())
def test_random_bytes(tmp_path_factory, content, magic, compress):
    path = tmp_path_factory.mktemp('fuzz') / ('f.gz' if compress else 'f')
    path.write_bytes(gzip.compress(content) if compress else content)
    check(path, magic)


@settings(max_examples=150, deadline=None)
@given(magic=st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC]), n=st.integers(0, 3),
       edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)), compress=st.booleans(),
       cut_gzip=st.booleans())
def test_mutated_valid_files(tmp_path_factory, magic, n, edits, cut, compress, cut_gzip):
    content = bytearray(valid_idx(magic, n))
    for position, value in edits:
        if position < len(content):
            content[position] = value
    if cut is not None and not cut_gzip:
        content = content[:int(cut * len(content))]
    raw = gzip.compress(bytes(content)) if compress else bytes(content)
    if compress and cut_gzip and cut is not None:
        raw = raw[:int(cut * len(raw))]  # a truncated gzip stream
    path = tmp_path_factory.mktemp('fuzz') / ('f.gz' if compress else 'f')
    path.write_bytes(raw)
    check(path, magic)
