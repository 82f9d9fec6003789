"""The command line: ``python -m gluon_softmax.train`` (console script ``gluon-softmax-train``).

Trains softmax regression (concise or from scratch) on Fashion-MNIST and
writes ``metrics.json``, ``curves.html``, ``report.html``, ``model.params`` and
``checkpoint.npz`` into ``--out``. It composes the layers: the chapter's
``training.train`` loop with its ``train_epoch`` on one device (the scale-out epoch,
``scale.parallel.DataParallel``, for several devices or worker processes) and run management
(``gluon_softmax.run``: watch, progress, checkpoint, report), which wraps what the loop is
given.
"""
import dataclasses
import json
import math
import os
import random
import shlex
import sys

from gluon_softmax.idx import SPLITS
from gluon_softmax.run.checkpoint import (CHECKPOINT, CheckpointError, load_checkpoint,
                                          read_checkpoint, save_checkpoint)
from gluon_softmax.run.cli import Parser, non_negative_int, positive_float
from gluon_softmax.run.epoch import EpochRunner
from gluon_softmax.run.files import WriteError, atomic_write, write_text
from gluon_softmax.run.progress import progress_bar
from gluon_softmax.run.rundir import (CURVES, METRICS, PARAMS, PLOTLY_JS, REPORT, RunDirectory,
                                      RunDirectoryError)
from gluon_softmax.run.settings import Recipe, add_recipe_arguments, flag_name
from gluon_softmax.run.signals import Interrupted, StopOnSignal
from gluon_softmax.run.streams import guard_streams
from gluon_softmax.run.watch import DEFAULT_MAX_LOSS, Diverged, LossWatch
from gluon_softmax.scale import KVSTORES

EXIT_DIVERGED = 3


class UsageError(Exception):
    """A flag value that is well-formed for argparse but unusable."""


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


def earlier_sessions(out):
    """The ``sessions`` list of a resumed run's metrics.json (older runs have none)."""
    try:
        with open(os.path.join(out, METRICS), encoding='utf-8') as f:
            sessions = json.load(f).get('sessions', [])
        return sessions if isinstance(sessions, list) else []
    except (OSError, ValueError, AttributeError):
        return []


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


def write_metrics(out, metrics, history, status):
    """Write ``metrics.json`` with the history so far and the run's status."""
    metrics = {**metrics, 'status': status, 'epochs': history}
    write_text(os.path.join(out, METRICS), json.dumps(metrics, indent=2) + '\n')


def write_pages(out, metrics, model=None, test_iter=None):
    """Write ``curves.html`` and ``report.html``, which load the one ``plotly.min.js`` beside them.

    ``metrics`` holds the status and the history (``'epochs'``). The report shows
    the model (predictions, mistakes, weights) only when ``model`` is given: for a
    run that ended early it shows the curves and why the run ended.
    """
    from gluon_softmax import plots
    from gluon_softmax.run import report
    history = metrics['epochs']
    report.write_plotly_js(out)
    write_text(os.path.join(out, CURVES), report.curves_html(history, metrics, PLOTLY_JS))
    title, subtitle = f"{metrics['impl']} softmax regression", report.settings_summary(metrics)
    if model is not None:
        figures = report.report_figures(model, test_iter, history, title=title, subtitle=subtitle)
    else:
        figures = {'Training curves': plots.curves_figure(history, title=title,
                                                          subtitle=subtitle)}
    write_text(os.path.join(out, REPORT), report.report_html(metrics, figures,
                                                             plotly_js=PLOTLY_JS))


def end_early(out, metrics, done, status, ended, stop):
    """Record a run that stopped before its last epoch: metrics, curves and report say why.

    Written whole even if another signal comes meanwhile.
    """
    metrics['ended'] = ended

    def write():
        write_metrics(out, metrics, done, status)
        write_pages(out, {**metrics, 'status': status, 'epochs': done})
    stop.run_whole(write, raise_after=False)


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


def record_failure(out, metrics, done, error, stop):
    """After a write error: make metrics.json say ``failed``, never ``running``; what to add to
    the error line (empty when it was recorded, or when no metrics.json was written yet).

    Only metrics.json, the smallest file: the pages may be what could not be written (a full
    disk, a file-size limit).
    """
    if not done:
        return ''
    metrics['ended'] = {'error': str(error)}
    try:
        stop.run_whole(lambda: write_metrics(out, metrics, done, 'failed'), raise_after=False)
    except WriteError as e:
        return f'; {METRICS} could not be updated either ({e})'
    return ''


