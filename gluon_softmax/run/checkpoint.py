"""Checkpoints: parameters, optimizer state, RNG states and history in one file, written atomically.

One file, so a checkpoint is always whole: it is written under a temporary name
in the run directory, flushed, then renamed over the previous one.
"""
import io
import json
import os
import random
import tempfile
import zipfile

import numpy as onp
from numpy.lib import format as npy_format

from gluon_softmax.run.files import WriteError, atomic_write

CHECKPOINT = 'checkpoint.npz'
FORMAT = 'gluon_softmax-checkpoint-1'
# (dtype, shape or None for any length) of each array a checkpoint may hold
MEMBERS = {'meta': ('uint8', None), 'params': ('uint8', None), 'trainer': ('uint8', None),
           'numpy_rng_keys': ('uint32', (624,))}
META_LIMIT = 64 << 20  # bytes of meta: JSON of the history, a few hundred bytes an epoch
STATE_SLACK = 64 << 10  # bytes beyond the raw arrays: names, shapes, the pickled optimizer


class CheckpointError(Exception):
    """A checkpoint is missing, is not a checkpoint, or does not fit the model."""


def _bytes_of(save, directory):
    """The bytes that ``save(path)`` writes (MXNet's savers only take file names).

    The temporary file lives in ``directory`` (the run directory), not in
    ``$TMPDIR``: a run's disk is the one the user chose and checked.
    """
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.checkpoint-part-', suffix='.tmp')
    os.close(fd)
    try:
        try:
            if save(tmp) is False:
                return None
        except (OSError, ValueError):
            raise
        except Exception as e:  # noqa: BLE001 - MXNet's savers raise MXNetError for a full disk
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise WriteError(f'cannot write {directory}: {first}') from None
        with open(tmp, 'rb') as f:
            return f.read()
    finally:
        os.remove(tmp)


