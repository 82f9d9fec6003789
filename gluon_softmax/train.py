"""The command line: ``python -m gluon_softmax.train`` (console script ``gluon-softmax-train``).

Trains softmax regression (concise or from scratch) on Fashion-MNIST and
writes ``metrics.json``, ``curves.html`` and ``model.params`` into ``--out``.
"""
import argparse
import datetime
import json
import math
import os
import random
import sys
import tempfile

import mxnet as mx
import numpy as onp
from mxnet import npx

from gluon_softmax import concise, data, plots, scratch, training
from gluon_softmax.context import ContextError, parse_ctx

METRICS, CURVES, PARAMS = 'metrics.json', 'curves.html', 'model.params'
RUN_FILES = (METRICS, CURVES, PARAMS)


class UsageError(Exception):
    """A flag value that is well-formed for argparse but unusable."""


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer >= 1, got {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected an integer >= 1, got {text!r}')
    return value


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text!r}')
    return value


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive number, got {text!r}') from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f'expected a positive finite number, got {text!r}')
    return value


class Parser(argparse.ArgumentParser):
    """argparse with errors as one ``error: ...`` line and exit status 2."""

    def error(self, message):
        self.exit(2, f'error: {message} (see --help)\n')


def build_parser():
    """The CLI's flags, named like the arguments of the functions they feed."""
    p = Parser(prog='python -m gluon_softmax.train',
               description='Train softmax regression on Fashion-MNIST with MXNet Gluon.')
    p.add_argument('--impl', choices=('concise', 'scratch'), default='concise',
                   help='nn.Dense + Trainer, or the from-scratch model (default: concise)')
    p.add_argument('--epochs', type=positive_int, default=10, metavar='N',
                   help='number of epochs to train (default: 10)')
    p.add_argument('--batch-size', type=positive_int, default=256, metavar='N',
                   help='minibatch size (default: 256)')
    p.add_argument('--lr', type=positive_float, default=0.1, metavar='LR',
                   help='SGD learning rate (default: 0.1)')
    p.add_argument('--ctx', default='cpu', metavar='DEVICE',
                   help='cpu, gpu or gpu:N (default: cpu)')
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
    p.add_argument('--loader', choices=('memory', 'dataloader'), default='memory',
                   help='memory: decode once, slice batches (fast); dataloader: the book\'s '
                        'transform_first(ToTensor) + DataLoader (default: memory)')
    p.add_argument('--num-workers', type=non_negative_int, default=0, metavar='N',
                   help='DataLoader worker processes, with --loader dataloader (default: 0)')
    return p


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


def build_model(impl, lr, ctx, side=data.IMAGE_SIDE):
    """``(net, loss, updater)`` for ``impl`` with parameters on ``ctx``."""
    if impl == 'scratch':
        net = scratch.SoftmaxRegressionScratch(num_inputs=side * side, ctx=ctx)
        return net, scratch.softmax_cross_entropy, scratch.SGD(net.parameters(), lr)
    net = concise.build_net(ctx=ctx)
    return net, concise.build_loss(), concise.build_trainer(net, lr)


def load_iters(args, ctx):
    """The train and test iterators the flags ask for."""
    if args.loader == 'memory':
        return data.load_arrays_iters(args.batch_size, resize=args.resize, root=args.data_dir,
                                      ctx=ctx, download=args.download)
    return data.load_data_fashion_mnist(args.batch_size, resize=args.resize, root=args.data_dir,
                                        num_workers=args.num_workers, download=args.download)


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
            f"test acc {entry['test_acc']:.4f}  {entry['seconds']:.2f} s")


def run(args):
    """Train as the parsed flags say and write the run directory; returns the exit status."""
    ctxs = parse_ctx(args.ctx)
    if len(ctxs) > 1:
        raise ContextError(f'--ctx {args.ctx!r}: several devices are not supported yet; '
                           'give one device')
    ctx = ctxs[0]
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2 ** 31)
    out = args.out or os.path.join(
        'runs', f"{args.impl}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    npx.set_np()
    set_seed(args.seed)
    train_iter, test_iter = load_iters(args, ctx)
    prepare_out(out)
    net, loss, updater = build_model(args.impl, args.lr, ctx, args.resize or data.IMAGE_SIDE)
    print(f'training {args.impl} softmax regression on {ctx} for {args.epochs} epochs '
          f'(lr {args.lr}, batch size {args.batch_size}, seed {args.seed}) -> {out}', flush=True)
    history = training.train(
        net, train_iter, test_iter, loss, updater, args.epochs, ctx,
        callback=lambda e: print(format_epoch(e, args.epochs), flush=True),
        wrap_batches=progress_wrapper())
    metrics = {
        'impl': args.impl, 'ctx': str(ctx), 'seed': args.seed,
        'hyperparameters': {'epochs': args.epochs, 'batch_size': args.batch_size,
                            'lr': args.lr, 'resize': args.resize, 'loader': args.loader,
                            'num_workers': args.num_workers},
        'data_dir': data.find_data_dir(args.data_dir),
        'epochs': history,
    }
    atomic_write(os.path.join(out, PARAMS), net.save_parameters)
    write_text(os.path.join(out, CURVES),
               plots.curves_figure(history, title=f'{args.impl} softmax regression')
               .to_html(include_plotlyjs=True, full_html=True))
    write_text(os.path.join(out, METRICS), json.dumps(metrics, indent=2) + '\n')
    print(f'wrote {METRICS}, {CURVES} and {PARAMS} to {out}')
    return 0


def main(argv=None):
    """Run the CLI; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (data.DataError, ContextError, UsageError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
