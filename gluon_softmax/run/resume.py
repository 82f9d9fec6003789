"""What a resumed run reads back from its directory: its recipe and its earlier sessions."""
import json
import os

from gluon_softmax.run.checkpoint import CHECKPOINT, CheckpointError, read_checkpoint
from gluon_softmax.run.cli import UsageError
from gluon_softmax.run.rundir import METRICS
from gluon_softmax.run.settings import Recipe


def metrics_recipe(directory, path):
    """The recipe recorded in a run's ``metrics.json`` at ``path``; UsageError if there is none."""
    try:
        with open(path, encoding='utf-8') as f:
            saved = json.load(f)
        # runs written before impl and seed were hyperparameters kept them at the top level
        if not isinstance(saved, dict) or not isinstance(saved.get('hyperparameters'), dict):
            raise ValueError('no dict of hyperparameters in it')
        for key in ('impl', 'seed'):
            if saved['hyperparameters'].get(key, saved[key]) != saved[key]:
                raise ValueError(f'{key} is {saved[key]!r}, but '
                                 f'{saved["hyperparameters"][key]!r} in hyperparameters')
        return Recipe.from_dict({'impl': saved['impl'], 'seed': saved['seed'],
                                 **saved['hyperparameters']})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f'--resume {directory}: not a run directory ({path}: '
                         f'{getattr(e, "strerror", None) or e})') from None


def checkpoint_recipe(directory):
    """The recipe recorded in the checkpoint of a run killed before its first metrics.json."""
    path = os.path.join(directory, CHECKPOINT)
    try:
        meta, _ = read_checkpoint(path)
        return Recipe.from_dict(meta.get('settings'))
    except (CheckpointError, ValueError) as e:
        raise UsageError(f'--resume {directory}: not a run directory (no {METRICS}, and '
                         f'{path}: {e})') from None


def earlier_sessions(out):
    """The ``sessions`` list of a resumed run's metrics.json (older runs have none)."""
    try:
        with open(os.path.join(out, METRICS), encoding='utf-8') as f:
            sessions = json.load(f).get('sessions', [])
        return sessions if isinstance(sessions, list) else []
    except (OSError, ValueError, AttributeError):
        return []
