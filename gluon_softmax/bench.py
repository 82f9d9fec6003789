"""Benchmarks: ``python -m gluon_softmax.bench [--epochs N] [--warmup N] [--out FILE] [--quick]``.

Times one epoch of the default recipe (lr 0.1, batch 256) on the real
Fashion-MNIST along several pipelines: the book's DataLoader ("book", the
baseline), our in-memory path with both models ("concise", "scratch"), an
in-memory PyTorch loop ("pytorch", when torch is installed) and the compute
floor (the whole training set as single matrix products). Each row runs in a
subprocess of its own (``--row NAME``) so that its peak RSS is its own; the
row prints one JSON line that the parent collects. The parent also times the
concise path over batch sizes and image sizes and runs the training CLI once,
then prints markdown tables and writes every number to a JSON file.
"""
import argparse
import datetime
import importlib.metadata
import itertools
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as onp

from gluon_softmax import idx
from gluon_softmax.run.cli import (EXIT_USAGE, Parser, non_negative_int, positive_float,
                                   positive_int)
from gluon_softmax.run.settings import Recipe
from gluon_softmax.run.signals import Interrupted, StopOnSignal, signal_held

BOOK = Recipe()
LR, BATCH_SIZE, SEED = BOOK.lr, BOOK.batch_size, 0
NUM_INPUTS, NUM_OUTPUTS, IMAGE_SIDE = 784, 10, 28
BOOK_WORKERS = 4
QUICK_BOOK_BATCHES = 50  # --quick times this many batches of the book's pipeline, scaled up
SCALING_BATCH_SIZES = (64, 256, 1024, 4096)
QUICK_SCALING_BATCH_SIZES = (256, 1024)
SCALING_RESIZES = (IMAGE_SIDE, 56)
CLI_EPOCHS, QUICK_CLI_EPOCHS = 10, 1
SCALE_OUT_EPOCHS, QUICK_SCALE_OUT_EPOCHS = 5, 2
DEFAULT_OUT = os.path.join('bench-results', 'bench.json')
# Ctrl-C and SIGTERM as Interrupted (installed by main()); run_child starts a child whole
STOP = StopOnSignal()
CHILD_TIMEOUT = 900  # seconds a row or CLI run may take before it counts as hung
STACKS_SECONDS = 5  # after SIGABRT, how long a hung row has to print its stacks
# of a hung row's stderr in the error: the row's and its loader workers' stacks, in any order
# (each names its extension modules, a long line on Python 3.13)
STACK_CHARS = 30000
# name -> what the row measures; the order of the table
ROWS = {
    'book': f'gluon.data.vision FashionMNIST + ToTensor + DataLoader({BOOK_WORKERS} workers), '
            'nn.Dense + Trainer',
    'concise': 'in-memory ArrayLoader, nn.Dense (hybridized) + Trainer',
    'scratch': 'in-memory ArrayLoader, from-scratch model + SGD',
    'pytorch': 'in-memory tensors, randperm + index, nn.Linear + SGD',
    'floor': 'whole set as 2 matrix products, NumPy: X @ W, softmax, X^T (P - Y)',
    'floor-mxnet': 'the same with mxnet.np (dot with transpose_a for X^T)',
}


class BenchError(Exception):
    """A measurement subprocess failed."""


# ---------------------------------------------------------------- pure helpers

def summarize(name, epoch_seconds, num_examples=60000, **extra):
    """A result row from the timed epochs: median seconds per epoch and examples per second."""
    seconds = statistics.median(epoch_seconds)
    return {'name': name, 'seconds_per_epoch': seconds, 'epoch_seconds': list(epoch_seconds),
            'examples_per_second': num_examples / seconds, **extra}


def add_ratios(rows, base='book', reference='pytorch'):
    """Copies of ``rows`` with ``speedup_vs_book`` (base_s / row_s) and ``ratio_to_pytorch``
    (row_s / reference_s); None where a row or its comparison was not measured."""
    seconds = {row['name']: row.get('seconds_per_epoch') for row in rows}
    base_s, reference_s = seconds.get(base), seconds.get(reference)
    result = []
    for row in rows:
        s = row.get('seconds_per_epoch')
        result.append({**row,
                       'speedup_vs_book': base_s / s if s and base_s else None,
                       'ratio_to_pytorch': s / reference_s if s and reference_s else None})
    return result


