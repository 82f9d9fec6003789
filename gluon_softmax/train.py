"""The command line: ``python -m gluon_softmax.train`` (console script ``gluon-softmax-train``).

Trains softmax regression (concise or from scratch) on Fashion-MNIST and
writes ``metrics.json``, ``curves.html``, ``report.html``, ``model.params`` and
``checkpoint.npz`` into ``--out``. It composes the layers: the chapter's
``training.train`` loop with its ``train_epoch`` on one device (the scale-out epoch,
``scale.parallel.DataParallel``, for several devices or worker processes) and run management
(``gluon_softmax.run``: watch, progress, checkpoint, report), which wraps what the loop is
given.
"""
import contextlib
import dataclasses
import math
import os
import random
import shlex
import sys

from gluon_softmax.idx import SPLITS
from gluon_softmax.run.checkpoint import (CHECKPOINT, CheckpointError, load_checkpoint,
                                          save_checkpoint)
from gluon_softmax.run.cli import Parser, UsageError, non_negative_int, positive_float
from gluon_softmax.run.epoch import EpochRunner
from gluon_softmax.run.files import WriteError, atomic_write
from gluon_softmax.run.progress import progress_bar
from gluon_softmax.run.record import end_early, record_failure, write_metrics, write_pages
from gluon_softmax.run.resume import checkpoint_recipe, earlier_sessions, metrics_recipe
from gluon_softmax.run.rundir import (CURVES, METRICS, PARAMS, PLOTLY_JS, REPORT, RunDirectory,
                                      RunDirectoryError)
from gluon_softmax.run.settings import Recipe, add_recipe_arguments, flag_name
from gluon_softmax.run.signals import Interrupted, StopOnSignal
from gluon_softmax.run.streams import guard_streams
from gluon_softmax.run.watch import DEFAULT_MAX_LOSS, Diverged, LossWatch
from gluon_softmax.scale import KVSTORES

EXIT_DIVERGED = 3


def program_name(argv0=None):
    """How the CLI was started: ``gluon-softmax-train`` or ``python -m gluon_softmax[.train]``."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if argv0.endswith('__main__.py'):
        return 'python -m gluon_softmax'
    if argv0.endswith('.py') or not argv0:
        return 'python -m gluon_softmax.train'
    return os.path.basename(argv0)  # the console script


# Where and how a run trains (the recipe's own flags come from run.settings.Recipe): each flag's
# argparse options, help ending in its default
RUN_FLAGS = (
    (('--ctx',), dict(default='cpu', metavar='DEVICE', help=(
        'cpu, gpu, gpu:N, gpu:all, or a comma list such as cpu:0,cpu:1 or gpu:0,gpu:1 to split '
        'every batch over several devices (default: cpu)'))),
    (('--kvstore',), dict(default='device', choices=KVSTORES, help=(
        'how gradients are summed: over the devices of this process (device, local), or over '
        'the worker processes of a job started by python -m gluon_softmax.launch (dist_sync, '
        'dist_device_sync) (default: device)'))),
    (('--data-dir',), dict(metavar='DIR', help=(
        'directory with the four Fashion-MNIST IDX files (default: $FASHION_MNIST_DIR, '
        '~/.mxnet/datasets/fashion-mnist, /usr/share/datasets/fashion-mnist)'))),
    (('--download',), dict(action='store_true', help=(
        'download the data set when no copy is found (default: off)'))),
    (('--out',), dict(metavar='DIR', help=(
        'run directory for the outputs, new or empty (default: a new '
        'runs/<impl>-<timestamp>)'))),
    (('--overwrite',), dict(action='store_true', help=(
        'replace the earlier run in --out: its files are removed first (default: off, an '
        'earlier run is never touched)'))),
    (('--loader-workers', '--num-workers'), dict(
        dest='loader_workers', default=0, type=non_negative_int, metavar='N', help=(
            'DataLoader worker processes, with --loader dataloader (default: 0; --num-workers '
            'is the same flag)'))),
    (('--max-loss',), dict(type=positive_float, default=DEFAULT_MAX_LOSS, metavar='L', help=(
        "stop as diverged when a batch's mean loss exceeds L or is not finite, checked every "
        f'20 batches (default: {DEFAULT_MAX_LOSS:g})'))),
    (('--resume',), dict(metavar='DIR', help=(
        'continue the run in DIR from its last checkpoint, with its settings, up to --epochs '
        '(which may grow, except under a cosine schedule); --ctx, --kvstore, --max-loss and '
        '--loader-workers may change'))),
)


def build_parser():
    """The CLI's flags: the recipe's (run.settings.Recipe), then where and how to run it."""
    p = Parser(prog=program_name(),
               description='Train softmax regression on Fashion-MNIST with MXNet Gluon.')
    add_recipe_arguments(p)
    for flags, options in RUN_FLAGS:
        p.add_argument(*flags, **options)
    return p


def given_settings(args):
    """The recipe's settings given on the command line, as a dict."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
            if getattr(args, f.name) is not None}


