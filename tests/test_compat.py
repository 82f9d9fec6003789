"""Today's Pythons and NumPys: the names put back for MXNet, a scan of every NumPy name MXNet
reads, one call per restored group, the one-line refusals, the Makefile's venv, and a Colab-like
install (Python 3.12 with NumPy 2 first, then the README's lines)."""
import ast
import functools
import glob
import importlib
import importlib.util
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types
import warnings

import numpy
import pytest

import gluon_softmax  # noqa: F401  (the shim under test runs here, before MXNet)
from gluon_softmax import _compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPAT_SCRIPT = os.path.join(ROOT, 'gluon_softmax', '_compat.py')
HERE = '%d.%d' % sys.version_info[:2]
NUMPY_2 = _compat._major_minor(numpy.__version__) >= (2, 0)
# where MXNet names NumPy functions as strings and reads them with getattr
DISPATCH_LISTS = ('_NUMPY_ARRAY_FUNCTION_LIST', '_NUMPY_ARRAY_UFUNC_LIST')


def find_python(minor):
    """A runnable python3.<minor> (on PATH or under pyenv), or None."""
    pyenv = os.path.expanduser(f'~/.pyenv/versions/3.{minor}.*/bin/python3.{minor}')
    candidates = [shutil.which(f'python3.{minor}')] + sorted(glob.glob(pyenv), reverse=True)
    for path in filter(None, candidates):
        if subprocess.run([path, '-c', ''], capture_output=True).returncode == 0:
            return path
    return None


def run(cmd, **kwargs):
    kwargs.setdefault('timeout', 600)
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


# ---------------------------------------------------------------- the scan of MXNet's sources

def numpy_reads(source):
    """Every dotted NumPy name ``source`` reads: ``numpy.X.Y`` for ``alias.X.Y``, where the module
    binds ``alias`` with ``import numpy [as alias]``; ``from numpy[.sub] import X``; and the
    strings of MXNet's dispatch lists, which it looks up with ``getattr(numpy, name)``."""
    tree = ast.parse(source)
    aliases, reads = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                if name.name == 'numpy':
                    aliases.add(name.asname or 'numpy')
                elif name.name.startswith('numpy.') and name.asname is None:
                    aliases.add('numpy')
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split('.')[0] == 'numpy':
            reads.update(f'{node.module}.{name.name}' for name in node.names)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.List) and any(
                getattr(target, 'id', None) in DISPATCH_LISTS for target in node.targets):
            reads.update('numpy.' + element.value for element in node.value.elts
                         if isinstance(element, ast.Constant))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):  # a.b.c is read, and so are a.b and a
            chain, inner = [], node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in aliases:
                reads.add('.'.join(['numpy'] + chain[::-1]))
    return reads


def first_missing(dotted):
    """The shortest prefix of ``numpy.X.Y`` that does not resolve, or None."""
    parts = dotted.split('.')
    obj = numpy
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # old aliases that NumPy still has warn when read
        for i, part in enumerate(parts[1:], start=2):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                try:
                    obj = importlib.import_module('.'.join(parts[:i]))
                except ImportError:
                    return '.'.join(parts[:i])
    return None


@functools.lru_cache(maxsize=None)
def reads_by_file(package_dir):
    """``((relative path, frozenset of dotted NumPy names it reads), ...)`` over the Python
    files under ``package_dir``; MXNet's are scanned once per test process (a few seconds)."""
    found = []
    for path in sorted(pathlib.Path(package_dir).rglob('*.py')):
        with warnings.catch_warnings():
            # MXNet's '\d' in plain strings (a SyntaxWarning from 3.12, before a DeprecationWarning)
            warnings.simplefilter('ignore', (SyntaxWarning, DeprecationWarning))
            reads = numpy_reads(path.read_text(encoding='utf-8', errors='replace'))
        found.append((str(path.relative_to(package_dir)), frozenset(reads)))
    return tuple(found)


def missing_numpy_names(package_dir):
    """``{missing name: [files reading it]}`` over the Python files under ``package_dir``."""
    missing = {}
    for path, reads in reads_by_file(str(package_dir)):
        for dotted in reads:
            name = first_missing(dotted)
            if name:
                missing.setdefault(name, []).append(path)
    return missing


def mxnet_dir():
    return os.path.dirname(importlib.util.find_spec('mxnet').origin)


