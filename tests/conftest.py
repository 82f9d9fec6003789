"""Shared fixtures: MXNet's NumPy mode, tiny IDX files written on the fly, the real data set;
headless Chromium for the pages with figures (the report, the exported notebook).

Other test modules may import the helpers directly (``from conftest import write_idx``).
"""
import gzip
import html.parser
import os
import signal
import struct

import numpy as onp
import pytest

from gluon_softmax.export import skip_iri_grammar

# One OpenMP thread in this process and in the programs the tests start (they inherit it), set
# before MXNet loads its OpenMP runtime: the tests run side by side over the cores (pytest-xdist)
# and with programs of their own, where MXNet's default of one thread per core only makes idle
# threads spin against each other (measured: tests/test_parallel.py and test_checkpoint.py
# over two workers took 72-78 s with 1 thread, 86-92 s without). A test that needs another
# value sets it in its program's environment.
os.environ.setdefault('OMP_NUM_THREADS', '1')

# nbformat's jsonschema would build a grammar no notebook needs, 2-3 s of CPU in every test
# process that reads a notebook: skipped as python -m gluon_softmax.export skips it
skip_iri_grammar()

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # the IDX magic numbers, restated from the format spec
IDX_NAMES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
             't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')
# split -> (images file, labels file, number of examples in the tiny copy)
TINY_SPLITS = {True: ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 12),
               False: ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte', 8)}


def pytest_collection_modifyitems(items):
    """The longest tests first (those with the long bound, the longest bound first, then the
    other slow ones), so that pytest-xdist starts them early instead of leaving one of them to
    run alone at the end; otherwise the files' own order."""
    from procs import LONG_TEST_SECONDS

    def kind(item):
        timeout = item.get_closest_marker('timeout')
        bound = timeout.args[0] if timeout and timeout.args else 0
        if bound >= LONG_TEST_SECONDS:
            return 0, -bound
        return (1 if item.get_closest_marker('slow') else 2), 0
    items.sort(key=kind)  # stable


# CI runs the suite once per Python (.ci/run sets GLUON_SOFTMAX_CI=1). A few long tests check
# what does not depend on the Python (the notebook's structure, its Chinese text, the benchmark's
# sanity): marked ci_leg('3.N'), CI runs each on that one leg; everywhere else they always run.
CI_VARIABLE = 'GLUON_SOFTMAX_CI'


def ci_leg_skip(leg, python, environ):
    """Why a test marked ``ci_leg(leg)`` does not run under ``python`` ('3.N'), or None."""
    if environ.get(CI_VARIABLE) == '1' and python != leg:
        return f'Python-independent: CI runs it on the {leg} leg ({CI_VARIABLE}=1)'
    return None


def pytest_runtest_setup(item):
    marker = item.get_closest_marker('ci_leg')
    if marker:
        import sys
        reason = ci_leg_skip(marker.args[0], '%d.%d' % sys.version_info[:2], os.environ)
        if reason:
            pytest.skip(reason)


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """In-process ``main()`` installs its handlers in pytest's process: put the old ones back."""
    from gluon_softmax.run.signals import STOP_SIGNALS
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture(autouse=True)
def np_mode():
    """Every test runs in MXNet's NumPy mode (``mxnet.np`` arrays, NumPy semantics)."""
    # imported here, not with this file: pytest-xdist's controller process, which runs no
    # test, loads this file too, and need not import MXNet (a second) before starting workers
    from mxnet import npx  # pylint: disable=import-outside-toplevel
    npx.set_np()
    yield


def write_idx(path, array, magic, compress=True, dims=None):
    """Write ``array`` (uint8) to ``path`` as an IDX file: magic, dimensions, raw bytes.

    ``compress`` gzips the bytes (the file name is ``path`` as given either way);
    ``dims`` overrides the dimensions written in the header, to make corrupt files.
    """
    array = onp.ascontiguousarray(array, dtype=onp.uint8)
    dims = array.shape if dims is None else dims
    content = struct.pack('>I', magic) + struct.pack('>' + 'I' * len(dims), *dims) \
        + array.tobytes()
    path = os.fspath(path)
    with (gzip.open(path, 'wb') if compress else open(path, 'wb')) as f:
        f.write(content)
    return path


