"""Fashion-MNIST's IDX files: their table, and one reader that checks sizes before it reads.

Standard library and NumPy only, so the benchmark's NumPy and PyTorch rows can
read the data without loading MXNet.
"""
import hashlib
import io
import os
import struct
import zlib

import numpy as onp

# name -> (IDX magic number, SHA-256 of the *decompressed* file). Debian's .gz
# bytes differ from upstream's, so only the decompressed content can be pinned.
IDX_FILES = {
    'train-images-idx3-ubyte':
        (2051, 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888'),
    'train-labels-idx1-ubyte':
        (2049, 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9'),
    't10k-images-idx3-ubyte':
        (2051, '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b'),
    't10k-labels-idx1-ubyte':
        (2049, '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34'),
}
# split -> (images file, labels file, number of examples)
SPLITS = {
    True: ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 60000),
    False: ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte', 10000),
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
IMAGE_SIDE = 28
NUM_CLASSES = 10
# Unverified files (tests' tiny copies, other MNIST-shaped sets) have no known count.
# The largest MNIST-shaped IDX file we know of, EMNIST ByClass's training images, has
# 697,932 items; a million 28x28 images is 784 MB, so this bounds what a header can
# make us allocate while accepting every real data set of this shape.
MAX_ITEMS = 1_000_000
# zlib's documented limit: deflate expands at most 1032-fold, so a header claiming
# more than that from a small .gz is rejected before anything is allocated.
MAX_DEFLATE_RATIO = 1032
CHUNK = 1 << 20  # read and hash 1 MiB at a time


class DataError(Exception):
    """The Fashion-MNIST files are missing, unreadable or not what they claim to be."""


def idx_path(directory, name):
    """The path of ``name`` in ``directory``, as ``name.gz`` or plain ``name``, or None."""
    for candidate in (name + '.gz', name):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


class Gunzip(io.RawIOBase):
    """The content of a gzip file, decompressed no further than each read asks."""
    # gzip.GzipFile decompresses ahead into an 8 KiB buffer; this reader lets a bomb
    # yield exactly the bytes asked for. Members may be concatenated and zero-padded,
    # as gzip allows; zlib checks each member's header, CRC and length.

    def __init__(self, path):
        super().__init__()
        self.file = None  # close() runs from __del__ even when open() below fails
        self.file = open(path, 'rb')
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16: gzip wrapper
        self.pending = b''  # compressed bytes read from the file, not yet given to zlib
        self.started = False  # some compressed byte was seen: an empty file is empty content

    def readable(self):
        return True

    def fileno(self):
        return self.file.fileno()

    def close(self):
        if self.file is not None:
            self.file.close()
        super().close()

    def compressed(self):
        """The next compressed bytes (empty at the end of the file)."""
        data, self.pending = self.pending or self.file.read(CHUNK), b''
        self.started = self.started or bool(data)
        return data

    def readinto(self, buffer):
        """Decompress at most ``len(buffer)`` bytes into ``buffer``; 0 at the end."""
        if not len(buffer):
            return 0  # zlib reads a max_length of 0 as "no limit"
        while True:
            if self.inflate.eof:
                # after a member: zero padding, then the end or another member
                self.pending = self.inflate.unused_data.lstrip(b'\0')
                while not self.pending:
                    data = self.file.read(CHUNK)
                    if not data:
                        return 0
                    self.pending = data.lstrip(b'\0')
                self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = self.inflate.unconsumed_tail or self.compressed()
            if not data:
                if not self.started:
                    return 0
                raise EOFError('compressed file ended before the end-of-stream marker was reached')
            out = self.inflate.decompress(data, len(buffer))
            if out:
                buffer[:len(out)] = out
                return len(out)


def read_exactly(f, size):
    """Up to ``size`` bytes from ``f``, fewer only at the end of the file."""
    parts, got = [], 0
    while got < size:
        part = f.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b''.join(parts)


def read_stream(f, path, magic, stored_size, compressed, sha256=None, count=None):
    """Read one IDX file from stream ``f``, rejecting by the header before reading the data."""
    # stored_size: the size on disk (of the .gz if compressed), to compare the header with
    ndim = 3 if magic == IMAGES_MAGIC else 1
    kind = 'images' if magic == IMAGES_MAGIC else 'labels'
    header_size = 4 + 4 * ndim
    header = read_exactly(f, header_size)
    if not header:
        raise DataError(f'{path}: empty (0 bytes), not an IDX file')
    # the magic number first: swapped or foreign files say so rather than "too short"
    if len(header) >= 4:
        found = struct.unpack('>I', header[:4])[0]
        if found != magic:
            raise DataError(f'{path}: IDX magic number is {found}, expected {magic}')
    if len(header) < header_size:
        raise DataError(f'{path}: file too short for an IDX header ({len(header)} bytes)')
    dims = struct.unpack('>' + 'I' * ndim, header[4:])
    if ndim == 3 and dims[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f'{path}: images are {dims[1]}x{dims[2]}, expected '
                        f'{IMAGE_SIDE}x{IMAGE_SIDE}')
    items = dims[0]
    if count is not None and items != count:
        raise DataError(f'{path}: header says {items} {kind}, expected {count}')
    if items > MAX_ITEMS:
        raise DataError(f'{path}: header says {items} {kind}, more than the {MAX_ITEMS} '
                        'any MNIST-shaped data set has')
    size = items * IMAGE_SIDE * IMAGE_SIDE if ndim == 3 else items  # Python ints: no overflow
    claim = f'{path}: header says {items} items ({size} bytes of data)'
    if not compressed and stored_size - header_size != size:
        raise DataError(f'{claim}, file has {stored_size - header_size} bytes of data')
    if compressed and header_size + size > stored_size * MAX_DEFLATE_RATIO:
        raise DataError(f'{claim}, more than a {stored_size}-byte gzip file can hold')

    digest = hashlib.sha256(header)
    try:
        data = onp.empty(size, dtype=onp.uint8)
    except MemoryError:
        raise DataError(f'{claim}, more than this process can allocate') from None
    view = memoryview(data)
    got = 0
    while got < size:
        # never ask for more than the header promised: a gzip bomb stops here
        n = f.readinto(view[got:got + min(CHUNK, size - got)])
        if not n:
            break
        digest.update(view[got:got + n])
        got += n
    if got < size:
        raise DataError(f'{claim}, file has {got} bytes of data (truncated)')
    if f.read(1):
        raise DataError(f'{claim}, file has more')
    if ndim == 1 and size and data.max() >= NUM_CLASSES:
        raise DataError(f'{path}: label {int(data.max())} outside 0..{NUM_CLASSES - 1}')
    if sha256 is not None and digest.hexdigest() != sha256:
        raise DataError(f'{path}: SHA-256 of the content is {digest.hexdigest()}, expected '
                        f'{sha256} (corrupt or not Fashion-MNIST)')
    return data.reshape(dims)


def read_idx(path, magic, sha256=None, count=None):
    """One checked IDX file (``.gz`` or plain) as uint8: images (n, 28, 28), labels (n,)."""
    # the header (magic, shape, count items if given, size against the file's) is checked
    # before the data is read; sha256 pins the decompressed content
    path = os.fspath(path)
    compressed = path.endswith('.gz')
    try:
        with (Gunzip(path) if compressed else open(path, 'rb')) as f:
            return read_stream(f, path, magic, os.fstat(f.fileno()).st_size, compressed,
                               sha256, count)
    except (OSError, EOFError, zlib.error) as e:
        # zlib.error for a stream that is not gzip or fails its CRC, EOFError for one cut short
        raise DataError(f'{path}: cannot read: {e}') from None


def parse_idx(content, path, magic):
    """Parse the IDX bytes ``content`` into a uint8 array; ``path`` names them in errors."""
    return read_stream(io.BytesIO(content), path, magic, len(content), compressed=False)


def read_split(directory, train=True, verify=True):
    """Read one split from ``directory`` as ``(images (n, 28, 28) uint8, labels (n,) int32)``.

    ``verify=True`` also checks the example count and the SHA-256 of both files
    against the published Fashion-MNIST; ``verify=False`` checks structure only
    (for small files written by tests).
    """
    images_name, labels_name, count = SPLITS[bool(train)]
    paths = []
    for name in (images_name, labels_name):
        path = idx_path(directory, name)
        if path is None:
            raise DataError(f'{os.path.join(directory, name)}(.gz): no such file')
        paths.append(path)
    pinned = {name: (IDX_FILES[name][1], count) if verify else (None, None)
              for name in (images_name, labels_name)}
    images = read_idx(paths[0], IMAGES_MAGIC, *pinned[images_name])
    labels = read_idx(paths[1], LABELS_MAGIC, *pinned[labels_name])
    if len(images) != len(labels):
        raise DataError(f'{paths[1]}: {len(labels)} labels for {len(images)} images '
                        f'in {paths[0]}')
    return images, labels.astype(onp.int32)
