"""The command line: ``python -m gluon_softmax.train`` (console script ``gluon-softmax-train``).

Trains softmax regression (concise or from scratch) on Fashion-MNIST and
writes ``metrics.json``, ``curves.html``, ``report.html``, ``model.params`` and
``checkpoint.npz`` into ``--out``.
"""
import datetime
import json
import os
import random
import sys
import signal

import mxnet as mx
import numpy as onp
from mxnet import npx

from gluon_softmax import concise, data, parallel, plots, report, scratch, training
from gluon_softmax.cli import (Parser, non_negative_float, non_negative_int, number_type,
                               positive_float, positive_int)
from gluon_softmax.checkpoint import (CHECKPOINT, CheckpointError, atomic_write, load_checkpoint,
                                      save_checkpoint, write_text)
from gluon_softmax.context import ContextError, parse_ctx
from gluon_softmax.parallel import ParallelError, Workers

METRICS, CURVES, PARAMS, REPORT = 'metrics.json', 'curves.html', 'model.params', 'report.html'
RUN_FILES = (METRICS, CURVES, PARAMS, CHECKPOINT, REPORT)
EXIT_DIVERGED = 3


class UsageError(Exception):
    """A flag value that is well-formed for argparse but unusable."""


momentum_value = number_type(float, 0, high=1, expected='a number in [0, 1)')


def build_parser():
    """The CLI's flags, named like the arguments of the functions they feed."""
    p = Parser(prog='python -m gluon_softmax.train',
               description='Train softmax regression on Fashion-MNIST with MXNet Gluon.')
    p.add_argument('--impl', choices=('concise', 'scratch'),
                   help='nn.Dense + Trainer, or the from-scratch model (default: concise)')
    p.add_argument('--epochs', type=positive_int, metavar='N',
                   help='number of epochs to train in all (default: 10, or the resumed '
                        'run\'s)')
    p.add_argument('--batch-size', type=positive_int, metavar='N',
                   help='minibatch size (default: 256)')
    p.add_argument('--lr', type=positive_float, metavar='LR',
                   help='SGD learning rate (default: 0.1)')
    p.add_argument('--momentum', type=momentum_value, metavar='M',
                   help='SGD momentum, concise model only (default: 0, the book\'s plain SGD)')
    p.add_argument('--wd', type=non_negative_float, metavar='WD',
                   help='weight decay, concise model only (default: 0)')
    p.add_argument('--lr-schedule', choices=('constant', 'cosine'),
                   help='constant, or cosine decay to 0 over all steps, concise model only '
                        '(default: constant)')
    p.add_argument('--val-size', type=non_negative_int, metavar='N',
                   help='hold N training examples out as a validation set, reported as '
                        'val_acc, to tune without the test set (--loader memory; default: 0)')
    p.add_argument('--ctx', default='cpu', metavar='DEVICE',
                   help='cpu, gpu, gpu:N, gpu:all, or a comma list such as cpu:0,cpu:1 or '
                        'gpu:0,gpu:1 to split every batch over several devices (default: cpu)')
    p.add_argument('--kvstore', default='device', choices=parallel.KVSTORES,
                   help='how gradients are summed: over the devices of this process (device, '
                        'local), or over the worker processes of a job started by python -m '
                        'gluon_softmax.launch (dist_sync, dist_device_sync) (default: device)')
    p.add_argument('--data-dir', metavar='DIR',
                   help='directory with the four Fashion-MNIST IDX files (default: '
                        '$FASHION_MNIST_DIR, ~/.mxnet/datasets/fashion-mnist, '
                        '/usr/share/datasets/fashion-mnist)')
    p.add_argument('--download', action='store_true',
                   help='download the data set when no copy is found (default: off)')
    p.add_argument('--out', metavar='DIR',
                   help='run directory for the outputs (default: runs/<impl>-<timestamp>)')
    p.add_argument('--seed', type=non_negative_int, metavar='S',
                   help='random seed for initialisation and shuffling (default: a fresh one, '
                        'recorded in metrics.json)')
    p.add_argument('--resize', type=positive_int, metavar='SIDE',
                   help='resize images to SIDE x SIDE (default: keep 28)')
    p.add_argument('--loader', choices=('memory', 'dataloader'),
                   help='memory: decode once, slice batches (fast); dataloader: the book\'s '
                        'transform_first(ToTensor) + DataLoader (default: memory)')
    p.add_argument('--num-workers', type=non_negative_int, default=0, metavar='N',
                   help='DataLoader worker processes, with --loader dataloader (default: 0)')
    p.add_argument('--max-loss', type=positive_float, default=training.DEFAULT_MAX_LOSS,
                   metavar='L', help='stop as diverged when a batch\'s mean loss exceeds L or '
                   f'is not finite (default: {training.DEFAULT_MAX_LOSS:g})')
    p.add_argument('--resume', metavar='DIR',
                   help='continue the run in DIR from its last checkpoint, with its settings, '
                        'up to --epochs')
    return p