def run(args, stop):
    """Train as the flags say, writing the run directory as it goes; returns the exit status.

    In a distributed job every worker trains; worker 0 alone prints and writes.
    """
    if args.out == '':  # os.path would take it for the working directory, or for nothing
        raise UsageError('--out: empty path')
    if args.resume is None and args.max_loss < START_LOSS:
        # a new model's first batches lose about ln 10: the first check would stop the run
        raise UsageError(f'--max-loss {args.max_loss:g}: below the loss every new run starts at '
                         f'(ln 10 = {START_LOSS:.3f}), so it would stop as diverged at once; '
                         f'give a bound above it (default: {DEFAULT_MAX_LOSS:g})')
    directory = None
    in_job = os.environ.get('DMLC_ROLE') == 'worker'
    if args.resume is None and args.out is not None and not in_job:
        # what --out holds, checked before the seconds MXNet and the data set take (claimed
        # only after them: a data set that fails to load leaves the directory as it was)
        RunDirectory(args.out).check('overwrite' if args.overwrite else 'new')
    if not in_job:  # in a job, worker 0 speaks once it knows its rank
        # importing MXNet takes seconds: say something first
        print('loading MXNet and Fashion-MNIST ...', flush=True)
    if args.resume is not None and not in_job:
        # the lock first: the run's files are read only once no other run can change them
        check_resume_flags(args)
        directory = RunDirectory(args.resume, '--resume').claim('resume')
    try:
        joined = None
        if args.resume is not None and in_job:
            # in a job too, but which worker writes (worker 0) is known only from the kvstore:
            # join it, worker 0 takes the lock, and every worker reads the run only after that
            check_resume_flags(args)
            joined = join(args, stop)
            if joined[1].rank == 0:
                directory = RunDirectory(args.resume, '--resume').claim('resume')
            joined[1].barrier()
        recipe, out = resolve_settings(args)
        check_settings(recipe)
        from gluon_softmax.loader_workers import end_workers
        from gluon_softmax.run.model import set_seed
        ctxs, workers = joined or join(args, stop)
        lead = workers.rank == 0
        if workers.distributed:
            # every worker must draw the same shuffling: worker 0's seed, given or drawn, for all
            recipe.seed = workers.broadcast_int(recipe.seed)
        set_seed(recipe.seed)
        iters = load_iters(recipe, args, ctxs[0])
        try:
            if lead and directory is None:
                directory = claim_out(args, recipe, out)
            if workers.distributed:
                # the others read the checkpoint only once worker 0 owns the directory (and has
                # removed what a killed run left there, which would include their temporary
                # files)
                workers.barrier()
            return train_run(args, stop, recipe, directory.path if lead else out, ctxs,
                             workers, iters)
        finally:
            # what follows is clean-up (the loader workers killed and reaped, within seconds):
            # a signal now is only noted, see main()
            stop.finish()
            end_workers(*iters)  # bounded: killed and reaped, see loader_workers
    finally:
        if directory is not None:
            directory.release()


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