def check_resume_flags(args):
    """Reject ``--resume`` flags that name no directory or another one than ``--out``."""
    if not args.resume:
        raise UsageError(f'--resume {args.resume!r}: expected the run directory to continue')
    if args.out and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise UsageError(f'--out {args.out}: a resumed run writes into its own directory '
                         f'({args.resume})')


def resolve_settings(args):
    """The run's recipe and directory: the flags over the defaults, or ``--resume``'s own.

    A resumed run's settings are read from its metrics.json, or from its checkpoint
    when the run was killed before it wrote a metrics.json.
    """
    given = given_settings(args)
    if args.resume is None:
        recipe = Recipe(**given)
        if recipe.seed is None:
            recipe.seed = random.SystemRandom().randrange(2 ** 31)
        return recipe, args.out
    check_resume_flags(args)
    path = os.path.join(args.resume, METRICS)
    if not os.path.lexists(path) and os.path.lexists(os.path.join(args.resume, CHECKPOINT)):
        recipe = checkpoint_recipe(args.resume)
    else:
        recipe = metrics_recipe(args.resume, path)
    for key, value in given.items():
        if key != 'epochs' and value != getattr(recipe, key):
            raise UsageError(f'{flag_name(key)} {value}: the resumed run uses '
                             f'{getattr(recipe, key)}; only --epochs can change')
    epochs = given.get('epochs', recipe.epochs)
    if recipe.lr_schedule == 'cosine' and epochs != recipe.epochs:
        # the schedule restored with the trainer decays to 0 over the run's own epochs
        raise UsageError(f'--epochs {epochs}: this run\'s cosine schedule reaches lr 0 after its '
                         f'{plural(recipe.epochs, "epoch")}; start a new run for a longer '
                         'schedule')
    recipe.epochs = epochs
    return recipe, args.resume


def check_settings(recipe):
    """Reject combinations of valid flags that the chosen model or loader cannot honour."""
    if recipe.impl == 'scratch':
        for key in ('momentum', 'wd', 'lr_schedule'):
            if getattr(recipe, key) != getattr(Recipe(), key):
                raise UsageError(f'{flag_name(key)} {getattr(recipe, key)}: the scratch model '
                                 'uses plain minibatch SGD; use --impl concise')
    # SGD's weight decay alone scales the weights by (1 - lr * wd) each step (with momentum m, a
    # linear recurrence stable only for lr * wd < 2 (1 + m)): beyond that they grow without
    # bound whatever the data, and the run would only stop as "diverged" after its first batches
    limit = 2 * (1 + recipe.momentum) / recipe.lr
    if recipe.wd >= limit:
        raise UsageError(f'--wd {recipe.wd:g}: weight decay too large for --lr {recipe.lr:g}'
                         f'{f" and --momentum {recipe.momentum:g}" if recipe.momentum else ""}: '
                         f'the weights would grow without bound; use --wd below {limit:g}')
    if recipe.val_size and recipe.loader != 'memory':
        raise UsageError('--val-size: needs --loader memory')
    num_train = SPLITS[True][2]
    if recipe.val_size >= num_train:
        raise UsageError(f'--val-size {recipe.val_size}: must be below the '
                         f'{num_train} training examples')