def fmt(value, spec, missing='–'):
    """``format(value, spec)``, or ``missing`` for None."""
    return missing if value is None else format(value, spec)


def markdown_table(header, lines):
    """A markdown table from a header tuple and rows of already formatted cells."""
    out = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    out += ['| ' + ' | '.join(str(cell) for cell in line) + ' |' for line in lines]
    return '\n'.join(out)


def rows_table(rows):
    """The main table: one line per row, skipped rows say why."""
    header = ('row', 'pipeline', 'epochs', 's/epoch', 'examples/s', 'speed-up vs book',
              'time / pytorch', 'test acc', 'peak RSS MiB')
    lines = []
    for row in rows:
        if 'skipped' in row:
            lines.append((row['name'], ROWS.get(row['name'], ''), f"skipped: {row['skipped']}",
                          *['–'] * 6))
            continue
        name = row['name'] + (' *' if row.get('extrapolated_from_batches') else '')
        lines.append((name, ROWS.get(row['name'], ''),
                      f"{row['warmup']}+{len(row['epoch_seconds'])}",
                      f"{row['seconds_per_epoch']:.3f}", f"{row['examples_per_second']:,.0f}",
                      fmt(row.get('speedup_vs_book'), '.1f') + '×',
                      fmt(row.get('ratio_to_pytorch'), '.2f'),
                      fmt(row.get('test_acc'), '.4f'), fmt(row.get('peak_rss_mib'), '.0f')))
    return markdown_table(header, lines)


def scaling_table(rows):
    """The scaling table of the concise in-memory path."""
    header = ('batch size', 'resize', 's/epoch', 'examples/s', 'test acc', 'peak RSS MiB')
    return markdown_table(header, [
        (row['batch_size'], row['resize'], f"{row['seconds_per_epoch']:.3f}",
         f"{row['examples_per_second']:,.0f}", fmt(row.get('test_acc'), '.4f'),
         fmt(row.get('peak_rss_mib'), '.0f')) for row in rows])


def report(results):
    """The whole printed report for a results dict (as written to JSON)."""
    m, s, cli = results['machine'], results['settings'], results['cli']
    lines = [
        '# gluon_softmax benchmark',
        '',
        f"machine: {m['platform']}, {m['cpu_count']} CPUs ({m['cpu_model']}), "
        f"load average at start {m['load_average']}",
        f"versions: Python {m['python']}, mxnet {m['mxnet']}, numpy {m['numpy']}, "
        f"torch {m['torch'] or 'not installed'}",
        f"recipe: lr {s['lr']}, batch size {s['batch_size']}, Fashion-MNIST train "
        f"{s['num_train']} / test {s['num_test']} from {s['data_dir']}",
        f"epochs: {s['warmup']} warm-up + {s['epochs']} timed (book: {s['warmup']} + "
        f"{s['book_epochs']}); s/epoch is the median of the timed epochs",
        '',
        rows_table(results['rows']),
        '',
    ]
    if s['book_batches']:
        lines.append(f"* --quick: the book row times only the first {s['book_batches']} batches "
                     'of each epoch and scales the time to a full epoch')
    concise_row = next((row for row in results['rows'] if row['name'] == 'concise'
                        and 'test_pass_with_loss_s' in row), None)
    if concise_row:
        only, both = concise_row['test_pass_accuracy_s'], concise_row['test_pass_with_loss_s']
        lines += [f'test pass (concise, 10000 images): accuracy only {only:.4f} s, with the '
                  f'test loss {both:.4f} s ({both / only:.2f}x, timed alternately); one such '
                  'pass per epoch', '']
    lines += ['speed-up vs book = book s/epoch / row s/epoch; time / pytorch = row s/epoch / '
              'pytorch s/epoch; peak RSS is the row\'s own process (ru_maxrss)'
              + (f"; the book's largest DataLoader worker peaked at "
                 f"{fmt(book_workers_rss(results['rows']), '.0f')} MiB"
                 if book_workers_rss(results['rows']) else ''),
              '',
              '## Scaling (concise, in-memory)',
              '',
              scaling_table(results['scaling']),
              '',
              f"## Full CLI run: python -m gluon_softmax.train --epochs {cli['epochs']} "
              '--out <tmpdir> --seed 0',
              '',
              f"wall {cli['wall_seconds']:.1f} s, peak RSS {cli['peak_rss_mib']:.0f} MiB, "
              f"final test acc {fmt(cli.get('test_acc'), '.4f')}, exit status "
              f"{cli['returncode']}"]
    if results.get('scale_out'):
        runs = results['scale_out']
        lines += ['', f"## Scale out: the CLI for {runs[0]['epochs']} epochs, seed {SEED}, "
                  'one device vs two devices vs two worker processes', '',
                  scale_out_table(runs), '',
                  'all forms train on the same global batches: their losses and accuracies '
                  'should agree; on a CPU the extra devices and processes only add copies and '
                  'communication']
    return '\n'.join(lines)