def train_run(args, stop, recipe, out, ctxs, workers, iters):
    """Train in the claimed run directory ``out``, writing it as it goes; the exit status."""
    from gluon_softmax import data, training
    from gluon_softmax.compose import build_model
    from gluon_softmax.loader_workers import LoaderWorkerError
    train_iter, val_iter, test_iter = iters
    lead = workers.rank == 0
    model = build_model(recipe, ctxs, len(train_iter), args.kvstore, workers)
    checkpoint = os.path.join(out, CHECKPOINT)
    history = (load_checkpoint(checkpoint, model, recipe.to_dict(), f'the run in {METRICS}')
               if args.resume is not None else [])
    if recipe.epochs < len(history):
        raise UsageError(f'--epochs {recipe.epochs}: the run in {out} has already trained '
                         f'{len(history)} epochs')
    devices = ','.join(str(ctx) for ctx in ctxs)
    session = {'ctx': devices, 'kvstore': args.kvstore, 'worker_processes': workers.num_workers,
               'loader_workers': args.loader_workers, 'max_loss': args.max_loss,
               'after_epoch': len(history)}
    metrics = {'impl': recipe.impl, 'ctx': devices, 'kvstore': args.kvstore,
               'worker_processes': workers.num_workers, 'seed': recipe.seed,
               'hyperparameters': recipe.to_dict(), 'loader_workers': args.loader_workers,
               'max_loss': args.max_loss, 'data_dir': data.find_data_dir(args.data_dir),
               # every session of the run, resumed ones included: where each trained
               'sessions': (earlier_sessions(out) if args.resume is not None else []) + [session]}
    done = list(history)
    if lead:
        print(header(recipe, devices, workers, out, len(done)), flush=True)

    def after_epoch(entry):
        def save():
            # the epoch counts as done only once its checkpoint is on disk
            save_checkpoint(checkpoint, model, done + [entry], recipe.to_dict())
            done.append(entry)
            write_metrics(out, metrics, done, 'running')
        stop.run_whole(save)
        print(format_epoch(entry, recipe.epochs), flush=True)

    epoch_fn = epoch_runner(args, stop, recipe, ctxs, workers, len(history) + 1)
    try:
        training.train(model.net, train_iter, test_iter, model.loss, model.updater,
                       training.Epochs(recipe.epochs, ctxs[0], after_epoch if lead else None,
                                       history, val_iter, epoch_fn))
    except Interrupted as e:
        if lead:
            end_early(out, metrics, done, 'interrupted', {'signal': str(e)}, stop)
            hint = resume_hint(out, args.data_dir)
            saved = (f'continue with: {hint}' if done else
                     'no epoch finished, nothing was saved to resume from')
            print(f'interrupted ({e}) after {plural(len(done), "epoch")}; {saved}',
                  file=sys.stderr)
        return 128 + e.signum
    except WriteError as e:
        if lead:
            kept = (f'the checkpoint of epoch {len(done)} is kept' if done else
                    'no epoch was saved')
            print(f'error: {e}; {kept}{record_failure(out, metrics, done, e, stop)}',
                  file=sys.stderr)
        return 2
    except LoaderWorkerError as e:
        # a worker process died (the OOM killer, SIGBUS on a full /dev/shm) or hung; every
        # worker is ended already: the run stops with what it saved
        if lead:
            end_early(out, metrics, done, 'failed', {'error': str(e)}, stop)
            kept = (f'the checkpoint of epoch {len(done)} is kept; continue with: '
                    f'{resume_hint(out, args.data_dir)}' if done else 'no epoch was saved')
            print(f'error: {e}; {kept}', file=sys.stderr)
        return 2
    except Diverged as e:
        if lead:
            end_early(out, metrics, done, 'diverged', {'epoch': e.epoch, 'batch': e.batch,
                                                       'loss': e.loss, 'max_loss': e.max_loss},
                      stop)
            kept = f'the checkpoint of epoch {len(done)} is kept' if done else 'no epoch completed'
            print(f'error: training diverged at epoch {e.epoch}, batch {e.batch}: mean loss '
                  f'{e.loss:g} above --max-loss {e.max_loss:g}; {divergence_cause(e, recipe)}; '
                  f'{kept} in {out}', file=sys.stderr)
        # every worker stopped at the same batch (the losses are summed over the job); the
        # others wait here until worker 0 has written, or the launcher could stop it first
        workers.barrier()
        return EXIT_DIVERGED
    if workers.distributed:
        # every worker's parameters, hashed and gathered: equal hashes, bitwise equal replicas
        metrics['parameter_sha256_by_worker'] = workers.digests(model.parameters())
    if not lead:
        return 0
    statuses = []
    # a signal now waits until every result is written: the run is complete, never half
    try:
        stop.run_whole(lambda: statuses.append(write_results(out, model, test_iter, metrics,
                                                             done)), raise_after=False)
    except WriteError as e:
        print(f'error: {e}; the checkpoint of epoch {len(done)} is kept'
              f'{record_failure(out, metrics, done, e, stop)}', file=sys.stderr)
        return 2
    if stop.received is not None:
        print(f'interrupted ({signal_name(stop.received)}) while the results were written; they '
              'were written in full and the run is complete', file=sys.stderr)
        return 128 + stop.received
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
            status = run(args, stop)
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
