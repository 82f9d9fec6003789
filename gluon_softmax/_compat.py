"""Make MXNet 1.9.1 importable on today's Pythons and NumPys, or say in one line why not.

MXNet 1.9.1 is the last release (the project is archived). Its native library does not use
NumPy's C API, and its wheel installs on any Python 3; what ties it to NumPy 1.x is its Python
layer, which reads names that later NumPys removed. This module puts back exactly those names,
each only where the installed NumPy lacks it (``RESTORED`` says what, where MXNet reads it and
why), and makes NumPy scalars print as in NumPy 1 (see ``_print_scalars_as_numpy_1``).

``gluon_softmax/__init__.py`` imports this module first, so ``import gluon_softmax`` (and every
``gluon_softmax.<module>``) runs it before any ``import mxnet``. Outside the package, import
``gluon_softmax`` before ``mxnet``. Run as a script (``python gluon_softmax/_compat.py``, standard
library only, as the Makefile does before building a venv) it checks only the interpreter and
exits 2 with the same ``error:`` line when it cannot run.
"""
import sys

OLDEST_PYTHON = (3, 8)
TESTED = 'Python 3.11 (NumPy 1.23), 3.12 (NumPy 1.26 or 2.x) and 3.13 (NumPy 2.x)'
OLDEST_NUMPY = (1, 17)  # MXNet 1.9.1's own floor (its metadata says numpy>1.16)


def python_problem(version_info=sys.version_info):
    """The one-line reason this interpreter cannot run MXNet 1.9.1, or None."""
    if tuple(version_info[:2]) >= OLDEST_PYTHON:
        return None
    return (f'Python {version_info[0]}.{version_info[1]} is too old: gluon_softmax needs Python '
            f'{OLDEST_PYTHON[0]}.{OLDEST_PYTHON[1]} or newer (tested: {TESTED}); get one with '
            '`uv python install 3.13`, `pyenv install 3.13` or your distribution, then '
            '`make PYTHON=python3.13 ...`')


def numpy_problem(version):
    """The one-line reason NumPy ``version`` (a string) cannot run MXNet 1.9.1, or None."""
    if _major_minor(version) >= OLDEST_NUMPY:
        return None
    return (f'NumPy {version} is too old for MXNet 1.9.1 (it needs 1.17 or newer): '
            'pip install --upgrade numpy, then restart Python')


def _major_minor(version):
    parts = version.split('.')[:2]
    return tuple(int(''.join(c for c in part if c.isdigit()) or 0) for part in parts)


# ---------------------------------------------------------------- the names MXNet reads

def _financial_stub(name):
    def removed(*args, **kwargs):
        raise NotImplementedError(
            f'numpy.{name} was removed from NumPy (NEP 32); use numpy_financial.{name}')
    removed.__name__ = name
    return removed