@pytest.mark.slow  # seconds each: the full suite only (make test-fast leaves it out)
@pytest.mark.xdist_group('mxnet-scan')
def test_every_numpy_name_mxnet_reads_is_there():
    # after `import gluon_softmax`: at import or at call time, MXNet finds every name it reads
    missing = missing_numpy_names(mxnet_dir())
    assert missing == {}, f'NumPy {numpy.__version__} lacks names MXNet 1.9.1 reads: {missing}'


def test_the_scan_sees_every_kind_of_read(tmp_path):
    (tmp_path / 'reads.py').write_text(
        'import numpy as onp\nimport numpy.linalg\nfrom numpy import not_a_name_1\n'
        'x = onp.not_a_name_2\ny = numpy.linalg.not_a_name_3\nz = onp.random.randint\n'
        "_NUMPY_ARRAY_FUNCTION_LIST = ['sum', 'not_a_name_4', 'linalg.not_a_name_5']\n"
        'def f(np):\n    return np.any\n')  # np is not NumPy here
    assert missing_numpy_names(tmp_path) == {
        f'numpy.{name}': ['reads.py'] for name in
        ('not_a_name_1', 'not_a_name_2', 'linalg.not_a_name_3', 'not_a_name_4',
         'linalg.not_a_name_5')}


@pytest.mark.xdist_group('mxnet-scan')  # beside the test above: one scan of MXNet's sources
def test_every_restored_name_is_one_mxnet_reads():
    # the shim adds nothing MXNet does not need
    read = {dotted.split('.')[1] for _, reads in reads_by_file(mxnet_dir()) for dotted in reads}
    assert set(_compat._restored(numpy)) - read == set()


# ---------------------------------------------------------------- the restored names

def test_restoring_adds_only_what_is_missing_and_overwrites_nothing():
    fake = types.ModuleType('fake_numpy')
    for name in ('all', 'any', 'prod', 'round', 'sort', 'isin', 'ravel', 'trapezoid'):
        setattr(fake, name, getattr(numpy, name, None))
    fake.PZERO, fake.bool = 'kept', 'kept too'
    put_back = _compat.restore_numpy_names(fake)
    assert fake.PZERO == 'kept' and fake.bool == 'kept too'
    assert 'PZERO' not in put_back and 'bool' not in put_back
    assert set(put_back) == set(_compat._restored(numpy)) - {'PZERO', 'bool'}
    assert _compat.restore_numpy_names(fake) == []  # a second time: nothing left to do
    # functions are new objects: MXNet's dispatch table is keyed by NumPy's own functions
    assert fake.sometrue is not fake.any and fake.sometrue([0, 1])


def test_what_was_restored_matches_this_numpy():
    # each name now resolves; on NumPy 2 the constants are NumPy 1's values
    for name in _compat._restored(numpy):
        assert _compat._has(numpy, name), name
    if NUMPY_2:
        assert numpy.PINF == math.inf and numpy.NINF == -math.inf and numpy.Inf == math.inf
        assert math.copysign(1, numpy.NZERO) == -1 and math.isnan(numpy.NaN)
        assert numpy.bool is numpy.bool_  # NumPy 2's own, not replaced by the builtin


def test_official_numpy_on_mxnet_arrays_still_dispatches_to_the_right_function():
    from mxnet import np
    x = np.array([0.0, 2.0])
    assert bool(numpy.any(x)) and not bool(numpy.all(x))
    assert float(numpy.prod(np.array([2.0, 3.0]))) == 6.0


def test_call_time_reads_of_mxnet_numpy_fallbacks():
    from mxnet import np
    x = np.array([[3.0, 1.0], [2.0, 4.0]])
    numpy.testing.assert_array_equal(np.msort(x).asnumpy(), [[2.0, 1.0], [3.0, 4.0]])
    numpy.testing.assert_array_equal(np.in1d(x, np.array([1.0, 4.0])).asnumpy(),
                                     [False, True, False, True])
    assert bool(np.alltrue(x > 0)) and not bool(np.alltrue(x > 1))
    numpy.testing.assert_allclose(np.trapz(x).asnumpy(), [2.0, 3.0])
    assert math.isinf(float(np.PINF)) and float(np.NINF) < 0 and float(np.PZERO) == 0.0


def test_call_time_financial_functions_say_where_they_went():
    from mxnet import np
    with pytest.raises(Exception, match='numpy_financial|numpy-financial'):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            np.npv(0.1, np.array([1.0, 2.0]))


def test_call_time_numpy_compat_in_pad():
    from mxnet import np
    padded = np.pad(np.ones((2, 2)), ((1, 1), (1, 1)), mode='constant')
    assert padded.shape == (4, 4) and float(padded.sum()) == 4.0


