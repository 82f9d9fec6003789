"""Checkpoints: parameters, optimizer state, RNG states and history in one file, written atomically.

One file, so a checkpoint is always whole: it is written under a temporary name
in the run directory, flushed, then renamed over the previous one.
"""
import json
import os
import random
import tempfile

import numpy as onp

CHECKPOINT = 'checkpoint.npz'
FORMAT = 'gluon_softmax-checkpoint-1'


class CheckpointError(Exception):
    """A checkpoint is missing, is not a checkpoint, or does not fit the model."""


def atomic_write(path, write):
    """Call ``write(tmp_path)``, then rename onto ``path``: readers see old or new, never half."""
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


def _bytes_of(save):
    """The bytes that ``save(path)`` writes (MXNet's savers only take file names)."""
    fd, tmp = tempfile.mkstemp(suffix='.bin')
    os.close(fd)
    try:
        save(tmp)
        with open(tmp, 'rb') as f:
            return f.read()
    finally:
        os.remove(tmp)


def _load_from_bytes(load, content):
    """Call ``load(path)`` on a temporary file holding ``content``."""
    fd, tmp = tempfile.mkstemp(suffix='.bin')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(content)
        load(tmp)
    finally:
        os.remove(tmp)


def save_checkpoint(path, impl, net, updater, history):
    """Write everything needed to continue training after ``history``'s last epoch."""
    np_state = onp.random.get_state()
    meta = {
        'format': FORMAT, 'impl': impl, 'history': history,
        # the shuffling order comes from NumPy's global generator (as in Gluon's sampler)
        'numpy_rng': [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        'python_rng': _jsonable(random.getstate()),
    }
    arrays = {
        'meta': onp.frombuffer(json.dumps(meta).encode(), dtype=onp.uint8),
        'params': onp.frombuffer(_bytes_of(net.save_parameters), dtype=onp.uint8),
        'numpy_rng_keys': np_state[1],
    }
    if hasattr(updater, 'save_states'):  # gluon.Trainer; the scratch SGD has no state
        arrays['trainer'] = onp.frombuffer(_bytes_of(updater.save_states), dtype=onp.uint8)

    def write(tmp):
        with open(tmp, 'wb') as f:
            onp.savez(f, **arrays)
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


def load_checkpoint(path, impl, net, updater):
    """Restore parameters, optimizer and RNG states into ``net``, ``updater``; return history."""
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
    if meta['impl'] != impl:
        raise CheckpointError(f'{path}: checkpoint of the {meta["impl"]} model, not {impl}')
    try:
        _load_from_bytes(net.load_parameters, arrays['params'].tobytes())
        if 'trainer' in arrays and hasattr(updater, 'load_states'):
            _load_from_bytes(updater.load_states, arrays['trainer'].tobytes())
    except Exception as e:  # noqa: BLE001 - MXNet raises assorted types for a mismatch
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f'{path}: parameters do not fit the model: {first}') from None
    name, pos, has_gauss, cached = meta['numpy_rng']
    onp.random.set_state((name, arrays['numpy_rng_keys'], pos, has_gauss, cached))
    random.setstate(_tupled(meta['python_rng']))
    return meta['history']