DEFAULTS = {'impl': 'concise', 'epochs': 10, 'batch_size': 256, 'lr': 0.1, 'momentum': 0.0,
            'wd': 0.0, 'lr_schedule': 'constant', 'val_size': 0, 'resize': None,
            'loader': 'memory', 'seed': None}
# settings a resumed run keeps from its metrics.json (only --epochs may change)
KEPT_ON_RESUME = ('impl', 'batch_size', 'lr', 'momentum', 'wd', 'lr_schedule', 'val_size',
                  'resize', 'loader', 'seed')
HYPERPARAMETERS = ('epochs', 'batch_size', 'lr', 'momentum', 'wd', 'lr_schedule', 'val_size',
                   'resize', 'loader')


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; raised in the main thread by :class:`StopOnSignal`."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """Turn SIGINT/SIGTERM into :class:`Interrupted`, held back while a checkpoint is written."""

    def __init__(self):
        self.received = None
        self.holding = False

    def handler(self, signum, frame):
        self.received = signum
        if not self.holding:
            raise Interrupted(signum)

    def install(self):
        """Install the handlers (main thread only)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handler)

    def run_whole(self, work):
        """Run ``work()`` without being cut off, then act on a signal that came meanwhile."""
        self.holding = True
        try:
            work()
        finally:
            self.holding = False
        if self.received is not None:
            raise Interrupted(self.received)


def resolve_settings(args):
    """Fill defaults, or with ``--resume`` the run's own settings; returns ``(settings, out)``."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    if not args.resume:
        settings = {**DEFAULTS, **given}
        if settings['seed'] is None:
            settings['seed'] = random.SystemRandom().randrange(2 ** 31)
        out = args.out or os.path.join(
            'runs', f"{settings['impl']}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
        return settings, out
    if args.out and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise UsageError(f'--out {args.out}: a resumed run writes into its own directory '
                         f'({args.resume})')
    path = os.path.join(args.resume, METRICS)
    try:
        with open(path, encoding='utf-8') as f:
            saved = json.load(f)
        settings = {'impl': saved['impl'], 'seed': saved['seed'],
                    **{k: saved['hyperparameters'].get(k, DEFAULTS[k]) for k in KEPT_ON_RESUME
                       if k not in ('impl', 'seed')}}
        settings['epochs'] = given.get('epochs', saved['hyperparameters']['epochs'])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f'--resume {args.resume}: not a run directory ({path}: '
                         f'{getattr(e, "strerror", None) or e})') from None
    for key in KEPT_ON_RESUME:
        if key in given and given[key] != settings[key]:
            flag = '--' + key.replace('_', '-')
            raise UsageError(f'{flag} {given[key]}: the resumed run uses {settings[key]}; '
                             'only --epochs can change')
    return settings, args.resume


def check_settings(settings):
    """Reject combinations of valid flags that the chosen model or loader cannot honour."""
    if settings['impl'] == 'scratch':
        for key, plain in (('momentum', 0.0), ('wd', 0.0), ('lr_schedule', 'constant')):
            if settings[key] != plain:
                flag = '--' + key.replace('_', '-')
                raise UsageError(f'{flag} {settings[key]}: the scratch model uses plain '
                                 'minibatch SGD; use --impl concise')
    if settings['val_size'] and settings['loader'] != 'memory':
        raise UsageError('--val-size: needs --loader memory')
    num_train = data.SPLITS[True][2]
    if settings['val_size'] >= num_train:
        raise UsageError(f"--val-size {settings['val_size']}: must be below the "
                         f'{num_train} training examples')


def set_seed(seed):
    """Seed Python's, NumPy's and MXNet's generators (MXNet on every device)."""
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