def test_call_time_np_inf_in_the_estimator(tmp_path):
    import mxnet as mx
    from mxnet.gluon.contrib.estimator import event_handler
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        handler = event_handler.CheckpointHandler(str(tmp_path), monitor=mx.metric.Loss(),
                                                  save_best=True, mode='min')
    assert handler.best == math.inf


def test_call_time_np_int_in_test_utils(monkeypatch):
    from mxnet import test_utils
    # chi_square_check needs scipy only for its last line: a stand-in returns the counts
    fake_stats = types.SimpleNamespace(chisquare=lambda f_obs, f_exp: (None, list(f_obs)))
    monkeypatch.setattr(test_utils, 'ss', fake_stats)
    p, observed, _ = test_utils.chi_square_check(lambda n: numpy.array([0, 1, 1, 2]), [0, 1, 2],
                                                 [0.25, 0.5, 0.25], nsamples=4)
    assert p == [1, 2, 1] and observed.dtype.kind == 'i'


def test_numpy_scalars_in_operator_parameters():
    # MXNet writes parameters with str(): uneven splits pass NumPy integers (split_v2)
    import mxnet as mx
    from mxnet import gluon, np
    parts = gluon.utils.split_and_load(np.arange(10), [mx.cpu(0), mx.cpu(1), mx.cpu(2)],
                                       even_split=False)
    assert [p.shape[0] for p in parts] == [4, 3, 3]
    if NUMPY_2:
        assert repr(numpy.int64(2)) == '2'  # the side effect the README states


def test_printing_is_changed_only_under_numpy_2():
    fake = types.SimpleNamespace(__version__='1.26.4', set_printoptions=None)
    assert _compat._print_scalars_as_numpy_1(fake) is False  # never calls set_printoptions
    calls = []
    fake = types.SimpleNamespace(__version__='2.5.5', set_printoptions=lambda **k: calls.append(k))
    assert _compat._print_scalars_as_numpy_1(fake) is True and calls == [{'legacy': '1.25'}]


# ---------------------------------------------------------------- the one-line refusals

@pytest.mark.parametrize('version', [(3, 8), (3, 11), (3, 12), (3, 13), (3, 14)])
def test_supported_pythons_pass(version):
    assert _compat.python_problem(version + (0, 'final', 0)) is None


@pytest.mark.parametrize('version', [(2, 7), (3, 7)])
def test_too_old_python_names_what_works_in_one_line(version):
    message = _compat.python_problem(version + (0, 'final', 0))
    assert message.startswith(f'Python {version[0]}.{version[1]} is too old')
    assert '3.13' in message and '\n' not in message


@pytest.mark.parametrize('version, ok', [('1.16.6', False), ('1.17.0', True), ('1.23.5', True),
                                         ('1.26.4', True), ('2.0.0', True), ('2.5.5', True),
                                         ('2.6.0rc1', True)])
def test_numpy_problem(version, ok):
    assert (_compat.numpy_problem(version) is None) == ok


def test_import_with_a_too_old_numpy_says_so_in_one_line(tmp_path):
    # a stand-in NumPy ahead of the real one on the path: the package stops before MXNet
    (tmp_path / 'numpy').mkdir()
    (tmp_path / 'numpy' / '__init__.py').write_text("__version__ = '1.16.6'\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    proc = run([sys.executable, '-c', 'import gluon_softmax'], env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == 'ImportError: ' + _compat.numpy_problem('1.16.6')


def test_import_without_mxnet_says_how_to_install_it():
    # -S: no site-packages, hence no MXNet (and no NumPy: MXNet is checked first)
    proc = run([sys.executable, '-S', '-c', f'import sys; sys.path.insert(0, {ROOT!r}); '
                'import gluon_softmax'])
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == 'ImportError: ' + _compat.MXNET_MISSING


def test_script_checks_the_interpreter_only():
    proc = run([sys.executable, COMPAT_SCRIPT])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '', '')


@pytest.fixture
def python37():
    path = find_python(7)
    if path is None:
        pytest.skip('no runnable Python 3.7 here')
    return path


def test_script_rejects_python_3_7_in_one_line(python37):
    proc = run([python37, COMPAT_SCRIPT])
    assert proc.returncode == 2
    assert proc.stderr == f'error: {_compat.python_problem((3, 7))}\n'


needs_make = pytest.mark.skipif(shutil.which('make') is None, reason='make not installed')


def make(*args):
    return run(['make', '--no-print-directory', '-C', ROOT, *args])