def book_workers_rss(rows):
    """Peak RSS of the book row's largest DataLoader worker, or None."""
    return next((row.get('peak_rss_workers_mib') for row in rows if row['name'] == 'book'), None)


# ---------------------------------------------------------------- measurements (in a row process)

def peak_rss_mib(who=resource.RUSAGE_SELF):
    """Peak resident set size so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024


def time_epochs(run_epoch, warmup, epochs):
    """Call ``run_epoch()`` ``warmup`` times untimed, then ``epochs`` times; the timed seconds."""
    for _ in range(warmup):
        run_epoch()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        run_epoch()
        seconds.append(time.perf_counter() - start)
    return seconds


def load_iters(name, data_dir, batch_size, resize, ctx):
    """``(train_iter, test_iter)`` of row ``name``: the book's DataLoader, or our in-memory one."""
    from gluon_softmax import data
    if name == 'book':
        return data.load_data_fashion_mnist(batch_size, resize=resize, root=data_dir,
                                            num_workers=BOOK_WORKERS)
    return data.load_arrays_iters(batch_size, resize=resize, root=data_dir, ctx=ctx)


def measure_gluon(name, data_dir, batch_size, resize, warmup, epochs, max_batches=None,
                  test_passes=False):
    """Time ``training.train_epoch`` on the book's pipeline or our in-memory one; with
    ``test_passes``, the test pass too (:func:`time_test_passes`)."""
    import mxnet as mx
    from mxnet import npx

    from gluon_softmax import training
    from gluon_softmax.compose import build_model
    from gluon_softmax.loader_workers import end_workers
    from gluon_softmax.data import set_seed
    npx.set_np()
    set_seed(SEED)
    ctx = mx.cpu()
    train_iter, test_iter = load_iters(name, data_dir, batch_size, resize, ctx)
    side = resize or IMAGE_SIDE
    recipe = Recipe(impl='scratch' if name == 'scratch' else 'concise', batch_size=batch_size,
                    resize=resize, seed=SEED)
    model = build_model(recipe, [ctx], len(train_iter))
    num_batches = len(train_iter)
    timed_batches = min(max_batches or num_batches, num_batches)

    def run_epoch():
        batches = itertools.islice(train_iter, timed_batches)
        training.train_epoch(model.net, batches, model.loss, model.updater, ctx)
        # train_epoch's final read waits for the loss sum, not for the last update
        mx.nd.waitall()

    seconds = time_epochs(run_epoch, warmup, epochs)
    test_acc = training.evaluate_accuracy(model.net, test_iter, ctx)
    test_pass = (time_test_passes(model, test_iter, ctx, repeats=max(epochs, 3))
                 if test_passes else {})
    # killed and reaped: RUSAGE_CHILDREN then holds the largest worker's peak
    end_workers(train_iter, test_iter)
    scale = num_batches / timed_batches
    return summarize(name, [s * scale for s in seconds], warmup=warmup, batch_size=batch_size,
                     resize=side, test_acc=test_acc, num_batches=num_batches, **test_pass,
                     extrapolated_from_batches=timed_batches if scale != 1 else None,
                     peak_rss_mib=peak_rss_mib(),
                     peak_rss_workers_mib=peak_rss_mib(resource.RUSAGE_CHILDREN) or None)


def time_test_passes(model, test_iter, ctx, repeats):
    """Median seconds of the test pass with accuracy only (the book's) and with loss too.

    The two are timed alternately, so a busy machine slows both alike; their
    ratio is the cost of recording the test loss each epoch.
    """
    from mxnet import npx

    from gluon_softmax import training

    def accuracy_only():
        training.evaluate_accuracy(model.net, test_iter, ctx)

    def with_loss():
        training.evaluate(model.net, test_iter, model.loss, ctx)
    timed = {accuracy_only: [], with_loss: []}
    for _ in range(repeats):
        for run in timed:
            timed[run].extend(time_epochs(run, 0, 1))
            npx.waitall()
    return {'test_pass_accuracy_s': statistics.median(timed[accuracy_only]),
            'test_pass_with_loss_s': statistics.median(timed[with_loss])}


