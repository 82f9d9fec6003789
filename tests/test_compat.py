"""Supported Pythons and NumPys: the np.bool shim, the one-line answers, the self-healing venv."""
import glob
import os
import shutil
import subprocess
import sys
import warnings

import numpy
import pytest

import gluon_softmax  # noqa: F401  (the shim under test runs here, before MXNet)
from gluon_softmax import _compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPAT_SCRIPT = os.path.join(ROOT, 'gluon_softmax', '_compat.py')
HERE = '%d.%d' % sys.version_info[:2]


def find_python(minor):
    """A runnable python3.<minor> (on PATH or under pyenv), or None."""
    pyenv = os.path.expanduser(f'~/.pyenv/versions/3.{minor}.*/bin/python3.{minor}')
    candidates = [shutil.which(f'python3.{minor}')] + sorted(glob.glob(pyenv))
    for path in filter(None, candidates):
        if subprocess.run([path, '-c', ''], capture_output=True).returncode == 0:
            return path
    return None


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


@pytest.mark.parametrize('version', [(3, 8), (3, 11), (3, 12)])
def test_supported_pythons_pass(version):
    assert _compat.python_problem(version + (0, 'final', 0)) is None


@pytest.mark.parametrize('version', [(3, 7), (3, 13), (3, 14)])
def test_unsupported_python_names_the_supported_ones_and_how_to_get_one(version):
    message = _compat.python_problem(version + (0, 'final', 0))
    assert message.startswith(f'Python 3.{version[1]} is not supported')
    assert 'Python 3.11 or 3.12' in message and 'uv python install 3.12' in message
    assert '\n' not in message


def test_numpy_problem():
    assert _compat.numpy_problem('1.23.5') is None and _compat.numpy_problem('1.26.4') is None
    assert _compat.numpy_problem('2.0.0').startswith('NumPy 2.0.0 is installed, but MXNet 1.9.1 '
                                                     'needs NumPy < 2: pip install "numpy<2"')


def test_numpy_bool_is_there_for_mxnet():
    # NumPy 1.23 still has the alias (reading it warns); from 1.24 the shim supplies it.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        assert numpy.bool is bool
    import mxnet  # noqa: F401  would fail at mxnet/numpy/utils.py without it


def test_import_with_numpy_2_says_so_in_one_line(tmp_path):
    # A stand-in NumPy 2 ahead of the real one on the path: the package must stop before MXNet.
    (tmp_path / 'numpy').mkdir()
    (tmp_path / 'numpy' / '__init__.py').write_text("__version__ = '2.0.0'\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    proc = run([sys.executable, '-c', 'import gluon_softmax'], env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        'ImportError: ' + _compat.numpy_problem('2.0.0'))


def test_script_checks_the_interpreter_only():
    proc = run([sys.executable, COMPAT_SCRIPT])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '', '')


@pytest.fixture
def python313():
    path = find_python(13)
    if path is None:
        pytest.skip('no runnable Python 3.13 here')
    return path


def test_script_rejects_python_3_13_in_one_line(python313):
    proc = run([python313, COMPAT_SCRIPT])
    assert proc.returncode == 2
    assert proc.stderr == f'error: {_compat.python_problem((3, 13))}\n'


def test_import_on_python_3_13_says_so_in_one_line(python313):
    proc = run([python313, '-c', 'import gluon_softmax'], cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f'ImportError: {_compat.python_problem((3, 13))}'


needs_make = pytest.mark.skipif(shutil.which('make') is None, reason='make not installed')


def make(*args):
    return run(['make', '--no-print-directory', '-C', ROOT, *args])


@needs_make
def test_make_rejects_python_3_13_and_leaves_no_venv(python313, tmp_path):
    venv = tmp_path / 'venv'
    proc = make('setup', f'PYTHON={python313}', f'VENV={venv}')
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f'error: {_compat.python_problem((3, 13))}'
    assert not venv.exists()


def fake_venv(path, script):
    """A venv stand-in whose bin/python runs ``script`` (sh), with an up-to-date install stamp."""
    (path / 'bin').mkdir(parents=True)
    python = path / 'bin' / 'python'
    python.write_text('#!/bin/sh\n' + script + '\n')
    python.chmod(0o755)
    (path / '.installed').touch()  # newer than setup.cfg and pyproject.toml


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