def claim_out(args, recipe, out):
    """The run directory, owned by this run (see :class:`gluon_softmax.run.rundir.RunDirectory`)."""
    if args.resume is not None:
        return RunDirectory(out, '--resume').claim('resume')
    if out is None:
        return RunDirectory.unique('runs', recipe.impl).claim('new')
    return RunDirectory(out).claim('overwrite' if args.overwrite else 'new')


def load_iters(recipe, args, ctx):
    """``(train_iter, val_iter or None, test_iter)`` as the recipe asks."""
    from gluon_softmax import data
    if recipe.loader == 'memory':
        iters = data.load_arrays_iters(recipe.batch_size, resize=recipe.resize,
                                       root=args.data_dir, ctx=ctx, download=args.download,
                                       val_size=recipe.val_size)
        return iters if len(iters) == 3 else (iters[0], None, iters[1])
    train_iter, test_iter = data.load_data_fashion_mnist(
        recipe.batch_size, resize=recipe.resize, root=args.data_dir,
        num_workers=args.loader_workers, download=args.download)
    return train_iter, None, test_iter


def plural(count, noun):
    """``1 epoch``, ``2 epochs``."""
    return f'{count} {noun}' + ('' if count == 1 else 's')


def format_epoch(entry, num_epochs):
    """One line of progress for an epoch's history entry."""
    figures = [('train loss', 'train_loss'), ('train acc', 'train_acc'), ('val loss', 'val_loss'),
               ('val acc', 'val_acc'), ('test loss', 'test_loss'), ('test acc', 'test_acc')]
    return (f"epoch {entry['epoch']:>{len(str(num_epochs))}}/{num_epochs}  "
            + ''.join(f'{label} {entry[key]:.4f}  ' for label, key in figures if key in entry)
            + f"{entry['seconds']:.2f} s")


def header(recipe, devices, workers, out, resumed_after):
    """The first line of a run: what is trained where, and every setting not the book's."""
    changed = {k: v for k, v in recipe.differences().items() if k not in ('impl', 'epochs')}
    shown = ', '.join(f'{flag_name(k)[2:]} {v}' for k, v in changed.items())
    return (f'training {recipe.impl} softmax regression on {devices}'
            + (f' in each of {workers.num_workers} worker processes' if workers.distributed
               else '')
            + f' for {plural(recipe.epochs, "epoch")} ({shown}) -> {out}'
            + (f' (resumed after epoch {resumed_after})' if resumed_after else ''))


def resume_hint(out, data_dir=None):
    """The command that continues the run in ``out``, quoted for a POSIX shell; with the
    run's ``--data-dir`` when it was given one (a resume looks for the data set as any run
    does, and the default places may not hold it)."""
    data = ('--data-dir', os.path.abspath(data_dir)) if data_dir is not None else ()
    return ' '.join(shlex.quote(part) for part in
                    (sys.executable, '-m', 'gluon_softmax.train', '--resume',
                     os.path.abspath(out), *data))


START_LOSS = math.log(10)  # the mean loss of a uniform guess over 10 classes: where training starts


def divergence_cause(diverged, recipe):
    """Which settings can have made a run stop as diverged, for its error line."""
    if math.isfinite(diverged.loss) and (diverged.loss <= START_LOSS or (
            diverged.max_loss < START_LOSS and diverged.loss <= DEFAULT_MAX_LOSS)):
        # about where every run starts: the bound, not the training, is off
        return (f'that is not divergence (training starts near ln 10 = {START_LOSS:.3f}): '
                f'--max-loss is too low; raise it (default: {DEFAULT_MAX_LOSS:g})')
    steps = [f'--lr {recipe.lr:g}'] + [f'{flag_name(key)} {getattr(recipe, key):g}'
                                       for key in ('momentum', 'wd') if getattr(recipe, key)]
    return (f'the steps grew too large: try a smaller {" or ".join(steps)} (the book uses '
            f'--lr {Recipe().lr:g}), or a larger --max-loss if such a loss is expected')