def tiny_arrays(train=True):
    """The tiny split's ``(images (n, 28, 28) uint8, labels (n,) uint8)``, the same every call."""
    n = TINY_SPLITS[bool(train)][2]
    rng = onp.random.RandomState(1 if train else 2)
    images = rng.randint(0, 256, size=(n, 28, 28)).astype(onp.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the pixel range
    labels = rng.permutation(onp.arange(n) % 10).astype(onp.uint8)
    return images, labels


def write_tiny_dataset(directory, compress=True):
    """Write the four tiny IDX files into ``directory`` (``name.gz`` or plain ``name``)."""
    os.makedirs(directory, exist_ok=True)
    for train, (images_name, labels_name, _) in TINY_SPLITS.items():
        images, labels = tiny_arrays(train)
        suffix = '.gz' if compress else ''
        write_idx(os.path.join(directory, images_name + suffix), images, IMAGES_MAGIC, compress)
        write_idx(os.path.join(directory, labels_name + suffix), labels, LABELS_MAGIC, compress)
    return directory


@pytest.fixture
def tiny_idx_dir(tmp_path):
    """A directory holding gzipped Fashion-MNIST-shaped IDX files: 12 train, 8 test images."""
    return write_tiny_dataset(tmp_path / 'tiny-fashion-mnist')


@pytest.fixture(name='write_idx')
def write_idx_fixture():
    """:func:`write_idx` as a fixture, for tests that prefer not to import conftest."""
    return write_idx


@pytest.fixture
def real_data_dir():
    """The directory of the installed Fashion-MNIST; skipped (CI: failed) when there is none."""
    from gluon_softmax import data
    try:
        return data.find_data_dir()
    except data.DataError as e:
        if os.environ.get('GLUON_SOFTMAX_REQUIRE_DATA') == '1':
            pytest.fail(f'real Fashion-MNIST required (GLUON_SOFTMAX_REQUIRE_DATA=1): {e}')
        pytest.skip(f'real Fashion-MNIST not installed: {e}')


@pytest.fixture(scope='session')
def small_data_copy(tmp_path_factory):
    """The small Fashion-MNIST (small_data.py), written once per session (per xdist worker)."""
    from gluon_softmax import data
    import small_data
    try:
        source = data.find_data_dir()
    except data.DataError:
        source = None  # a synthetic copy: the mechanics need the format, not the pictures
    return str(small_data.write_small_dataset(tmp_path_factory.mktemp('small-fashion-mnist'),
                                              source))


@pytest.fixture
def small_data_dir(small_data_copy, monkeypatch):
    """The small Fashion-MNIST's directory, pinned as the verified data set in this process
    for the test (child processes: ``small_data.command``)."""
    from gluon_softmax import idx
    import small_data
    files, splits = small_data.pinned_values(small_data_copy)
    for name, value in files.items():
        monkeypatch.setitem(idx.IDX_FILES, name, value)
    for train, value in splits.items():
        monkeypatch.setitem(idx.SPLITS, train, value)
    return small_data_copy


def assert_usage_error(capsys, argv, *needles):
    """The CLI's ``main(argv)`` exits 2 with one ``error:`` line mentioning every needle."""
    from gluon_softmax.train import main
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own validation
        status = e.code
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- browser

CHROMIUM = '/usr/bin/chromium'
# no host name resolves (file:// pages still load): a page that renders here renders offline
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                  '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync',
                  '--host-resolver-rules=MAP * ~NOTFOUND')


def chromium():
    """The browser, or skip (fail when GLUON_SOFTMAX_REQUIRE_BROWSER=1)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get('GLUON_SOFTMAX_REQUIRE_BROWSER') == '1':
        pytest.fail(f'{CHROMIUM} not found and GLUON_SOFTMAX_REQUIRE_BROWSER=1 '
                    '(apt-get install -y chromium)')
    pytest.skip(f'{CHROMIUM} not found (apt-get install -y chromium); '
                'set GLUON_SOFTMAX_REQUIRE_BROWSER=1 to make this a failure')


def run_chromium(tmp_path, *args):
    """Run headless Chromium with a profile under ``tmp_path``; its completed process."""
    profile = tmp_path / 'chromium-profile'
    profile.mkdir(exist_ok=True)
    import procs
    result = procs.run([chromium(), *CHROMIUM_FLAGS, f'--user-data-dir={profile}', *args],
                       what='headless Chromium')
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class RenderedFigures(html.parser.HTMLParser):
    """For each plotly graph div of a rendered DOM, the classes of the svg elements inside it."""

    VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'param',
            'source', 'track', 'wbr'}

    def __init__(self):
        super().__init__()
        self.svgs = {}  # div id -> list of svg classes
        self.stack = []  # open tags, each with the graph div it belongs to

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        owner = self.stack[-1][1] if self.stack else None
        classes = (attrs.get('class') or '').split()
        if tag == 'div' and 'plotly-graph-div' in classes:
            owner = attrs.get('id')
            self.svgs[owner] = []
        if tag == 'svg' and owner is not None:
            self.svgs[owner].extend(classes)
        if tag not in self.VOID:
            self.stack.append((tag, owner))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        # pop up to the matching tag (tolerates the odd unclosed element)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

