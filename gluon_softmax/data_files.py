"""Fashion-MNIST's files: where they are, downloading them, checking a copy; no MXNet.

Standard library and NumPy only (the files are read by :mod:`gluon_softmax.idx`), so
``python -m gluon_softmax.data_files [DIR]``, the check every ``make`` target runs first,
starts without loading MXNet. :mod:`gluon_softmax.data` re-exports these names.
"""
import os
import sys
import tempfile
import urllib.request

from gluon_softmax.idx import IDX_FILES, DataError, idx_path, read_idx, read_split

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
UPSTREAM_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
ENV_DIR = 'FASHION_MNIST_DIR'


def mxnet_cache_dir():
    """Where MXNet keeps downloaded data sets (``$MXNET_HOME``, default ``~/.mxnet``)."""
    home = os.environ.get('MXNET_HOME', os.path.join('~', '.mxnet'))
    return os.path.join(os.path.expanduser(home), 'datasets', 'fashion-mnist')


def candidate_dirs(root=None):
    """Directories to search, in order, as ``(path, named_by_user)`` pairs.

    A directory the user named (``root`` or ``$FASHION_MNIST_DIR``) is the only
    candidate: silently falling back to another copy would hide a typo.
    """
    if root is not None:
        return [(os.path.expanduser(str(root)), True)]
    if os.environ.get(ENV_DIR):
        return [(os.path.expanduser(os.environ[ENV_DIR]), True)]
    return [(mxnet_cache_dir(), False), (DEBIAN_DIR, False)]


def missing_files(directory):
    """Names of the four IDX files that ``directory`` lacks."""
    return [name for name in IDX_FILES if idx_path(directory, name) is None]


def how_to_get_data():
    """The three ways a user can provide the data set, as one sentence."""
    return ('install Debian\'s package (sudo apt-get install dataset-fashion-mnist), '
            f'or put the four IDX files in a directory and pass --data-dir DIR or set ${ENV_DIR}, '
            'or pass --download (API: download=True)')


def find_data_dir(root=None, download=False):
    """Return the first directory that holds all four Fashion-MNIST files.

    With ``download=True`` and no copy found (and no directory named by the
    user), the files are fetched into MXNet's cache directory.
    """
    candidates = candidate_dirs(root)
    for directory, named in candidates:
        if named:
            if not os.path.isdir(directory):
                raise DataError(f'{directory}: not a directory; {how_to_get_data()}')
            if not os.access(directory, os.R_OK | os.X_OK):
                raise DataError(f'{directory}: directory is not readable')
            missing = missing_files(directory)
            if missing:
                if download:
                    download_fashion_mnist(directory)
                    return directory
                raise DataError(f'{directory}: missing {", ".join(missing)} (.gz or uncompressed); '
                                f'{how_to_get_data()}')
            return directory
        if os.path.isdir(directory) and not missing_files(directory):
            return directory
    if download:
        target = mxnet_cache_dir()
        download_fashion_mnist(target)
        return target
    searched = ', '.join(d for d, _ in candidates)
    raise DataError(f'Fashion-MNIST not found (searched {searched}); {how_to_get_data()}')


def download_fashion_mnist(directory, base_url=UPSTREAM_URL):
    """Download the four files into ``directory``, each verified before it is renamed into place."""
    os.makedirs(directory, exist_ok=True)
    for name, (magic, sha256) in IDX_FILES.items():
        target = os.path.join(directory, name + '.gz')
        if idx_path(directory, name) is not None:
            continue
        # the temporary name ends in .gz so that read_idx decompresses it before hashing
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{name}.', suffix='.part.gz')
        try:
            with os.fdopen(fd, 'wb') as out:
                with urllib.request.urlopen(base_url + name + '.gz', timeout=60) as response:
                    while True:
                        chunk = response.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
            try:
                read_idx(tmp, magic, sha256)
            except DataError as e:
                raise DataError(str(e).replace(tmp, f'{target} (as downloaded)')) from None
            os.replace(tmp, target)
        except OSError as e:
            raise DataError(f'{target}: download failed: {e}') from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def main(argv=None, prog='python -m gluon_softmax.data_files'):
    """``python -m gluon_softmax.data_files [DIR]``: verify the data set and say where it is.

    ``prog``: the command's name in its usage line (``python -m gluon_softmax.data`` runs it too).
    """
    from gluon_softmax.run.cli import Parser  # only the command line needs them
    from gluon_softmax.run.signals import exit_on_signals
    parser = Parser(prog=prog,
                    description='Check that Fashion-MNIST is complete and intact (the count '
                                'and SHA-256 of each of the four IDX files) and say where it is.')
    parser.add_argument('dir', nargs='?', metavar='DIR',
                        help='directory holding the four IDX files, .gz or not (default: '
                             f'${ENV_DIR}, then MXNet\'s cache {mxnet_cache_dir()}, then '
                             f'{DEBIAN_DIR})')
    args = parser.parse_args(argv)
    unchanged = 'nothing was changed'  # the check only reads
    try:
        exit_on_signals('looking for the data set', unchanged)
        directory = find_data_dir(args.dir)
        for train in (True, False):
            # Ctrl-C says which file was being verified: reading one takes seconds
            exit_on_signals(f'verifying the {"training" if train else "test"} set in '
                            f'{directory}', unchanged)
            read_split(directory, train)
    except DataError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'Fashion-MNIST verified in {directory}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