def check_before_loading(args, in_job):
    """What a run checks and says before the seconds MXNet and the data set take: ``--out ''``,
    a new run's ``--max-loss`` below where training starts, what ``--out`` holds."""
    if args.out == '':  # os.path would take it for the working directory, or for nothing
        raise UsageError('--out: empty path')
    if args.resume is None and args.max_loss < START_LOSS:
        # a new model's first batches lose about ln 10: the first check would stop the run
        raise UsageError(f'--max-loss {args.max_loss:g}: below the loss every new run starts at '
                         f'(ln 10 = {START_LOSS:.3f}), so it would stop as diverged at once; '
                         f'give a bound above it (default: {DEFAULT_MAX_LOSS:g})')
    if args.resume is None and args.out is not None and not in_job:
        # what --out holds, checked before the seconds MXNet and the data set take (claimed
        # only after them: a data set that fails to load leaves the directory as it was)
        RunDirectory(args.out).check('overwrite' if args.overwrite else 'new')
    if not in_job:  # in a job, worker 0 speaks once it knows its rank
        # importing MXNet takes seconds: say something first
        print('loading MXNet and Fashion-MNIST ...', flush=True)


def start_run(args, stop):
    """Train as the flags say, writing the run directory as it goes; returns the exit status.

    In a distributed job every worker trains; worker 0 alone prints and writes.
    """
    in_job = os.environ.get('DMLC_ROLE') == 'worker'
    check_before_loading(args, in_job)
    with contextlib.ExitStack() as held:  # the directory's lock, released however the run ends
        joined = lock_resumed(args, stop, in_job, held) if args.resume is not None else None
        recipe, out = resolve_settings(args)
        check_settings(recipe)
        from gluon_softmax.loader_workers import end_workers
        from gluon_softmax.data import set_seed
        ctxs, workers = joined or join(args, stop)
        if workers.distributed:
            # every worker must draw the same shuffling: worker 0's seed, given or drawn, for all
            recipe.seed = workers.broadcast_int(recipe.seed)
        set_seed(recipe.seed)
        iters = load_iters(recipe, args, ctxs[0])
        try:
            if workers.rank == 0 and args.resume is None:
                directory = claim_out(args, recipe, out)
                held.callback(directory.release)
                out = directory.path
            if workers.distributed:
                # the others read the checkpoint only once worker 0 owns the directory (and has
                # removed what a killed run left there, which would include their temporary
                # files)
                workers.barrier()
            return Session(args, stop, recipe, out, (ctxs, workers), iters).train()
        finally:
            # what follows is clean-up (the loader workers killed and reaped, within seconds):
            # a signal now is only noted, see main()
            stop.finish()
            end_workers(*iters)  # bounded: killed and reaped, see loader_workers


def lock_resumed(args, stop, in_job, held):
    """Own the resumed run's directory (released by ``held``) before anything reads it;
    ``(devices, Workers)`` when that meant joining the job, else None.

    The lock first: the run's files are read only once no other run can change them. In a
    job too, but which worker writes (worker 0) is known only from the kvstore: join it,
    worker 0 takes the lock, and every worker reads the run only after that.
    """
    check_resume_flags(args)
    joined = join(args, stop) if in_job else None
    if joined is None or joined[1].rank == 0:
        held.callback(RunDirectory(args.resume, '--resume').claim('resume').release)
    if joined is not None:
        joined[1].barrier()
    return joined