def _restored(numpy):
    """name -> (value, where MXNet 1.9.1 reads it): what ``restore_numpy_names`` may put back.

    Functions are new function objects, never NumPy's own (``numpy.any`` for ``sometrue``):
    mxnet.numpy registers its ``__array_function__`` overrides in a dict keyed by the NumPy
    function, so an alias would make ``onp.any(mx_array)`` dispatch to MXNet's ``sometrue``.
    """
    import types

    def alias(target, name):
        def function(*args, **kwargs):
            return target(*args, **kwargs)
        function.__name__ = function.__qualname__ = name
        function.__doc__ = f'numpy.{name} as NumPy 1 had it (restored for MXNet 1.9.1)'
        return function

    def in1d(ar1, ar2, assume_unique=False, invert=False):
        return numpy.ravel(numpy.isin(ar1, ar2, assume_unique=assume_unique, invert=invert))

    def msort(a):
        return numpy.sort(a, axis=0)

    compat = types.ModuleType('numpy.compat', 'numpy.compat as MXNet 1.9.1 reads it')
    compat.basestring = str
    at_import, fallback, dispatch = ('numpy/utils.py, at import', 'numpy/fallback.py, at import',
                                     'numpy_dispatch_protocol.py, at import')
    table = {
        # NumPy 2.0 removed the constant aliases; mxnet.numpy re-exports them
        'PZERO': (0.0, at_import), 'NZERO': (-0.0, at_import),
        'PINF': (float('inf'), at_import), 'NINF': (float('-inf'), at_import),
        'NAN': (float('nan'), at_import), 'NaN': (float('nan'), at_import),
        # NumPy 1.24 removed the alias of the builtin bool (NumPy 2 has np.bool again, the
        # NumPy type, so it is never replaced there); mxnet.numpy.bool is this
        'bool': (bool, at_import + ' and in ndarray/numpy/_op.py'),
        # mxnet.numpy's fallbacks to official NumPy, bound at import (2.0 removed the first
        # four, 2.4 the last two); the financial functions left NumPy in 1.20 (NEP 32) and
        # raised since: so do these stubs
        'alltrue': (alias(numpy.all, 'alltrue'), fallback),
        'msort': (msort, fallback),
        'in1d': (in1d, fallback),
        'trapz': (alias(getattr(numpy, 'trapezoid', None), 'trapz'), fallback),
        **{name: (_financial_stub(name), fallback)
           for name in ('mirr', 'npv', 'pmt', 'ppmt', 'pv', 'rate')},
        # the __array_function__ dispatch list (removed in NumPy 2.0)
        'sometrue': (alias(numpy.any, 'sometrue'), dispatch),
        'product': (alias(numpy.prod, 'product'), dispatch),
        'round_': (alias(numpy.round, 'round_'), dispatch),
        # read when called: np.pad's mode check (numpy.compat went in 2.0), the estimator's
        # early-stopping defaults (np.Inf went in 2.0), and test_utils.chi_square_check
        # (np.int went in 1.24)
        'compat': (compat, 'ndarray/numpy/_op.py and symbol/numpy/_symbol.py, in pad()'),
        'Inf': (float('inf'), 'gluon/contrib/estimator/event_handler.py, when called'),
        'int': (int, 'test_utils.py, in chi_square_check()'),
    }
    return table


def _has(numpy, name):
    """Whether ``numpy.name`` exists, without NumPy's deprecation warnings for old aliases.

    A submodule that NumPy has but has not imported (``numpy.compat`` in NumPy 2.0-2.2) is
    imported, so that MXNet's attribute read finds NumPy's own.
    """
    import importlib
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            getattr(numpy, name)
            return True
        except AttributeError:
            pass
        try:
            importlib.import_module(f'{numpy.__name__}.{name}')
        except ImportError:
            return False
    return hasattr(numpy, name)


def restore_numpy_names(numpy):
    """Put back the names of ``_restored`` that ``numpy`` lacks; returns them, sorted."""
    put_back = []
    for name, (value, _where) in _restored(numpy).items():
        if not _has(numpy, name):
            setattr(numpy, name, value)
            put_back.append(name)
    return sorted(put_back)


def _print_scalars_as_numpy_1(numpy):
    """Under NumPy 2, make ``repr(np.int64(2))`` ``'2'`` again, as MXNet's operators need.

    MXNet passes operator parameters to its C++ library as ``str(value)``; a tuple or list of
    NumPy scalars then holds their reprs, which NumPy 2 writes as ``np.int64(2)``, and the
    parser rejects them. MXNet's own calls do this (gluon.utils.split_data computes split points
    with NumPy), so converting at our call sites would not be enough. The cost: every NumPy
    scalar in the process prints as in NumPy 1 (the README says so).
    """
    if _major_minor(numpy.__version__) >= (2, 0):
        numpy.set_printoptions(legacy='1.25')
        return True
    return False


MXNET_MISSING = ('MXNet is not installed: pip install --no-deps mxnet==1.9.1 (without its '
                 'dependencies, whose numpy<2 pin NumPy 2 and Python 3.13 cannot meet)')


def check_and_restore():
    """Check the interpreter, MXNet and NumPy, then make MXNet 1.9.1's Python layer importable."""
    import importlib.machinery
    # the path finder itself, not sys.meta_path: finding MXNet here must not look like loading it
    missing = importlib.machinery.PathFinder.find_spec('mxnet') is None
    problem = python_problem() or (missing and MXNET_MISSING)
    if problem:
        raise ImportError(problem)
    import numpy
    problem = numpy_problem(numpy.__version__)
    if problem:
        raise ImportError(problem)
    restore_numpy_names(numpy)
    _print_scalars_as_numpy_1(numpy)


if __name__ == '__main__':
    _problem = python_problem()
    if _problem:
        print(f'error: {_problem}', file=sys.stderr)
        sys.exit(2)
else:
    check_and_restore()
