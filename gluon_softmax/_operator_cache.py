"""``import mxnet`` a quarter cheaper: the Python code of MXNet's operators compiled once.

``import mxnet`` costs about 2.4 s of CPU here, and about a third of it is compiling: for each
of its ~2300 operators MXNet 1.9.1 writes the source of a Python function and ``exec``-s it
(``mxnet/ndarray/register.py``, ``mxnet/symbol/register.py``). Those sources are the same in
every process but for one number, the operator's handle (an address in the native library,
different in each process). Every program of ours, every launcher worker and server, every
notebook kernel pays it again.

This module compiles each such source once, with the handle replaced by a marker, and keeps the
code objects in a file, as Python keeps a module's in its ``.pyc`` (``marshal``, one file per
Python bytecode version and MXNet library). A later import takes the code from the file and puts
its own handle where the marker is: the function it gets is the one MXNet's ``exec`` would have
made (``tests/test_operator_cache.py`` compares all of them). Measured here (six interleaved
runs each): ``import gluon_softmax, mxnet`` took 1.7 s of CPU with the file, 2.4 s without.
Where the file cannot be read or written, MXNet compiles as usual: the cache can make the import
faster, never fail.

The file: ``$XDG_CACHE_HOME/gluon_softmax`` (default ``~/.cache/gluon_softmax``), about 6 MB.
``GLUON_SOFTMAX_OPERATOR_CACHE=0`` turns the cache off; ``=DIR`` puts the file in DIR.
``gluon_softmax/__init__.py`` calls :func:`install` before any module of ours imports MXNet;
when MXNet is imported already, it does nothing.
"""
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import marshal
import os
import sys

ENV = 'GLUON_SOFTMAX_OPERATOR_CACHE'
# the two modules that exec an operator's source (their functions also make mxnet.numpy's and
# mxnet.numpy_extension's operators), and the package, at whose end the file is written
EXEC_MODULES = ('mxnet.ndarray.register', 'mxnet.symbol.register')
PACKAGE = 'mxnet'
# where the handle appears in a generated source: the first argument of the call it ends with
CALLS = ('_imperative_invoke(', '_symbol_creator(')
# the handle's place holds 77...7 with as many digits (an int no generated source holds
# otherwise), so that every column of the compiled code is where it would have been
MARKER_DIGIT = '7'

# what this process did: sources compiled, taken from the file, left to MXNet; the file's path
stats = {'compiled': 0, 'cached': 0, 'passed': 0, 'path': None, 'written': False}
_codes = None  # key -> code object while MXNet is being imported; None before and after
_CODE = type(compile('', '<string>', 'exec'))
trace = None  # a list: each (source, code object used) is appended (tests/test_operator_cache.py)


def cache_dir(environ=os.environ):
    """The cache's directory, or None when ``$GLUON_SOFTMAX_OPERATOR_CACHE`` is ``0``."""
    setting = environ.get(ENV, '')
    if setting == '0':
        return None
    if setting:
        return os.path.expanduser(setting)
    base = environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'gluon_softmax')


def cache_path(directory, library):
    """The file for this Python's bytecode and the MXNet library at ``library`` (path, size and
    modification time: another MXNet build, e.g. a CUDA one, has operators of its own)."""
    st = os.stat(library)
    identity = f'{os.path.realpath(library)}:{st.st_size}:{st.st_mtime_ns}'
    tag = hashlib.sha1(identity.encode()).hexdigest()[:16]
    return os.path.join(directory, f'mxnet-operators-{importlib.util.MAGIC_NUMBER.hex()}-{tag}')


def _key(source):
    """``(key, handle, marker, normalized source)`` of a generated operator source, or None for any
    other source. (str.find, not a regular expression: the sources are mostly docstring.)"""
    pieces, handles, start = [], set(), 0
    for call in CALLS:
        at = source.find(call)
        while at >= 0:
            digits_at = at + len(call)
            end = source.find(',', digits_at)
            if end < 0 or not source[digits_at:end].isdigit():
                return None
            handles.add(int(source[digits_at:end]))
            pieces.append((digits_at, end))
            at = source.find(call, end)
    if len(handles) != 1:
        return None
    handle = handles.pop()
    marker = MARKER_DIGIT * len(str(handle))
    parts = []
    for digits_at, end in sorted(pieces):
        parts += [source[start:digits_at], marker]
        start = end
    normalized = ''.join(parts) + source[start:]
    return hashlib.sha1(normalized.encode()).digest(), handle, int(marker), normalized