def prepare_out(out):
    """Create the run directory; an existing one must be empty or a previous run's."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise UsageError(f'--out {out}: exists and is not a directory')
        entries = set(os.listdir(out))
        if entries and not entries & set(RUN_FILES):
            raise UsageError(f'--out {out}: directory is not empty and is not a run directory')
    else:
        try:
            os.makedirs(out)
        except OSError as e:
            raise UsageError(f'--out {out}: cannot create directory: {e.strerror}') from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f'--out {out}: directory is not writable')


def build_model(settings, ctxs, steps_per_epoch, kvstore='device', workers=None):
    """``(net, loss, updater)`` as the settings say, with parameters on every device of ``ctxs``.

    Gradients are summed over the devices and, with the ``workers`` of a
    distributed job, over the worker processes: by the Trainer's kvstore
    (``kvstore``, or the job's), or by the scratch model's own SGD.
    """
    workers = workers or Workers()
    side = settings['resize'] or data.IMAGE_SIDE
    if settings['impl'] == 'scratch':
        net = scratch.SoftmaxRegressionScratch(num_inputs=side * side, ctx=ctxs)
        return net, scratch.softmax_cross_entropy, scratch.SGD(
            net.parameter_copies(), settings['lr'], workers=workers)
    net = concise.build_net(num_inputs=side * side, ctx=ctxs)
    num_updates = (settings['epochs'] * steps_per_epoch
                   if settings['lr_schedule'] == 'cosine' else None)
    return net, concise.build_loss(), concise.build_trainer(
        net, settings['lr'], momentum=settings['momentum'], wd=settings['wd'],
        num_updates=num_updates, kvstore=kvstore, workers=workers)


def model_arrays(net):
    """A model's parameter arrays (the first device's copies), in a fixed order."""
    if hasattr(net, 'collect_params'):
        return [p.data(p.list_ctx()[0]) for p in net.collect_params().values()]
    return net.parameters()


def load_iters(settings, args, ctx):
    """``(train_iter, val_iter or None, test_iter)`` as the settings ask."""
    if settings['loader'] == 'memory':
        iters = data.load_arrays_iters(settings['batch_size'], resize=settings['resize'],
                                       root=args.data_dir, ctx=ctx, download=args.download,
                                       val_size=settings['val_size'])
        return iters if len(iters) == 3 else (iters[0], None, iters[1])
    train_iter, test_iter = data.load_data_fashion_mnist(
        settings['batch_size'], resize=settings['resize'], root=args.data_dir,
        num_workers=args.num_workers, download=args.download)
    return train_iter, None, test_iter


def progress_wrapper(stream=sys.stderr):
    """A tqdm bar over each epoch's batches when ``stream`` is a terminal, else None."""
    if not stream.isatty():
        return None
    from tqdm import tqdm
    return lambda batches: tqdm(batches, total=len(batches), leave=False, unit='batch',
                                file=stream)


def format_epoch(entry, num_epochs):
    """One line of progress for an epoch's history entry."""
    return (f"epoch {entry['epoch']:>{len(str(num_epochs))}}/{num_epochs}  "
            f"train loss {entry['train_loss']:.4f}  train acc {entry['train_acc']:.4f}  "
            + (f"val acc {entry['val_acc']:.4f}  " if 'val_acc' in entry else '')
            + f"test acc {entry['test_acc']:.4f}  {entry['seconds']:.2f} s")


def write_metrics(out, metrics, history, status):
    """Write ``metrics.json`` with the history so far and the run's status."""
    metrics = {**metrics, 'status': status, 'epochs': history}
    write_text(os.path.join(out, METRICS), json.dumps(metrics, indent=2) + '\n')


def write_curves(out, history, impl):
    """Write the self-contained Plotly page of the curves so far."""
    fig = plots.curves_figure(history, title=f'{impl} softmax regression')
    write_text(os.path.join(out, CURVES), fig.to_html(include_plotlyjs=True, full_html=True))