def read_flat(data_dir, train):
    """One split as ``(X float32 (n, 784) in [0, 1], y int64 (n,))``, the values ToTensor gives."""
    # idx reads with NumPy alone, keeping MXNet out of the PyTorch and NumPy rows' RSS;
    # structure checks only, as the MXNet rows verify the same files
    images, labels = idx.read_split(data_dir, train, verify=False)
    return (images.reshape(len(labels), NUM_INPUTS).astype(onp.float32) / 255.0,
            labels.astype(onp.int64))


def measure_pytorch(data_dir, batch_size, warmup, epochs):
    """Time the in-memory PyTorch loop, the same recipe; skipped without torch."""
    try:
        import torch
    except ImportError:
        return {'name': 'pytorch', 'skipped': 'torch not installed'}
    torch.manual_seed(SEED)
    X, y = (torch.from_numpy(a) for a in read_flat(data_dir, True))
    X_test, y_test = (torch.from_numpy(a) for a in read_flat(data_dir, False))
    net = torch.nn.Linear(NUM_INPUTS, NUM_OUTPUTS)
    # the book's initialisation, as in the MXNet rows
    torch.nn.init.normal_(net.weight, std=0.01)
    torch.nn.init.zeros_(net.bias)
    loss = torch.nn.CrossEntropyLoss()  # mean over the batch, like Trainer.step(batch_size)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    n = len(y)

    def run_epoch():
        # the same work per batch as train_epoch: loss sum and correct count kept on the side
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
        order = torch.randperm(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            X_batch, y_batch = X[idx], y[idx]
            y_hat = net(X_batch)
            l = loss(y_hat, y_batch)
            optimizer.zero_grad()
            l.backward()
            optimizer.step()
            loss_sum += l.detach() * len(idx)
            correct += (y_hat.argmax(dim=1) == y_batch).sum()
        return loss_sum.item() / n, correct.item() / n

    seconds = time_epochs(run_epoch, warmup, epochs)
    with torch.no_grad():
        test_acc = (net(X_test).argmax(dim=1) == y_test).float().mean().item()
    return summarize('pytorch', seconds, warmup=warmup, batch_size=batch_size,
                     resize=IMAGE_SIDE, test_acc=test_acc, torch=torch.__version__,
                     torch_threads=torch.get_num_threads(), peak_rss_mib=peak_rss_mib())


def measure_floor_numpy(data_dir, warmup, epochs):
    """Time one full-batch forward and backward pass with NumPy."""
    X, y = read_flat(data_dir, True)
    Y = onp.eye(NUM_OUTPUTS, dtype=onp.float32)[y]
    W = onp.random.default_rng(SEED).normal(0, 0.01, (NUM_INPUTS, NUM_OUTPUTS))
    W, b = W.astype(onp.float32), onp.zeros(NUM_OUTPUTS, dtype=onp.float32)
    n = len(y)

    def run_epoch():
        O = X @ W + b  # (60000, 784) @ (784, 10) -> (60000, 10)
        P = onp.exp(O - O.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        D = P - Y
        return X.T @ D / n, D.sum(axis=0) / n  # (784, 60000) @ (60000, 10) -> (784, 10)

    seconds = time_epochs(run_epoch, warmup, epochs)
    return summarize('floor', seconds, warmup=warmup, batch_size=n, resize=IMAGE_SIDE,
                     test_acc=None, peak_rss_mib=peak_rss_mib())


def measure_floor_mxnet(data_dir, warmup, epochs):
    """Time one full-batch forward and backward pass with mxnet.np."""
    import mxnet as mx
    from mxnet import np, npx
    npx.set_np()
    X_host, y_host = read_flat(data_dir, True)
    X, Y = np.array(X_host), npx.one_hot(np.array(y_host), NUM_OUTPUTS)
    W = np.random.normal(0, 0.01, (NUM_INPUTS, NUM_OUTPUTS))
    b = np.zeros(NUM_OUTPUTS)
    n = len(y_host)

    def run_epoch():
        P = npx.softmax(np.dot(X, W) + b)  # (60000, 784) @ (784, 10) -> (60000, 10)
        D = P - Y
        # np.dot(X.T, D) copies the transpose first and is slower than this whole pass
        G = mx.nd.dot(X.as_nd_ndarray(), D.as_nd_ndarray(), transpose_a=True) / n
        g_b = D.sum(axis=0) / n
        G.wait_to_read()
        g_b.wait_to_read()

    seconds = time_epochs(run_epoch, warmup, epochs)
    return summarize('floor-mxnet', seconds, warmup=warmup, batch_size=n, resize=IMAGE_SIDE,
                     test_acc=None, peak_rss_mib=peak_rss_mib())


def measure_row(args):
    """The measurement ``--row`` names, as a dict."""
    if args.row in ('book', 'concise', 'scratch'):
        return measure_gluon(args.row, args.data_dir, args.batch_size, args.resize,
                             args.warmup, args.epochs, args.max_batches, args.test_passes)
    if args.row == 'pytorch':
        return measure_pytorch(args.data_dir, args.batch_size, args.warmup, args.epochs)
    if args.row == 'floor':
        return measure_floor_numpy(args.data_dir, args.warmup, args.epochs)
    return measure_floor_mxnet(args.data_dir, args.warmup, args.epochs)


# ---------------------------------------------------------------- orchestration (parent process)

def descendants(pid):
    """The pids of ``pid``'s children, their children and so on (from /proc)."""
    children = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/stat', 'rb') as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        # the fields after the command name, which may hold spaces and parentheses
        ppid = int(stat[stat.rindex(b')') + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_all(pids, signum):
    """Send ``signum`` to each of ``pids`` that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def reap(pid, deadline):
    """``(wait status, rusage)`` of child ``pid`` once it has ended, or None at ``deadline``."""
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def end_child(pid, stacks=False):
    """Kill child ``pid`` and every process under it, and reap it; bounded.

    With ``stacks``, SIGABRT first: a child started with faulthandler (``-X
    faulthandler``), and its loader workers, forked with it, print their stacks.
    """
    # the processes under it are listed while it lives: once it is gone they are init's
    processes = [pid, *descendants(pid)]
    with signal_held():  # a second Ctrl-C must not cut this short: it is bounded anyway
        if stacks:
            # one at a time, the child last: stacks written at once interleave on the shared
            # stderr, character by character; a worker's own stacks come first
            deadline = time.monotonic() + STACKS_SECONDS
            for worker in processes[1:]:
                signal_all([worker], signal.SIGABRT)
                wait_ended([worker], deadline)
            signal_all([pid], signal.SIGABRT)
            ended = reap(pid, time.monotonic() + STACKS_SECONDS)
            if ended is not None:
                signal_all(processes[1:], signal.SIGKILL)
                wait_ended(processes[1:], time.monotonic() + STACKS_SECONDS)
                return ended
        try:
            os.killpg(pid, signal.SIGKILL)  # its session's group: anything it started there
        except (ProcessLookupError, PermissionError):
            pass
        signal_all(processes, signal.SIGKILL)
        # SIGKILL cannot be caught: only a process stuck in the kernel outlives the bound
        ended = reap(pid, time.monotonic() + STACKS_SECONDS)
        # the child's end does not wait for its workers': a killed process takes a while to
        # exit, the longer the more memory it holds (a 256 MiB one took 20 ms here), and the
        # orphans are init's to reap
        wait_ended(processes[1:], time.monotonic() + STACKS_SECONDS)
        return ended


def wait_ended(pids, deadline):
    """Wait until each of ``pids`` has exited (:func:`ended_or_zombie`), or ``deadline``."""
    for pid in pids:
        while not ended_or_zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.005)


def ended_or_zombie(pid):
    """True when process ``pid`` has exited (gone, or a zombie its parent has not reaped)."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return f.read().rsplit(b')', 1)[1].split()[0] in (b'Z', b'X')
    except (OSError, IndexError):
        return True


def run_child(cmd, what, timeout=CHILD_TIMEOUT):
    """Run ``cmd``; returns ``(exit status, wall seconds, peak RSS MiB, stdout, stderr)``.

    A child still running after ``timeout`` seconds is hung: it prints its stacks,
    is killed with everything it started, and BenchError names ``what`` with the
    stacks. On any exception meanwhile (Ctrl-C, SIGTERM) the child is ended first.
    """
    # the SIGABRT for a hung child's stacks writes no core file (children inherit the limit;
    # not set in a preexec_fn, which would run this process's fork hooks, see loader_workers)
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        start, started = time.perf_counter(), []
        try:
            # Popen whole: a Ctrl-C raised inside it would leave a child nobody ends (a session
            # of its own: its process group holds nothing of ours)
            STOP.run_whole(lambda: started.append(subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)))
            proc, = started
            # wait4 rather than proc.wait(): it also gives this one child's resource usage
            ended = reap(proc.pid, time.monotonic() + timeout)
        except BaseException as e:
            for proc in started:
                end_child(proc.pid)
                proc.returncode = -1  # reaped here: Popen must not wait for it again
            if isinstance(e, Interrupted):
                e.during = what  # for the message: what the user stopped
            raise
        if ended is None:
            end_child(proc.pid, stacks=True)
            proc.returncode = -1
            err.seek(0)
            raise BenchError(f'{what} hung: still running after {timeout:g} s, so it was '
                             f'killed with its processes; its stacks:\n{err.read()[-STACK_CHARS:]}')
        (status, usage), seconds = ended, time.perf_counter() - start
        # no loader workers outlive it: a row kills and reaps its own as it ends, and the kernel
        # kills any left when it dies (loader_workers: PR_SET_PDEATHSIG)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, seconds, usage.ru_maxrss / 1024, out.read(), err.read()


def run_row(name, data_dir, warmup, epochs, batch_size=BATCH_SIZE, resize=None,
            max_batches=None, timeout=CHILD_TIMEOUT, test_passes=False):
    """Measure one row in a fresh ``python -m gluon_softmax.bench --row`` process."""
    # -X faulthandler: a hung row prints its stacks on SIGABRT (see run_child)
    cmd = [sys.executable, '-X', 'faulthandler', '-m', 'gluon_softmax.bench', '--row', name,
           '--data-dir', data_dir, '--warmup', str(warmup), '--epochs', str(epochs),
           '--batch-size', str(batch_size)]
    if resize:
        cmd += ['--resize', str(resize)]
    if max_batches:
        cmd += ['--max-batches', str(max_batches)]
    if test_passes:
        cmd.append('--test-passes')
    print(f'measuring {name} (batch size {batch_size}, resize {resize or IMAGE_SIDE}) ...',
          file=sys.stderr, flush=True)
    status, _, _, out, err = run_child(cmd, f'row {name} (batch size {batch_size}, resize '
                                            f'{resize or IMAGE_SIDE})', timeout)
    if status != 0 or not out.strip():
        raise BenchError(f'row {name} exited with status {status}: {err.strip()[-2000:]}')
    return json.loads(out.strip().splitlines()[-1])


def run_cli(epochs, flags=(), launcher=(), timeout=CHILD_TIMEOUT):
    """Wall time, peak RSS and the history of one training CLI run with ``flags``.

    ``launcher`` (e.g. ``['-m', 'gluon_softmax.launch', '-n', '2', '--']``) runs the CLI
    as the workers of a job; the peak RSS is then the largest of its processes.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'run')
        train = ['-m', 'gluon_softmax.train', '--epochs', str(epochs), '--out', out,
                 '--seed', str(SEED), *flags]
        python = [sys.executable, '-X', 'faulthandler']
        cmd = [*python, *launcher, *python, *train] if launcher else [*python, *train]
        shown = ' '.join(['python', *launcher, 'python', *train] if launcher
                         else ['python', *train]).replace(out, '<tmpdir>')
        print(f'running {shown} ...', file=sys.stderr, flush=True)
        status, seconds, rss, _, err = run_child(cmd, shown, timeout)
        if status != 0:
            raise BenchError(f'{shown} exited with status {status}: {err.strip()[-2000:]}')
        with open(os.path.join(out, 'metrics.json'), encoding='utf-8') as f:
            history = json.load(f)['epochs']
    epoch_seconds = [entry['seconds'] for entry in history]
    return {'command': shown, 'epochs': epochs, 'returncode': status, 'wall_seconds': seconds,
            'peak_rss_mib': rss, 'test_acc': history[-1]['test_acc'],
            'train_loss': history[-1]['train_loss'], 'epoch_seconds': epoch_seconds,
            'seconds_per_epoch': statistics.median(epoch_seconds)}


# name -> (launcher arguments, CLI flags): the same recipe and seed on 1 device, 2 devices of
# one process, and 2 worker processes of a dist_sync job
SCALE_OUT = {
    '1 process, cpu': ((), ()),
    '1 process, cpu:0,cpu:1': ((), ('--ctx', 'cpu:0,cpu:1')),
    '2 workers + 1 server, dist_sync': (('-m', 'gluon_softmax.launch', '-n', '2', '-s', '1',
                                         '--'), ('--kvstore', 'dist_sync')),
}


def run_scale_out(epochs, timeout=CHILD_TIMEOUT):
    """The CLI on one device, on two devices and as two workers; one dict per form."""
    runs = []
    for name, (launcher, flags) in SCALE_OUT.items():
        runs.append({'name': name, **run_cli(epochs, flags, launcher, timeout)})
    base = runs[0]['seconds_per_epoch']
    for run in runs:
        run['time_vs_one_device'] = run['seconds_per_epoch'] / base
    return runs


def scale_out_table(runs):
    """The scale-out table: time per epoch against one device, and the final metrics."""
    header = ('form', 's/epoch (incl. test)', 'time vs 1 device', 'wall s', 'train loss',
              'test acc', 'peak RSS MiB (largest process)')
    return markdown_table(header, [
        (run['name'], f"{run['seconds_per_epoch']:.3f}", f"{run['time_vs_one_device']:.2f}x",
         f"{run['wall_seconds']:.1f}", f"{run['train_loss']:.4f}", f"{run['test_acc']:.4f}",
         f"{run['peak_rss_mib']:.0f}") for run in runs])


def package_version(name):
    """The installed version of distribution ``name``, or None (never imports it)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def machine_info():
    """What the numbers were measured on."""
    return {'platform': platform.platform(), 'python': platform.python_version(),
            'cpu_count': os.cpu_count(), 'cpu_model': cpu_model(),
            'load_average': ' '.join(f'{x:.2f}' for x in os.getloadavg()),
            'mxnet': package_version('mxnet'), 'numpy': onp.__version__,
            'torch': package_version('torch'),
            'date': datetime.datetime.now().isoformat(timespec='seconds')}


def run_all(args):
    """Measure every row, the scaling runs and the CLI; returns the results dict."""
    from gluon_softmax import data
    data_dir = data.find_data_dir(args.data_dir)
    warmup, epochs = args.warmup, args.epochs
    book_epochs = min(args.book_epochs, epochs)
    book_batches = QUICK_BOOK_BATCHES if args.quick else None
    results = {'machine': machine_info(),
               'settings': {'lr': LR, 'batch_size': BATCH_SIZE, 'seed': SEED, 'warmup': warmup,
                            'epochs': epochs, 'book_epochs': book_epochs,
                            'book_batches': book_batches, 'book_num_workers': BOOK_WORKERS,
                            'quick': args.quick, 'data_dir': data_dir,
                            'num_train': 60000, 'num_test': 10000}}
    timeout = args.timeout
    rows = [run_row('book', data_dir, warmup, book_epochs, max_batches=book_batches,
                    timeout=timeout)]
    # the test pass is timed (2 x max(epochs, 3) passes over the test set) for the concise row
    # only, whose line the report shows: in the book row those passes through its DataLoader
    # took more than its training
    rows += [run_row('concise', data_dir, warmup, epochs, timeout=timeout, test_passes=True)]
    rows += [run_row(name, data_dir, warmup, epochs, timeout=timeout)
             for name in ('scratch', 'pytorch', 'floor', 'floor-mxnet')]
    results['rows'] = add_ratios(rows)
    # the concise row already is batch 256 at 28 x 28: reuse it rather than measure twice
    concise = next(row for row in rows if row['name'] == 'concise')
    scaling = []
    batch_sizes = QUICK_SCALING_BATCH_SIZES if args.quick else SCALING_BATCH_SIZES
    for batch_size in batch_sizes:
        scaling.append(concise if batch_size == BATCH_SIZE else
                       run_row('concise', data_dir, warmup, epochs, batch_size=batch_size,
                               timeout=timeout))
    for side in SCALING_RESIZES:
        if side != IMAGE_SIDE:
            scaling.append(run_row('concise', data_dir, warmup, epochs, resize=side,
                                   timeout=timeout))
    results['scaling'] = scaling
    results['cli'] = run_cli(QUICK_CLI_EPOCHS if args.quick else CLI_EPOCHS, timeout=timeout)
    results['scale_out'] = run_scale_out(QUICK_SCALE_OUT_EPOCHS if args.quick
                                         else SCALE_OUT_EPOCHS, timeout)
    return results


def build_parser():
    """The benchmark's flags; ``--row`` and below are for the measuring subprocesses."""
    p = Parser(prog='python -m gluon_softmax.bench',
               description='Time softmax regression pipelines on Fashion-MNIST.')
    p.add_argument('--epochs', type=positive_int, default=10, metavar='N',
                   help='timed epochs per row (default: 10; --quick: 1)')
    p.add_argument('--warmup', type=non_negative_int, default=1, metavar='N',
                   help='untimed epochs before them (default: 1)')
    p.add_argument('--book-epochs', type=positive_int, default=3, metavar='N',
                   help='timed epochs of the slow book row, at most --epochs (default: 3)')
    p.add_argument('--out', default=DEFAULT_OUT, metavar='FILE',
                   help=f'JSON file for the results (default: {DEFAULT_OUT})')
    p.add_argument('--quick', action='store_true',
                   help='1 warm-up + 1 timed epoch, book row extrapolated from '
                        f'{QUICK_BOOK_BATCHES} batches, fewer batch sizes, 1-epoch CLI run')
    p.add_argument('--data-dir', metavar='DIR',
                   help='directory with the Fashion-MNIST files (default: found as the CLI does)')
    p.add_argument('--timeout', type=positive_float, default=CHILD_TIMEOUT, metavar='SECONDS',
                   help='how long each measurement process may run before it counts as hung: '
                        'it is then killed, with its stacks shown (default: '
                        f'{CHILD_TIMEOUT})')
    p.add_argument('--row', choices=tuple(ROWS), help=argparse.SUPPRESS)
    p.add_argument('--batch-size', type=positive_int, default=BATCH_SIZE, help=argparse.SUPPRESS)
    p.add_argument('--resize', type=positive_int, help=argparse.SUPPRESS)
    p.add_argument('--max-batches', type=positive_int, help=argparse.SUPPRESS)
    p.add_argument('--test-passes', action='store_true', help=argparse.SUPPRESS)
    return p


def main(argv=None):
    """Run the benchmark (or, with ``--row``, one measurement); returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.row:
        print(json.dumps(measure_row(args)), flush=True)
        return 0
    problem = out_problem(args.out)
    if problem:  # now, not after minutes of measuring
        print(f'error: --out{" " + args.out if args.out else ""}: {problem}', file=sys.stderr)
        return EXIT_USAGE
    if args.quick:
        args.warmup, args.epochs = 1, 1
    # Ctrl-C, SIGTERM: the running measurement and its processes are ended, and the
    # temporary run directories removed, as the Interrupted exception unwinds
    STOP.install()
    try:
        from gluon_softmax.data import DataError
        try:
            results = run_all(args)
        except (DataError, BenchError) as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    except Interrupted as e:
        during = getattr(e, 'during', None)
        doing = (f'while measuring {during}; it was stopped' if during else
                 'between measurements (loading the data set or starting the next one)')
        print(f'interrupted ({e}) {doing}; no results were written', file=sys.stderr)
        return 128 + e.signum
    print(report(results))
    try:
        write_results(args.out, results)
    except OSError as e:
        print(f'error: --out {args.out}: cannot write the results: {e.strerror or e}; the '
              'tables above have them', file=sys.stderr)
        return EXIT_USAGE
    print(f'\nwrote {args.out}')
    return 0


def out_problem(path):
    """Why the results cannot go to ``path`` (checked before anything is measured), or None."""
    if not path:
        return 'empty path'
    if os.path.isdir(path):
        return 'is a directory; give the name of the JSON file to write'
    if os.path.lexists(path) and not os.path.isfile(path):
        return 'exists and is not a regular file'
    directory = os.path.dirname(os.path.abspath(path))
    parent = directory
    while not os.path.lexists(parent):  # the directories --out needs are made at the end
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f'{parent} is not a directory'
    if not os.access(parent, os.W_OK | os.X_OK):
        return f'cannot write in {parent}'
    return None


def write_results(path, results):
    """Write ``results`` to ``path`` as JSON, whole or not at all (a temporary file renamed)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path),
                               suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=2)
            f.write('\n')
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


if __name__ == '__main__':
    sys.exit(main())