@needs_make
def test_make_rejects_python_3_7_and_leaves_no_venv(python37, tmp_path):
    venv = tmp_path / 'venv'
    proc = make('setup', f'PYTHON={python37}', f'VENV={venv}')
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f'error: {_compat.python_problem((3, 7))}'
    assert not venv.exists()


@needs_make
def test_make_installs_mxnet_without_its_numpy_pin():
    proc = make('-n', 'setup', f'VENV={ROOT}/.venv-never-made')  # -n: print, run nothing
    assert proc.returncode == 0, proc.stderr
    assert re.search(r'pip install .*--no-deps -c constraints.txt mxnet d2l', proc.stdout)
    with open(os.path.join(ROOT, 'constraints.txt')) as f:
        assert 'mxnet==1.9.1' in f.read()


def fake_venv(path, script):
    """A venv stand-in whose bin/python runs ``script`` (sh), with an up-to-date install stamp."""
    (path / 'bin').mkdir(parents=True)
    python = path / 'bin' / 'python'
    python.write_text('#!/bin/sh\n' + script + '\n')
    python.chmod(0o755)
    (path / '.installed').touch()  # newer than setup.cfg, pyproject.toml and constraints.txt


@needs_make
def test_make_keeps_a_venv_of_the_chosen_python(tmp_path):
    fake_venv(tmp_path / 'venv', f'echo {HERE}')
    proc = make('-q', 'setup', f'PYTHON={sys.executable}', f'VENV={tmp_path / "venv"}')
    assert proc.returncode == 0, proc.stdout + proc.stderr  # -q: 0 means nothing to do


@needs_make
@pytest.mark.parametrize('script', ['echo 3.9', 'exit 1'], ids=['other-python', 'broken-python'])
def test_make_rebuilds_a_venv_of_another_or_a_broken_python(tmp_path, script):
    venv = tmp_path / 'venv'
    fake_venv(venv, script)
    proc = make('-n', 'setup', f'PYTHON={sys.executable}', f'VENV={venv}')  # -n: print, run nothing
    assert proc.returncode == 0, proc.stderr
    assert f'rm -rf {venv}' in proc.stdout
    assert venv.exists()


# ---------------------------------------------------------------- Colab: NumPy 2 on Python 3.12

def readme_install_lines(heading='### Google Colab'):
    """The shell lines of the first ``sh`` block after ``heading`` in docs/pythons.md (the
    README's Supported Pythons), comments cut."""
    with open(os.path.join(ROOT, 'docs', 'pythons.md'), encoding='utf-8') as f:
        text = f.read()
    section = text[text.index(heading):]
    block = re.search(r'```sh\n(.*?)```', section, re.S).group(1)
    lines = [line.split('  #')[0].strip() for line in block.splitlines()]
    return [line for line in lines if line]


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info[:2] != (3, 12),
                    reason="Colab's Python: runs on the 3.12 leg (it builds a venv of its own)")
def test_colab_like_numpy_2_keeps_its_numpy_then_imports_and_trains(tmp_path, real_data_dir):
    venv = tmp_path / 'venv'
    clone = tmp_path / 'clone'
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(
        '.git', '.venv*', 'runs', 'bench-results', 'build', '*.egg-info', '__pycache__'))
    assert run([sys.executable, '-m', 'venv', str(venv)]).returncode == 0
    # what Colab has before the learner types anything: the newest NumPy 2
    pip = run([str(venv / 'bin' / 'pip'), 'install', '--quiet', 'numpy>=2'])
    assert pip.returncode == 0, pip.stderr
    env = dict(os.environ, PATH=f'{venv / "bin"}{os.pathsep}{os.environ["PATH"]}',
               VIRTUAL_ENV=str(venv))
    env.pop('PYTHONPATH', None)
    python = str(venv / 'bin' / 'python')
    before = run([python, '-c', 'import numpy; print(numpy.__version__)'], env=env).stdout
    lines = readme_install_lines()
    assert lines and all(line.startswith('pip install') for line in lines), lines
    for line in lines:
        proc = run(['sh', '-c', line], env=env, cwd=clone)
        assert proc.returncode == 0, f'{line}\n{proc.stderr}'
    after = run([python, '-c', 'import numpy; print(numpy.__version__)'], env=env).stdout
    assert after == before and after.startswith('2.'), (before, after)
    out = tmp_path / 'run'
    train = run([python, '-m', 'gluon_softmax.train', '--epochs', '1', '--data-dir',
                 str(real_data_dir), '--out', str(out)], env=env, cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    history = json.loads((out / 'metrics.json').read_text())['epochs']
    assert len(history) == 1 and history[0]['test_acc'] > 0.7