def run(args, stop):
    """Train as the flags say, writing the run directory as it goes; returns the exit status.

    In a distributed job every worker trains; worker 0 alone prints and writes.
    """
    settings, out = resolve_settings(args)
    check_settings(settings)
    ctxs = parse_ctx(args.ctx)
    npx.set_np()
    workers = parallel.connect(args.kvstore)
    lead = workers.rank == 0
    if workers.distributed:
        # every worker must draw the same shuffling: worker 0's seed, given or drawn, for all
        settings['seed'] = workers.broadcast_int(settings['seed'])
    set_seed(settings['seed'])
    train_iter, val_iter, test_iter = load_iters(settings, args, ctxs[0])
    if lead and not args.resume:
        prepare_out(out)
    impl, num_epochs = settings['impl'], settings['epochs']
    net, loss, updater = build_model(settings, ctxs, len(train_iter), args.kvstore, workers)
    checkpoint = os.path.join(out, CHECKPOINT)
    history = load_checkpoint(checkpoint, impl, net, updater) if args.resume else []
    devices = ','.join(str(ctx) for ctx in ctxs)
    metrics = {'impl': impl, 'ctx': devices, 'kvstore': args.kvstore,
               'worker_processes': workers.num_workers, 'seed': settings['seed'],
               'hyperparameters': {k: settings[k] for k in HYPERPARAMETERS},
               'num_workers': args.num_workers, 'max_loss': args.max_loss,
               'data_dir': data.find_data_dir(args.data_dir)}
    done = list(history)
    if lead:
        print(f'training {impl} softmax regression on {devices}'
              + (f' in each of {workers.num_workers} worker processes'
                 if workers.distributed else '')
              + f" for {num_epochs} epochs (lr {settings['lr']}, batch size "
              f"{settings['batch_size']}, seed {settings['seed']}) -> {out}"
              + (f' (resumed after epoch {len(done)})' if args.resume else ''), flush=True)

    def after_epoch(entry):
        def save():
            # the epoch counts as done only once its checkpoint is on disk
            save_checkpoint(checkpoint, impl, net, updater, done + [entry])
            done.append(entry)
            write_metrics(out, metrics, done, 'running')
        stop.run_whole(save)
        print(format_epoch(entry, num_epochs), flush=True)

    try:
        training.train(net, train_iter, test_iter, loss, updater, num_epochs, ctxs,
                       callback=after_epoch if lead else None,
                       wrap_batches=progress_wrapper() if lead else None, history=history,
                       max_loss=args.max_loss, val_iter=val_iter, workers=workers)
    except Interrupted as e:
        if lead:
            write_metrics(out, metrics, done, 'interrupted')
            write_curves(out, done, impl)
            print(f'interrupted ({e}) after epoch {len(done)}; continue with: '
                  f'python -m gluon_softmax.train --resume {out}', file=sys.stderr)
        return 128 + e.signum
    except training.Diverged as e:
        if lead:
            write_metrics(out, metrics, done, 'diverged')
            write_curves(out, done, impl)
            kept = f'the checkpoint of epoch {len(done)} is kept' if done else 'no epoch completed'
            print(f'error: {e} (--lr {settings["lr"]}, --max-loss {args.max_loss:g}); {kept} '
                  f'in {out}', file=sys.stderr)
        # every worker stopped at the same batch (the losses are summed over the job); the
        # others wait here until worker 0 has written, or the launcher could stop it first
        workers.barrier()
        return EXIT_DIVERGED
    if workers.distributed:
        # every worker's parameters, hashed and gathered: equal hashes, bitwise equal replicas
        metrics['parameter_sha256_by_worker'] = workers.digests(model_arrays(net))
    if not lead:
        return 0
    return write_results(out, net, test_iter, metrics, done)


def write_results(out, net, test_iter, metrics, done):
    """Write the finished run's parameters, curves, report and metrics; returns the status."""
    impl = metrics['impl']
    atomic_write(os.path.join(out, PARAMS), net.save_parameters)
    write_curves(out, done, impl)
    figures = report.report_figures(net, test_iter, done, title=f'{impl} softmax regression')
    write_text(os.path.join(out, REPORT),
               report.report_html({**metrics, 'status': 'complete', 'epochs': done}, figures))
    write_metrics(out, metrics, done, 'complete')
    print(f'wrote {METRICS}, {CURVES}, {REPORT}, {PARAMS} and {CHECKPOINT} to {out}')
    digests = metrics.get('parameter_sha256_by_worker', [])
    if len(set(digests)) > 1:
        print('error: the workers ended with different parameters (see '
              f'parameter_sha256_by_worker in {os.path.join(out, METRICS)})', file=sys.stderr)
        return 1
    return 0


def main(argv=None, as_program=False):
    """Run the CLI; returns the process exit status.

    ``as_program``: this process is the CLI itself (``python -m gluon_softmax.train``,
    ``gluon-softmax-train``), so a failed worker of a distributed job may end it at
    once (:func:`leave_failed_job`); callers such as tests get the status back.
    """
    args = build_parser().parse_args(argv)
    stop = StopOnSignal()
    stop.install()
    try:
        status = run(args, stop)
    except (data.DataError, ContextError, UsageError, CheckpointError, ParallelError) as e:
        print(f'error: {e}', file=sys.stderr)
        status = 2
        if as_program:
            # still inside the except block: the traceback keeps a kvstore alive, whose
            # destructor would wait for the other workers
            leave_failed_job(status)
    except Interrupted as e:  # before training started: nothing to keep
        print(f'interrupted ({e})', file=sys.stderr)
        status = 128 + e.signum
        if as_program:
            leave_failed_job(status)
    if as_program:
        leave_failed_job(status)
    return status


def leave_failed_job(status):
    """In a worker of a distributed job, end the process at once with a non-zero ``status``.

    A normal exit runs the kvstore's destructor, which waits in a barrier for the
    other workers; they are still training, or waiting for this one: the job would
    hang. Leaving at once lets the launcher see the status and stop the others.
    """
    if status and os.environ.get('DMLC_ROLE') == 'worker':
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def program():
    """The ``gluon-softmax-train`` console script: run the CLI and exit with its status."""
    sys.exit(main(as_program=True))


if __name__ == '__main__':
    program()
