"""Checkpoints: parameters, optimizer state, RNG states and history in one file, written atomically.

One file, so a checkpoint is always whole: it is written under a temporary name
in the run directory, flushed, then renamed over the previous one.
"""
import io
import json
import os
import random
import tempfile

import numpy as onp

CHECKPOINT = 'checkpoint.npz'
FORMAT = 'gluon_softmax-checkpoint-1'


class CheckpointError(Exception):
    """A checkpoint is missing, is not a checkpoint, or does not fit the model."""


class WriteError(Exception):
    """A file of the run could not be written (full disk, no permission); the old one is kept."""


def atomic_write(path, write):
    """Call ``write(tmp_path)``, then rename onto ``path``: readers see old or new, never half.

    Any OSError (a full disk, a read-only directory) becomes :class:`WriteError`
    naming ``path``; the previous ``path`` is untouched and the temporary file removed.
    """
    try:
        _atomic_write(path, write)
    except OSError as e:
        raise WriteError(f'cannot write {path}: {e.strerror or e}') from None


def _atomic_write(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path), suffix='.tmp')
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates the file 0600; give it the permissions of an ordinary new file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Atomically write a text file."""
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    atomic_write(path, write)


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
    """Call ``load(path)`` on a temporary file in ``directory`` holding ``content``."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.checkpoint-part-', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(content)
        load(tmp)
    finally:
        os.remove(tmp)


def save_checkpoint(path, model, history):
    """Write everything needed to continue training ``model`` after ``history``'s last epoch.

    ``model`` follows the :class:`gluon_softmax.models.Model` protocol.
    """
    try:
        _save_checkpoint(path, model, history)
    except OSError as e:
        raise WriteError(f'cannot write {path}: {e.strerror or e}') from None


def _save_checkpoint(path, model, history):
    directory = os.path.dirname(os.path.abspath(path))
    np_state = onp.random.get_state()
    meta = {
        'format': FORMAT, 'impl': model.impl, 'history': history,
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


def read_checkpoint(path):
    """``(meta, arrays)`` of a checkpoint file, every field checked; raises CheckpointError."""
    try:
        with onp.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
        meta = json.loads(arrays['meta'].tobytes().decode())
        if meta.get('format') != FORMAT:
            raise ValueError('unknown format')
    except FileNotFoundError:
        raise CheckpointError(f'{path}: no checkpoint (the run stopped before its first '
                              'epoch ended)') from None
    except Exception:  # noqa: BLE001 - any unreadable content means "not a checkpoint"
        raise CheckpointError(f'{path}: not a gluon_softmax checkpoint') from None
    problem = _problem(meta, arrays)
    if problem:
        raise CheckpointError(f'{path}: damaged checkpoint: {problem}')
    return meta, arrays


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


def load_checkpoint(path, model):
    """Restore parameters, optimizer and RNG states into ``model``; return the history."""
    meta, arrays = read_checkpoint(path)
    if meta['impl'] != model.impl:
        raise CheckpointError(f'{path}: checkpoint of the {meta["impl"]} model, not {model.impl}')
    directory = os.path.dirname(os.path.abspath(path))
    try:
        _load_from_bytes(model.net.load_parameters, arrays['params'].tobytes(), directory)
        if 'trainer' in arrays:
            _load_from_bytes(model.load_states, arrays['trainer'].tobytes(), directory)
    except Exception as e:  # noqa: BLE001 - MXNet raises assorted types for a mismatch
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f'{path}: parameters do not fit the model: {first}') from None
    name, pos, has_gauss, cached = meta['numpy_rng']
    try:
        onp.random.set_state((name, arrays['numpy_rng_keys'], pos, has_gauss, cached))
        random.setstate(_tupled(meta['python_rng']))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f'{path}: damaged checkpoint: random state: {e}') from None
    return meta['history']
