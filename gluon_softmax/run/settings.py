"""The recipe: every setting that decides what a run computes, with its default, in one place.

The CLI's flags, their help, ``metrics.json``'s ``hyperparameters``, the
checks of a resumed run, the benchmark and the notebook all read
:class:`Recipe`. Imports nothing heavy (no MXNet), so the benchmark's parent
process can use it.
"""
import argparse
import dataclasses

from gluon_softmax.run.cli import non_negative_int, number_type, positive_int

IMPLS = ('concise', 'scratch')
SCHEDULES = ('constant', 'cosine')
LOADERS = ('memory', 'dataloader')
MAX_SEED = 2 ** 32 - 1  # NumPy's seed range

# MXNet passes optimizer settings as float32 text: larger values fail inside the optimizer
FLOAT32_MAX = 3.4028234e38
# half the smallest positive float32 (1.4e-45): a learning rate up to it is 0 in float32, and
# nothing learns
FLOAT32_ROUNDS_TO_0 = 1.401298464324817e-45 / 2
learning_rate = number_type(float, FLOAT32_ROUNDS_TO_0, low_ok=False, high=FLOAT32_MAX,
                            expected='a positive number from 1.4e-45 to below 3.4e38 (float32)')
decay_value = number_type(float, 0, high=FLOAT32_MAX, expected='a number in [0, 3.4e38)')
momentum_value = number_type(float, 0, high=1, expected='a number in [0, 1)')
seed_value = number_type(int, 0, high=MAX_SEED + 1, expected=f'an integer in 0..{MAX_SEED}')


def setting(default, help, **flag):  # pylint: disable=redefined-builtin
    """A dataclass field whose metadata describes its command-line flag."""
    return dataclasses.field(default=default, metadata={'help': help, **flag})


@dataclasses.dataclass
class Recipe:
    """The book's recipe by default: 10 epochs of plain minibatch SGD, lr 0.1, batch 256."""

    impl: str = setting('concise', 'nn.Dense + Trainer, or the from-scratch model',
                        choices=IMPLS)
    epochs: int = setting(10, 'number of epochs to train in all (resumed runs: may grow)',
                          type=positive_int, metavar='N')
    batch_size: int = setting(256, 'minibatch size', type=positive_int, metavar='N')
    lr: float = setting(0.1, 'SGD learning rate', type=learning_rate, metavar='LR')
    momentum: float = setting(0.0, 'SGD momentum, concise model only', type=momentum_value,
                              metavar='M')
    wd: float = setting(0.0, 'weight decay, concise model only', type=decay_value,
                        metavar='WD')
    lr_schedule: str = setting('constant', 'constant, or cosine decay to 0 over all steps, '
                               'concise model only', choices=SCHEDULES)
    val_size: int = setting(0, 'hold N training examples out as a validation set, reported '
                            'as val_loss/val_acc, to tune without the test set (--loader memory)',
                            type=non_negative_int, metavar='N')
    resize: int = setting(None, 'resize images to SIDE x SIDE (none: keep 28)', type=positive_int,
                          metavar='SIDE')
    loader: str = setting('memory', "memory: decode once, slice batches (fast); dataloader: the "
                          "book's transform_first(ToTensor) + DataLoader", choices=LOADERS)
    seed: int = setting(None, 'random seed for initialisation and shuffling (none: a fresh one, '
                        'recorded in metrics.json)', type=seed_value, metavar='S')

    def to_dict(self):
        """The settings as a plain dict (``metrics.json``'s ``hyperparameters``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A Recipe from a dict such as ``metrics.json``'s; raises ValueError naming a bad field.

        Every value is checked as its flag would check it; missing fields take
        their defaults.
        """
        if not isinstance(values, dict):
            raise ValueError(f'expected a dict of settings, found {type(values).__name__}')
        checked = {}
        for field in dataclasses.fields(cls):
            value = values.get(field.name, field.default)
            if value is not None or field.default is not None:
                value = _checked(field, value)
            checked[field.name] = value
        return cls(**checked)

    def differences(self, other=None):
        """``{name: value}`` of the settings that differ from ``other`` (default: the book's)."""
        other = other or Recipe()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}


def _checked(field, value):
    """``value`` as the flag of ``field`` accepts it; ValueError naming the field otherwise."""
    choices, convert = field.metadata.get('choices'), field.metadata.get('type')
    ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if ok and choices:
        ok = value in choices
    elif ok and convert:
        try:
            converted = convert(str(value))
            ok = converted == value
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            ok = False
    if not ok:
        raise ValueError(f'{field.name} is {value!r}: not a value {flag_name(field.name)} accepts')
    return value


def flag_name(name):
    """The command-line flag of a setting: ``batch_size`` -> ``--batch-size``."""
    return '--' + name.replace('_', '-')


def add_recipe_arguments(parser):
    """Add one flag per :class:`Recipe` field, its help ending in the default it falls back to.

    Every flag defaults to None, so a resumed run can tell what was given.
    """
    for field in dataclasses.fields(Recipe):
        extra = {k: v for k, v in field.metadata.items() if k != 'help'}
        default = 'none' if field.default is None else field.default
        help_text = field.metadata['help']
        if field.default is not None:
            help_text += f' (default: {default})'
        parser.add_argument(flag_name(field.name), default=None, help=help_text, **extra)