def join(args, stop):
    """``(devices, Workers)``: parse ``--ctx``, load MXNet, join the job of ``--kvstore``."""
    from mxnet import npx

    from gluon_softmax.scale.context import parse_ctx
    from gluon_softmax.scale.workers import connect
    ctxs = parse_ctx(args.ctx)
    npx.set_np()
    workers = connect(args.kvstore)
    if workers.distributed:
        stop.agree()  # every worker stops at the same batch (see StopOnSignal.agree)
    return ctxs, workers


class Session:
    """One session of a run in its claimed directory ``out``: train, save every epoch, and end
    as the run ends (complete, interrupted, diverged, failed), each with its exit status."""

    def __init__(self, args, stop, recipe, out, job, iters):
        self.args, self.stop, self.recipe, self.out = args, stop, recipe, out
        self.ctxs, self.workers = job
        self.train_iter, self.val_iter, self.test_iter = iters
        self.lead = self.workers.rank == 0
        self.model = self.metrics = self.done = None

    def train(self):
        """Train to ``--epochs`` from where the run stands; the exit status."""
        from gluon_softmax import training
        from gluon_softmax.compose import build_model
        from gluon_softmax.loader_workers import LoaderWorkerError
        args, recipe = self.args, self.recipe
        self.model = build_model(recipe, self.ctxs, len(self.train_iter), args.kvstore,
                                 self.workers)
        history = (load_checkpoint(os.path.join(self.out, CHECKPOINT), self.model,
                                   recipe.to_dict(), f'the run in {METRICS}')
                   if args.resume is not None else [])
        if recipe.epochs < len(history):
            raise UsageError(f'--epochs {recipe.epochs}: the run in {self.out} has already '
                             f'trained {len(history)} epochs')
        self.metrics, self.done = self.describe(len(history)), list(history)
        if self.lead:
            print(header(recipe, self.metrics['ctx'], self.workers, self.out, len(self.done)),
                  flush=True)
        epoch_fn = epoch_runner(args, self.stop, recipe, self.ctxs, self.workers,
                                len(history) + 1)
        try:
            training.train(self.model.net, self.train_iter, self.test_iter, self.model.loss,
                           self.model.updater,
                           training.Epochs(recipe.epochs, self.ctxs[0],
                                           self.after_epoch if self.lead else None, history,
                                           self.val_iter, epoch_fn))
        except (Interrupted, WriteError, LoaderWorkerError, Diverged) as e:
            return self.ended(e)
        return self.finish()

    def describe(self, trained):
        """``metrics.json`` of the run (without status and epochs), this session recorded."""
        from gluon_softmax import data
        args, recipe, workers = self.args, self.recipe, self.workers
        devices = ','.join(str(ctx) for ctx in self.ctxs)
        session = {'ctx': devices, 'kvstore': args.kvstore,
                   'worker_processes': workers.num_workers, 'loader_workers': args.loader_workers,
                   'max_loss': args.max_loss, 'after_epoch': trained}
        return {'impl': recipe.impl, 'ctx': devices, 'kvstore': args.kvstore,
                'worker_processes': workers.num_workers, 'seed': recipe.seed,
                'hyperparameters': recipe.to_dict(), 'loader_workers': args.loader_workers,
                'max_loss': args.max_loss, 'data_dir': data.find_data_dir(args.data_dir),
                # every session of the run, resumed ones included: where each trained
                'sessions': ((earlier_sessions(self.out) if args.resume is not None else [])
                             + [session])}

    def after_epoch(self, entry):
        """The callback of ``training.train``: save the epoch whole, then print its line."""
        def save():
            # the epoch counts as done only once its checkpoint is on disk
            save_checkpoint(os.path.join(self.out, CHECKPOINT), self.model, self.done + [entry],
                            self.recipe.to_dict())
            self.done.append(entry)
            write_metrics(self.out, self.metrics, self.done, 'running')
        self.stop.run_whole(save)
        print(format_epoch(entry, self.recipe.epochs), flush=True)

    def ended(self, error):
        """A run that stopped before its last epoch; the exit status."""
        from gluon_softmax.loader_workers import LoaderWorkerError
        if isinstance(error, Interrupted):
            return self.interrupted(error)
        if isinstance(error, Diverged):
            return self.diverged(error)
        if self.lead and isinstance(error, WriteError):
            kept = (f'the checkpoint of epoch {len(self.done)} is kept' if self.done else
                    'no epoch was saved')
            print(f'error: {error}; {kept}'
                  f'{record_failure(self.out, self.metrics, self.done, error, self.stop)}',
                  file=sys.stderr)
        elif self.lead and isinstance(error, LoaderWorkerError):
            # a worker process died (the OOM killer, SIGBUS on a full /dev/shm) or hung; every
            # worker is ended already: the run stops with what it saved
            end_early(self.out, self.metrics, self.done, 'failed', {'error': str(error)},
                      self.stop)
            kept = (f'the checkpoint of epoch {len(self.done)} is kept; continue with: '
                    f'{resume_hint(self.out, self.args.data_dir)}' if self.done else
                    'no epoch was saved')
            print(f'error: {error}; {kept}', file=sys.stderr)
        return 2

    def interrupted(self, e):
        """Stopped by a signal: record it, say how to continue; 128 + the signal's number."""
        if self.lead:
            end_early(self.out, self.metrics, self.done, 'interrupted', {'signal': str(e)},
                      self.stop)
            hint = resume_hint(self.out, self.args.data_dir)
            saved = (f'continue with: {hint}' if self.done else
                     'no epoch finished, nothing was saved to resume from')
            print(f'interrupted ({e}) after {plural(len(self.done), "epoch")}; {saved}',
                  file=sys.stderr)
        return 128 + e.signum

    def diverged(self, e):
        """Stopped by the divergence check: record where, and why; ``EXIT_DIVERGED``."""
        if self.lead:
            end_early(self.out, self.metrics, self.done, 'diverged',
                      {'epoch': e.epoch, 'batch': e.batch, 'loss': e.loss,
                       'max_loss': e.max_loss}, self.stop)
            kept = (f'the checkpoint of epoch {len(self.done)} is kept' if self.done else
                    'no epoch completed')
            print(f'error: training diverged at epoch {e.epoch}, batch {e.batch}: mean loss '
                  f'{e.loss:g} above --max-loss {e.max_loss:g}; '
                  f'{divergence_cause(e, self.recipe)}; {kept} in {self.out}', file=sys.stderr)
        # every worker stopped at the same batch (the losses are summed over the job); the
        # others wait here until worker 0 has written, or the launcher could stop it first
        self.workers.barrier()
        return EXIT_DIVERGED

    def finish(self):
        """Every epoch trained: write the results whole, even through a signal; the status."""
        if self.workers.distributed:
            # every worker's parameters, hashed and gathered: equal hashes, bitwise equal replicas
            self.metrics['parameter_sha256_by_worker'] = self.workers.digests(
                self.model.parameters())
        if not self.lead:
            return 0
        statuses = []
        # a signal now waits until every result is written: the run is complete, never half
        try:
            self.stop.run_whole(lambda: statuses.append(write_results(
                self.out, self.model, self.test_iter, self.metrics, self.done)), raise_after=False)
        except WriteError as e:
            print(f'error: {e}; the checkpoint of epoch {len(self.done)} is kept'
                  f'{record_failure(self.out, self.metrics, self.done, e, self.stop)}',
                  file=sys.stderr)
            return 2
        if self.stop.received is not None:
            print(f'interrupted ({signal_name(self.stop.received)}) while the results were '
                  'written; they were written in full and the run is complete', file=sys.stderr)
            return 128 + self.stop.received
        return statuses[0]