def _load_from_bytes(load, content, directory):
    """Call ``load(path)`` on a temporary file in ``directory`` holding ``content``.

    A temporary file that cannot be written (a full disk) raises :class:`WriteError`.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.checkpoint-part-', suffix='.tmp')
    except OSError as e:
        raise WriteError(f'cannot write a temporary file in {directory}: {e.strerror}') from None
    try:
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(content)
        except OSError as e:
            raise WriteError(f'cannot write a temporary file in {directory}: '
                             f'{e.strerror}') from None
        load(tmp)
    finally:
        os.remove(tmp)


def save_checkpoint(path, model, history, settings=None):
    """Write everything needed to continue training ``model`` after ``history``'s last epoch.

    ``model`` follows the :class:`gluon_softmax.run.model.Model` protocol;
    ``settings`` (a dict, e.g. ``Recipe.to_dict()``) records which run the
    checkpoint belongs to, and is enough to resume it without other files.
    """
    try:
        _save_checkpoint(path, model, history, settings)
    except OSError as e:
        raise WriteError(f'cannot write {path}: {e.strerror or e}') from None


def _save_checkpoint(path, model, history, settings):
    directory = os.path.dirname(os.path.abspath(path))
    np_state = onp.random.get_state()
    meta = {
        'format': FORMAT, 'impl': model.impl, 'history': history, 'settings': settings,
        # the shuffling order comes from NumPy's global generator (as in Gluon's sampler)
        'numpy_rng': [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        'python_rng': _jsonable(random.getstate()),
    }
    arrays = {
        'meta': onp.frombuffer(json.dumps(meta).encode(), dtype=onp.uint8),
        'params': onp.frombuffer(_bytes_of(model.net.save_parameters, directory),
                                 dtype=onp.uint8),
        'numpy_rng_keys': np_state[1],
    }
    states = _bytes_of(model.save_states, directory)
    if states is not None:  # the scratch SGD has no state
        arrays['trainer'] = onp.frombuffer(states, dtype=onp.uint8)

    # packed in memory first: savez streaming into a file on a full disk leaves a ZipFile
    # whose destructor fails again, with a traceback, long after the error was handled
    packed = io.BytesIO()
    onp.savez(packed, **arrays)

    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(packed.getvalue())
    atomic_write(path, write)


def _jsonable(value):
    """Tuples -> lists, recursively (Python's RNG state is nested tuples)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _tupled(value):
    """Lists -> tuples, recursively: the inverse of :func:`_jsonable`."""
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def read_checkpoint(path, limits=None):
    """``(meta, arrays)`` of a checkpoint file, every field checked; raises CheckpointError.

    ``limits`` maps an array's name to the most bytes it may hold (e.g. what
    the model's parameters take); every array's size is read from its header
    and checked before any of it is read.
    """
    limits = {'meta': META_LIMIT, **(limits or {})}
    try:
        with open(path, 'rb') as file:  # one open file: what is checked is what is read
            problem = _header_problem(file, limits)
            if problem:
                raise CheckpointError(f'{path}: damaged checkpoint: {problem}')
            file.seek(0)
            with onp.load(file, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
    except FileNotFoundError:
        raise CheckpointError(f'{path}: no checkpoint (the run stopped before its first '
                              'epoch ended)') from None
    except _NotACheckpoint:
        raise CheckpointError(f'{path}: not a gluon_softmax checkpoint') from None
    except OSError as e:
        raise CheckpointError(f'{path}: cannot read it: {e.strerror or e}') from None
    except CheckpointError:
        raise
    except Exception:  # noqa: BLE001 - any unreadable content means "not a checkpoint"
        raise CheckpointError(f'{path}: not a gluon_softmax checkpoint') from None
    try:
        meta = json.loads(arrays['meta'].tobytes().decode())
        if meta.get('format') != FORMAT:
            raise ValueError('unknown format')
    except Exception:  # noqa: BLE001 - the same: no meta of ours
        raise CheckpointError(f'{path}: not a gluon_softmax checkpoint') from None
    problem = _problem(meta, arrays)
    if problem:
        raise CheckpointError(f'{path}: damaged checkpoint: {problem}')
    return meta, arrays


class _NotACheckpoint(Exception):
    """The file is no NumPy .npz archive of ours at all."""


def _header_problem(file, limits):
    """What is wrong with the arrays' headers in the .npz ``file`` (nothing is read), or None.

    ``onp.load`` allocates what a header declares before it reads the data: a
    small file declaring a huge array would take that much memory.
    """
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, ValueError):
        raise _NotACheckpoint() from None
    with archive:
        for info in archive.infolist():
            name = info.filename[:-len('.npy')]
            if not info.filename.endswith('.npy') or name not in MEMBERS:
                return f'unexpected member {info.filename!r}'
            if info.compress_type != zipfile.ZIP_STORED:
                # ours are stored as they are: a compressed member could declare any size
                return f'{name} is compressed'
            with archive.open(info) as member:
                if npy_format.read_magic(member) != (1, 0):
                    return f'{name} has an unknown .npy header version'
                shape, _, dtype = npy_format.read_array_header_1_0(member)
                offset = member.tell()
            want_dtype, want_shape = MEMBERS[name]
            if dtype != onp.dtype(want_dtype) or len(shape) != 1 or (
                    want_shape is not None and shape != want_shape):
                wanted = list(want_shape or ['n'])
                return f'{name} is {dtype}{list(shape)}, not {want_dtype}{wanted}'
            size = shape[0] * dtype.itemsize
            if size > info.file_size - offset:
                return f'{name} declares {size} bytes but holds {info.file_size - offset}'
            limit = limits.get(name)
            if limit is not None and size > limit:
                return (f'{name} holds {size} bytes, more than this model\'s {limit} at most '
                        '(a checkpoint of another model?)')
    return None


def _problem(meta, arrays):
    """What is wrong with a checkpoint's fields, or None."""
    for name in ('params', 'numpy_rng_keys'):
        if name not in arrays:
            return f'no {name}'
    keys = arrays['numpy_rng_keys']
    if keys.shape != (624,) or keys.dtype != onp.uint32:
        return 'numpy_rng_keys is not a Mersenne Twister state'
    rng = meta.get('numpy_rng')
    if not (isinstance(rng, list) and len(rng) == 4 and rng[0] == 'MT19937'
            and all(isinstance(v, (int, float)) for v in rng[1:])):
        return 'meta.numpy_rng is not a NumPy generator state'
    if not isinstance(meta.get('python_rng'), list):
        return 'meta.python_rng is missing'
    history = meta.get('history')
    if not (isinstance(history, list) and all(
            isinstance(e, dict) and e.get('epoch') == i for i, e in enumerate(history, 1))):
        return 'meta.history is not a list of epochs 1, 2, ...'
    if meta.get('impl') not in ('concise', 'scratch'):
        return f'meta.impl is {meta.get("impl")!r}'
    if meta['impl'] == 'concise' and 'trainer' not in arrays:
        return 'no trainer state (the optimizer would restart from scratch)'
    return None


def checkpoint_meta(path):
    """The meta fields of the checkpoint at ``path``, or None when there is no readable one."""
    try:
        return read_checkpoint(path)[0]
    except CheckpointError:
        return None


def limits_of(model):
    """The most bytes each array of ``model``'s checkpoint can hold (see read_checkpoint)."""
    raw = sum(p.size * p.dtype.itemsize for p in model.parameters())
    # the optimizer keeps at most one buffer per parameter (momentum)
    return {'params': raw + STATE_SLACK, 'trainer': 2 * raw + STATE_SLACK}


def load_checkpoint(path, model, settings=None, settings_source='the run'):
    """Restore parameters, optimizer and RNG states into ``model``; return the history.

    With ``settings`` (a dict as given to :func:`save_checkpoint`) the
    checkpoint must record the same ones, ``epochs`` apart (a resumed run may
    grow): else it is another run's. ``settings_source`` names them in the message.
    """
    meta, arrays = read_checkpoint(path, limits_of(model))
    if meta['impl'] != model.impl:
        raise CheckpointError(f'{path}: checkpoint of the {meta["impl"]} model, not {model.impl}')
    if settings is not None:
        _check_settings(path, meta.get('settings'), settings, settings_source)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        _load_from_bytes(model.net.load_parameters, arrays['params'].tobytes(), directory)
        if 'trainer' in arrays:
            _load_from_bytes(model.load_states, arrays['trainer'].tobytes(), directory)
    except WriteError as e:
        raise CheckpointError(f'{path}: cannot load it: {e}') from None
    except Exception as e:  # noqa: BLE001 - MXNet raises assorted types for a mismatch
        raise CheckpointError(f'{path}: parameters do not fit the model: '
                              f'{_first_line(e)}') from None
    name, pos, has_gauss, cached = meta['numpy_rng']
    try:
        onp.random.set_state((name, arrays['numpy_rng_keys'], pos, has_gauss, cached))
        random.setstate(_tupled(meta['python_rng']))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f'{path}: damaged checkpoint: random state: {e}') from None
    return meta['history']


def _check_settings(path, saved, settings, source):
    """CheckpointError unless the checkpoint's ``saved`` settings are ``settings``, epochs apart."""
    if not isinstance(saved, dict):
        raise CheckpointError(f'{path}: the checkpoint does not record which run it belongs to '
                              '(written by an older gluon_softmax); start a new run')
    differ = [key for key in sorted(set(saved) | set(settings))
              if key != 'epochs' and saved.get(key) != settings.get(key)]
    if differ:
        there = ', '.join(f'{key} {saved.get(key)}' for key in differ)
        here = ', '.join(f'{key} {settings.get(key)}' for key in differ)
        raise CheckpointError(f'{path}: belongs to another run ({there}) than {source} '
                              f'({here}); resume a directory with its own checkpoint')


def _first_line(error):
    """The first line of an error's message that says something (MXNet's start with a
    traceback header and a blank line)."""
    for line in str(error).splitlines():
        line = line.strip()
        if line and not line.startswith(('Traceback', 'File ', '[bt]', 'Stack trace')):
            return line
    return type(error).__name__
