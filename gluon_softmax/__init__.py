"""Softmax regression on Fashion-MNIST with MXNet Gluon, from scratch and concise.

The public names below are imported on first use, so ``import gluon_softmax``
does not load MXNet or Plotly until something needs them.
"""
import importlib
import os
import sys

if sys.argv[:1] == ['-m'] or os.path.basename(sys.argv[0] if sys.argv else '') == \
        'gluon-softmax-train':
    # a command line of ours is starting (python -m gluon_softmax..., the console script):
    # Ctrl-C answers in one line from the first moment, until the program's own handlers;
    # an environment variable MXNet would abort or hang on is one error line, before any
    # module of ours imports MXNet (train, bench, launch, data)
    from .run.environment import check_environment
    from .run.signals import exit_on_signals
    exit_on_signals()
    check_environment()
from . import _compat  # noqa: F401,E402  Python/NumPy checks, np.bool before any MXNet import
from . import _operator_cache  # noqa: E402
_operator_cache.install()  # MXNet's operators compiled once per machine, not once per process

__version__ = '0.1.0'

_EXPORTS = {
    # the chapter
    'data': ('FashionMNIST', 'load_data_fashion_mnist', 'load_arrays', 'load_arrays_iters',
             'ArrayLoader', 'get_fashion_mnist_labels', 'TEXT_LABELS', 'TEXT_LABELS_ZH',
             'set_seed'),
    # (data re-exports these too; from here they come without MXNet)
    'idx': ('DataError', 'read_split'),
    'data_files': ('find_data_dir',),
    'scratch': ('softmax', 'cross_entropy', 'log_softmax', 'softmax_cross_entropy', 'sgd', 'SGD',
                'SoftmaxRegressionScratch'),
    'concise': ('build_net', 'build_loss', 'build_trainer'),
    'training': ('accuracy', 'evaluate', 'evaluate_accuracy', 'train_epoch', 'predict'),
    'plots': ('curves_figure', 'LiveCurves', 'images_figure', 'predictions_figure',
              'confusion_matrix', 'confusion_figure', 'per_class_accuracy_figure',
              'weights_figure', 'loss_functions_figure', 'softmax_stability_figure'),
    # run management (gluon_softmax.run)
    'run.settings': ('Recipe',),
    'run.model': ('as_model', 'Model'),
    'run.watch': ('Diverged', 'LossWatch'),
    'run.epoch': ('EpochRunner',),
    'run.report': ('report_figures', 'report_html'),
    'run.checkpoint': ('CheckpointError', 'save_checkpoint', 'load_checkpoint'),
    # scale-out (gluon_softmax.scale)
    'scale.context': ('ContextError', 'parse_ctx', 'try_gpu', 'num_gpus'),
    'scale.workers': ('ParallelError', 'Workers', 'connect'),
    'scale.parallel': ('split_batch', 'DataParallel'),
    'scale.replicas': ('ScratchReplicas', 'ReplicaSGD'),
    'scale.trainer': ('WorkerSumTrainer',),
    # what the programs share: the two wired together
    'compose': ('build_model',),
}
# training.train is not exported here: gluon_softmax.train is the command-line module
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f'{__name__}.{_WHERE[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