def epoch_runner(args, stop, recipe, ctxs, workers, first_epoch):
    """The epoch function of a run: the chapter's ``training.train_epoch`` itself on one device
    and one process, the scale-out epoch otherwise; progress and the divergence check wrap it."""
    from gluon_softmax import training
    from gluon_softmax.scale.parallel import DataParallel
    watch = LossWatch(args.max_loss, lambda sums: workers.sum(sums, 'loss check'),
                      stop=stop if workers.distributed else None)
    progress = progress_bar(recipe.epochs) if workers.rank == 0 else None
    if len(ctxs) == 1 and not workers.distributed:
        # one loop: the CLI trains with the very function the notebook prints; the check sees
        # each batch's loss through the loss it is given (a signal needs no check here: the
        # handler raises Interrupted between any two bytecodes, see StopOnSignal)
        runner = EpochRunner(training.train_epoch, first_epoch, progress, watch)
    else:
        # the batches are split over devices and workers: the scale-out epoch sums a batch's
        # loss over its pieces, and over the job, before its watch sees it
        runner = EpochRunner(DataParallel(ctxs, workers, watch).train_epoch,
                             first_epoch, progress)
    watch.report = runner.show_loss
    return runner


def write_results(out, model, test_iter, metrics, done):
    """Write the finished run's parameters, curves, report and metrics; returns the status."""
    atomic_write(os.path.join(out, PARAMS), model.net.save_parameters)
    write_pages(out, {**metrics, 'status': 'complete', 'epochs': done}, model, test_iter)
    write_metrics(out, metrics, done, 'complete')
    print(f'wrote {METRICS}, {CURVES}, {REPORT}, {PARAMS}, {CHECKPOINT} and {PLOTLY_JS} to {out}')
    digests = metrics.get('parameter_sha256_by_worker', [])
    if len(set(digests)) > 1:
        print('error: the workers ended with different parameters (see '
              f'parameter_sha256_by_worker in {os.path.join(out, METRICS)})', file=sys.stderr)
        return 1
    return 0