def _with_handle(code, marker, handle):
    """``code`` with the constant ``marker`` replaced by ``handle``, in nested code too."""
    consts = tuple(handle if type(c) is int and c == marker else  # noqa: E721 (not True/1.0)
                   _with_handle(c, marker, handle) if isinstance(c, type(code)) else c
                   for c in code.co_consts)
    return code.replace(co_consts=consts)


def code_for(source):
    """The code object for an operator's ``source``: from the cache when it holds it, else
    compiled (and kept for the file); None when ``source`` is not an operator's."""
    found = _key(source) if _codes is not None else None
    if found is None:
        return None
    key, handle, marker, normalized = found
    code = _codes.get(key)
    if type(code) is not _CODE:  # not there, or the file held something else under its key
        code = _codes[key] = compile(normalized, '<string>', 'exec')
        stats['compiled'] += 1
    else:
        stats['cached'] += 1
    code = _with_handle(code, marker, handle)
    if trace is not None:
        trace.append((source, code))
    return code


def _exec(source, globals=None, locals=None):  # pylint: disable=redefined-builtin
    """``exec`` as the register modules call it, with the code from :func:`code_for`."""
    if globals is None:  # exec's default: the caller's globals
        caller = sys._getframe(1)  # pylint: disable=protected-access
        globals = caller.f_globals
        if locals is None:
            locals = caller.f_locals
    code = code_for(source) if isinstance(source, str) else None
    if code is None:
        stats['passed'] += 1
        code = source
    return exec(code, globals, locals)  # pylint: disable=exec-used


def _load(path):
    try:
        with open(path, 'rb') as f:
            codes = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return {}  # none yet, unreadable, or written by something else: compile as usual
    return codes if isinstance(codes, dict) else {}


def _save(path, codes):
    """Write the file whole or not at all (a temporary file renamed over it)."""
    tmp = f'{path}.{os.getpid()}.tmp'
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(tmp, 'wb') as f:
            marshal.dump(codes, f)
        os.replace(tmp, path)
        stats['written'] = True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


class _Loader(importlib.abc.Loader):
    """MXNet's own loader, with our ``exec`` in the register modules' globals and the file
    loaded before the package's import and written after it."""

    def __init__(self, inner, path):
        self.inner, self.path = inner, path

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        global _codes  # pylint: disable=global-statement
        if module.__name__ != PACKAGE:
            module.__dict__['exec'] = _exec
            self.inner.exec_module(module)
            return
        _codes = _load(self.path)
        try:
            self.inner.exec_module(module)
        finally:
            codes, _codes = _codes, None
            remove()  # MXNet's modules are imported: later imports go to the path finder
        if stats['compiled']:
            _save(self.path, codes)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, path):
        self.path = path

    def find_spec(self, fullname, path, target=None):
        if fullname != PACKAGE and fullname not in EXEC_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self.path)
        return spec


def install(environ=os.environ):
    """Use the cache for the coming ``import mxnet``; returns the file's path, or None when it
    is off, MXNet is imported already, or its library is not found."""
    directory = cache_dir(environ)
    if directory is None or PACKAGE in sys.modules or any(
            isinstance(f, _Finder) for f in sys.meta_path):
        return None
    spec = importlib.machinery.PathFinder.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    library = os.path.join(list(spec.submodule_search_locations)[0], 'libmxnet.so')
    try:
        path = cache_path(directory, library)
    except OSError:
        return None
    # just before the path finder, which would find MXNet: finders put ahead of it stay ahead
    finders = sys.meta_path
    at = next((i for i, f in enumerate(finders) if f is importlib.machinery.PathFinder),
              len(finders))
    finders.insert(at, _Finder(path))
    stats['path'] = path
    return path


def remove():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
