"""Make MXNet 1.9.1 importable on the Pythons and NumPys it runs with, or say in one line why not.

``gluon_softmax/__init__.py`` imports this module first, so ``import gluon_softmax`` (and every
``gluon_softmax.<module>``) runs it before any ``import mxnet``. Outside the package, import
``gluon_softmax`` before ``mxnet``. Run as a script (``python gluon_softmax/_compat.py``, standard
library only, as the Makefile does before building a venv) it checks only the interpreter and
exits 2 with the same ``error:`` line when it is not supported.
"""
import sys

# MXNet 1.9.1 needs NumPy < 2 (NumPy 2 removed names such as np.PZERO that mxnet.numpy reads at
# import), and NumPy 1.x has wheels up to Python 3.12 only.
SUPPORTED_PYTHONS = ((3, 8), (3, 12))  # first and last minor version, inclusive
TESTED = 'Python 3.11 or 3.12'
GET_ONE = ('get one with `uv python install 3.12`, `pyenv install 3.12`, or your distribution '
           '(apt-get install python3.12-venv), then `make PYTHON=python3.12 ...`')


def python_problem(version_info=sys.version_info):
    """The one-line reason this interpreter cannot run MXNet 1.9.1, or None."""
    low, high = SUPPORTED_PYTHONS
    if low <= tuple(version_info[:2]) <= high:
        return None
    return (f'Python {version_info[0]}.{version_info[1]} is not supported: MXNet 1.9.1 needs '
            f'NumPy < 2, which has no wheels for it; use {TESTED}: {GET_ONE}')


def numpy_problem(version):
    """The one-line reason NumPy ``version`` (a string) cannot run MXNet 1.9.1, or None."""
    if int(version.split('.')[0]) < 2:
        return None
    return (f'NumPy {version} is installed, but MXNet 1.9.1 needs NumPy < 2: '
            f'pip install "numpy<2" (1.26.4 on Python 3.12, 1.23.5 before), then restart Python')


def _restore_numpy_bool():
    """Check the interpreter and NumPy; give NumPy >= 1.24 back the ``np.bool`` alias MXNet uses."""
    problem = python_problem()
    if problem:
        raise ImportError(problem)
    import numpy
    problem = numpy_problem(numpy.__version__)
    if problem:
        raise ImportError(problem)
    # NumPy 1.24 removed np.bool (an alias of the builtin since 1.20); mxnet/numpy/utils.py reads
    # it at import. Older NumPys still have it (with a DeprecationWarning), so leave them alone.
    major, minor = (int(part) for part in numpy.__version__.split('.')[:2])
    if (major, minor) >= (1, 24) and 'bool' not in vars(numpy):
        numpy.bool = bool


if __name__ == '__main__':
    _problem = python_problem()
    if _problem:
        print(f'error: {_problem}', file=sys.stderr)
        sys.exit(2)
else:
    _restore_numpy_bool()