def signal_name(signum):
    """``SIGINT`` for 2."""
    import signal
    return signal.Signals(signum).name


def domain_errors():
    """The exception types that mean bad input: each becomes one ``error:`` line, exit 2.

    Those of modules that import MXNet only once they are imported: an error raised before
    (a flag, ``--out``) cannot be theirs, and importing them would take seconds.
    """
    types = [UsageError, CheckpointError, RunDirectoryError, WriteError]
    for module, name in (('gluon_softmax.data', 'DataError'),
                         ('gluon_softmax.scale.context', 'ContextError'),
                         ('gluon_softmax.scale.workers', 'ParallelError')):
        if module in sys.modules:
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def main(argv=None, as_program=False):
    """Run the CLI; returns the process exit status.

    ``as_program``: this process is the CLI itself (``python -m gluon_softmax.train``,
    ``gluon-softmax-train``), so a failed worker of a distributed job may end it at
    once (:func:`leave_failed_job`); callers such as tests get the status back.
    """
    stop = StopOnSignal()
    if as_program:
        guard_streams(stop)
    args = build_parser().parse_args(argv)
    try:
        stop.install()
        try:
            status = start_run(args, stop)
        except domain_errors() as e:  # evaluated only when something is raised
            print(f'error: {e}', file=sys.stderr)
            status = 2
            if as_program:
                # still inside the except block: the traceback keeps a kvstore alive, whose
                # destructor would wait for the other workers
                leave_failed_job(status)
    except Interrupted as e:  # before training started: nothing to keep
        stop.finish()
        kept = ('the run directory is as it was: continue with: '
                + resume_hint(args.resume, args.data_dir) if args.resume else 'nothing was saved')
        print(f'interrupted ({e}) before training started; {kept}', file=sys.stderr)
        status = 128 + e.signum
        if as_program:
            leave_failed_job(status)
    if status == 0 and stop.received is not None:
        print(f'interrupted ({signal_name(stop.received)}) as the run ended; its results were '
              'written in full and the run is complete', file=sys.stderr)
        status = 128 + stop.received
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
