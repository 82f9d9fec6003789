"""DataLoader worker processes that die or hang, and the benchmark's children (issues 18, 22).

Every wait here is bounded by the test itself (a subprocess timeout, a polled
deadline): with the old multiprocessing pool these runs hung, and a hang must
fail the test, never stall the suite.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as onp
import pytest

from gluon_softmax import bench, data
from gluon_softmax.loader_workers import WorkerDataLoader

from mxnet import gluon  # noqa: E402  (after gluon_softmax: its NumPy shim comes first)

import procs  # noqa: E402

BOUND = 60  # seconds for a run to end after what ends it, on a busy 2-core machine
RUN_TIMEOUT = 300  # seconds for a whole CLI run or benchmark stage


# ---------------------------------------------------------------- processes

def state(pid):
    """The process's state letter from /proc (``'Z'`` a zombie), or None when it is gone."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b')') + 2:].split()[0].decode()


def alive(pids):
    """Those of ``pids`` that still run (zombies count as gone: they only wait to be reaped)."""
    return [pid for pid in pids if state(pid) not in (None, 'Z')]


def kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_program(source, timeout=BOUND):
    """Run Python ``source`` (gluon_softmax imported first); its last stdout line as JSON.

    A fork of the tests' zygote: the program tests the loader, not what importing does."""
    program = 'import gluon_softmax\n' + textwrap.dedent(source)
    result = procs.run([sys.executable, '-c', program], timeout=timeout, code_may_fork=True,
                       what='the loader program')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the loader itself

def tiny_dataset(directory):
    trans = gluon.data.vision.transforms.ToTensor()
    return data.FashionMNIST(directory, train=True, verify=False).transform_first(trans)


def batches(loader):
    return [(X.asnumpy(), y.asnumpy()) for X, y in loader]


def three_epochs(loader):
    """A whole epoch, one left after its first batch (as the benchmark's islice leaves
    them), and another whole one."""
    first = batches(loader)
    left = [tuple(a.asnumpy() for a in next(iter(loader)))]
    return first + left + batches(loader)


def test_worker_loader_gives_the_book_loaders_batches(tiny_idx_dir):
    dataset = tiny_dataset(tiny_idx_dir)
    onp.random.seed(7)
    expected = three_epochs(gluon.data.DataLoader(dataset, 5, shuffle=True))
    onp.random.seed(7)
    loader = WorkerDataLoader(dataset, 5, shuffle=True, num_workers=2)
    pids = [worker.pid for worker in loader._workers.workers]  # pylint: disable=protected-access
    try:
        # the same permutations drawn, and a left epoch's prefetched batches dropped
        got = three_epochs(loader)
    finally:
        loader.close()
    assert len(got) == len(expected) == 3 + 1 + 3
    for (X, y), (X_want, y_want) in zip(got, expected):
        onp.testing.assert_array_equal(X, X_want)
        onp.testing.assert_array_equal(y, y_want)
    assert alive(pids) == [], 'close() left worker processes running'


def test_an_error_in_a_worker_reaches_the_caller(tiny_idx_dir):
    def broken(image):
        raise ValueError('no such image')
    loader = WorkerDataLoader(data.FashionMNIST(tiny_idx_dir, verify=False).transform_first(
        broken), 4, num_workers=2)
    try:
        with pytest.raises(ValueError, match='no such image'):
            next(iter(loader))
    finally:
        loader.close()


KILL_A_WORKER = '''
    import json, os, signal
    from mxnet import gluon, npx
    npx.set_np()
    from gluon_softmax import data
    from gluon_softmax.loader_workers import LoaderWorkerError, WorkerDataLoader
    dataset = data.FashionMNIST({directory!r}, verify=False).transform_first(
        gluon.data.vision.transforms.ToTensor())
    # a timeout far beyond the test's bound: only seeing the death can end the epoch in time
    loader = WorkerDataLoader(dataset, 1, num_workers=2, timeout=3600)
    pids = [worker.pid for worker in loader._workers.workers]
    epoch = iter(loader)
    next(epoch)
    os.kill(pids[1], signal.{signal})
    {after}
    try:
        for _ in epoch:
            pass
        error = None
    except LoaderWorkerError as e:
        error = str(e)
    print(json.dumps({{'error': error, 'pids': pids}}))
'''


def test_a_worker_killed_mid_epoch_raises_at_once_and_every_worker_is_ended(tiny_idx_dir):
    result = run_program(KILL_A_WORKER.format(directory=str(tiny_idx_dir), signal='SIGKILL',
                                              after=''))
    assert result['error'] is not None, 'the epoch went on without the dead worker\'s batch'
    assert result['error'].startswith(f"DataLoader worker 2 of 2 (pid {result['pids'][1]}) "
                                      'died (killed by SIGKILL)'), result['error']
    assert alive(result['pids']) == []


def test_a_stopped_worker_counts_as_hung_after_the_timeout(tiny_idx_dir):
    program = KILL_A_WORKER.format(directory=str(tiny_idx_dir), signal='SIGSTOP',
                                   after='loader._workers.timeout = 1\n'
                                         '    for w in loader._workers.workers: '
                                         'w.sock.settimeout(1)')
    result = run_program(program)
    assert result['error'] is not None
    assert 'hung' in result['error'] and f"pid {result['pids'][1]}" in result['error'], result
    assert alive(result['pids']) == [], 'a stopped worker was left behind'


# ---------------------------------------------------------------- the training CLI

def pids_with(token):
    """The pids whose command line holds ``token`` (a forked worker keeps its parent's)."""
    found = []
    for name in os.listdir('/proc'):
        try:
            with open(f'/proc/{name}/cmdline', 'rb') as f:
                if name.isdigit() and token.encode() in f.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def children(pid):
    """The pids whose parent is ``pid``."""
    found = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open(f'/proc/{name}/stat', 'rb') as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b')') + 2:].split()[1]) == pid:
                found.append(int(name))
    return found


def in_creation_order(pids, pid_max=None):
    """``pids`` given out close together, in the order the kernel gave them: ascending, but
    pids wrap past ``/proc/sys/kernel/pid_max`` (CI saw worker 2 get pid 306, below worker 1),
    so the list starts after the widest gap on the circle of pids."""
    if pid_max is None:
        with open('/proc/sys/kernel/pid_max') as f:
            pid_max = int(f.read())
    pids = sorted(pids)
    if len(pids) < 2:
        return pids
    gaps = [(b - a) % pid_max for a, b in zip(pids, pids[1:] + pids[:1])]
    first = (gaps.index(max(gaps)) + 1) % len(pids)
    return pids[first:] + pids[:first]


def test_pids_in_creation_order_across_the_wrap():
    assert in_creation_order([306, 32700, 310, 32701], pid_max=32768) == [32700, 32701, 306, 310]
    assert in_creation_order([5000, 4990, 5003, 4994], pid_max=32768) == [4990, 4994, 5000, 5003]
    assert in_creation_order([301, 32767], pid_max=32768) == [32767, 301]


def descendants(pid):
    """The pids under ``pid``: its children, theirs, and so on."""
    found = children(pid)
    for child in list(found):
        found += descendants(child)
    return found


class Background:
    """A process in its own session, its stdout lines collected; SIGKILLed with its children
    (by pid) if the test leaves it running."""

    def __init__(self, cmd, stderr_path, **kwargs):
        self.stderr_path = stderr_path
        with open(stderr_path, 'w') as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True, **kwargs)
        self.lines, self.seen = [], set()
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout),
                                       daemon=True)
        self.reader.start()

    def note_children(self):
        self.seen.update(children(self.proc.pid))
        return self.seen

    @property
    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def finish(self, timeout=BOUND):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cleanup()
            pytest.fail(f'hang: still running {timeout} s later; stderr: {self.stderr!r}')
        self.reader.join(timeout=10)
        return self.proc.returncode

    def cleanup(self):
        kill([self.proc.pid, *self.note_children()])
        self.proc.wait(timeout=10)


@pytest.fixture
def background():
    started = []

    def start(*args, **kwargs):
        started.append(Background(*args, **kwargs))
        return started[-1]
    yield start
    for process in started:
        if process.proc.poll() is None or alive(process.seen):
            process.cleanup()


@pytest.mark.slow
@pytest.mark.integration
def test_cli_run_whose_loader_worker_is_killed_ends_with_one_error_line(
        tmp_path, real_data_dir, background):
    out = tmp_path / 'run'
    run = background([sys.executable, '-m', 'gluon_softmax.train', '--loader', 'dataloader',
                      '--loader-workers', '2', '--epochs', '2', '--seed', '0',
                      '--data-dir', real_data_dir, '--out', str(out)], tmp_path / 'err')
    procs.wait_until(lambda: any(line.startswith('epoch 1/2') for line in run.lines)
               or run.proc.poll() is not None, RUN_TIMEOUT, 'epoch 1')
    workers = in_creation_order(run.note_children())  # the training loader's two first
    assert run.proc.poll() is None and len(workers) == 4, (workers, run.stderr)
    # as the OOM killer would: one worker of the training loader, in the middle of epoch 2
    os.kill(workers[0], signal.SIGKILL)
    status = run.finish()
    lines = run.stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1, run.stderr
    assert lines[0].startswith(f'error: DataLoader worker 1 of 2 (pid {workers[0]}) died '
                               '(killed by SIGKILL)'), lines[0]
    assert 'the checkpoint of epoch 1 is kept; continue with: ' in lines[0]
    with open(out / 'metrics.json', encoding='utf-8') as f:
        metrics = json.load(f)
    assert metrics['status'] == 'failed' and len(metrics['epochs']) == 1
    assert 'killed by SIGKILL' in metrics['ended']['error']
    assert (out / 'checkpoint.npz').exists()
    time.sleep(0.5)  # the workers of the test loader are reaped by the CLI as it leaves
    assert alive([run.proc.pid, *workers]) == [], 'processes left behind'


# ---------------------------------------------------------------- the benchmark

HUNG_ROW = '''
import gluon_softmax, sys, time
from mxnet import gluon, npx
npx.set_np()
from gluon_softmax import data
from gluon_softmax.loader_workers import WorkerDataLoader
dataset = data.FashionMNIST(sys.argv[1], verify=False).transform_first(
    gluon.data.vision.transforms.ToTensor())
loader = WorkerDataLoader(dataset, 4, num_workers=2)
next(iter(loader))
print('ready', flush=True)
time.sleep(3600)
'''


@pytest.mark.slow
def test_a_hung_measurement_is_killed_with_its_stacks_and_its_loader_workers(tiny_idx_dir):
    cmd = [sys.executable, '-X', 'faulthandler', '-c', HUNG_ROW, str(tiny_idx_dir)]
    with pytest.raises(bench.BenchError) as info:
        # 15 s: long enough to be asleep, with its workers (measured: 'ready' after 7.5-8.2 s
        # with this machine's load average at 9; under 3 s when it is quiet)
        bench.run_child(cmd, 'row sleepy', timeout=15)
    message = str(info.value)
    assert message.startswith('row sleepy hung: still running after 15 s'), message
    assert 'most recent call first' in message and 'line 12' in message, message
    assert alive(pids_with(str(tiny_idx_dir))) == [], ('the hung row or its loader workers '
                                                       'were left running')


# a row whose worker holds 1 GiB: killed, it takes a while to exit (73 ms measured here), its
# parent, a small process, much less
ROW_WITH_A_LARGE_WORKER = '''
import os, time
if os.fork() == 0:
    held = bytearray(1 << 30)
    for i in range(0, len(held), 4096):
        held[i] = 1
    print('ready', os.getpid(), flush=True)
    time.sleep(3600)
time.sleep(3600)
'''


def test_a_measurement_ended_by_the_benchmark_has_no_worker_left_once_it_returns():
    # what a signal to the benchmark does to the row it is measuring (run_child's except)
    proc = procs.start([sys.executable, '-c', ROW_WITH_A_LARGE_WORKER], stdout=subprocess.PIPE,
                       text=True)
    worker = int(procs.read_until(proc, 'ready')[-1].split()[1])
    bench.end_child(proc.pid)
    proc.returncode = -1  # reaped by end_child
    assert alive([proc.pid, worker]) == []
    proc.stdout.close()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_a_signal_to_the_benchmark_ends_its_row_and_the_rows_loader_workers(
        tmp_path, real_data_dir, background, signum):
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    run = background([sys.executable, '-m', 'gluon_softmax.bench', '--quick', '--data-dir',
                      real_data_dir, '--out', str(tmp_path / 'bench.json')], tmp_path / 'err',
                     env={**os.environ, 'TMPDIR': str(tmp)})
    rows = []

    def book_row_with_workers():
        rows[:] = children(run.proc.pid)
        # the book row and the 2 x 4 workers of its two loaders
        return (len(rows) == 1 and len(descendants(rows[0])) >= 8
                or run.proc.poll() is not None)
    procs.wait_until(book_row_with_workers, RUN_TIMEOUT, 'the book row and its loader workers')
    processes = [*rows, *descendants(rows[0])]
    os.kill(run.proc.pid, signum)
    status = run.finish()
    assert status == 128 + signum, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f'interrupted ({signal.Signals(signum).name})'), run.stderr
    assert 'Traceback' not in run.stderr
    assert alive(processes) == [], 'the row or its loader workers outlived the benchmark'
    assert os.listdir(tmp) == [] and not (tmp_path / 'bench.json').exists()


CLI_STAGE = '''
import gluon_softmax, sys
from gluon_softmax import bench
from gluon_softmax.run.signals import Interrupted, StopOnSignal
StopOnSignal().install()  # as bench.main does
try:
    bench.run_cli(3, ('--data-dir', sys.argv[1]))
except Interrupted as e:
    sys.exit(128 + e.signum)
'''


@pytest.mark.slow
@pytest.mark.integration
def test_a_signal_during_the_benchmarks_cli_run_removes_its_temporary_run(
        tmp_path, real_data_dir, background):
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    run = background([sys.executable, '-c', CLI_STAGE, real_data_dir], tmp_path / 'err',
                     env={**os.environ, 'TMPDIR': str(tmp)})

    def first_epoch_saved():
        run.note_children()
        return (any(os.path.exists(os.path.join(tmp, d, 'run', 'checkpoint.npz'))
                    for d in os.listdir(tmp)) or run.proc.poll() is not None)
    procs.wait_until(first_epoch_saved, RUN_TIMEOUT, 'the first epoch of the CLI run')
    cli = run.note_children()
    assert run.proc.poll() is None and cli, run.stderr
    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.finish() == 143, run.stderr
    assert alive(cli) == [], 'the CLI run outlived the benchmark'
    assert os.listdir(tmp) == [], 'a temporary run was left behind'


def test_a_signal_during_a_workers_fork_is_raised_after_it_not_lost():
    # a handler that raises inside os.fork's hooks has its exception printed and dropped: the
    # run would go on as if never signalled
    from gluon_softmax import loader_workers

    class Stop(Exception):
        pass

    def handler(signum, frame):
        raise Stop(signum)
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(Stop):
            with loader_workers._handlers_deferred():  # pylint: disable=protected-access
                signal.raise_signal(signal.SIGUSR1)
                reached_the_end_of_the_block = True
        assert reached_the_end_of_the_block
        assert signal.getsignal(signal.SIGUSR1) is handler
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.slow
@pytest.mark.integration
def test_a_tiny_dev_shm_ends_the_run_with_one_error_line(tmp_path, real_data_dir):
    # a 64 KiB /dev/shm in a mount namespace of the run's own: a worker dies of SIGBUS as it
    # writes its first batch (256 images of 28 x 28 float32 take 784 KiB)
    out = tmp_path / 'run'
    train = [sys.executable, '-m', 'gluon_softmax.train', '--loader', 'dataloader',
             '--loader-workers', '2', '--epochs', '1', '--seed', '0', '--data-dir',
             real_data_dir, '--out', str(out)]
    script = 'mount -t tmpfs -o size=64k tmpfs /dev/shm && exec "$@"'
    probe = subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c', script,
                            'sh', 'true'], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f'cannot mount a private /dev/shm here: {probe.stderr.decode().strip()}')
    try:
        result = subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c', script,
                                 'sh', *train], capture_output=True, text=True,
                                timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        kill(pids_with(str(out)))
        pytest.fail(f'hang: no end within {RUN_TIMEOUT} s; stderr: {e.stderr!r}')
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert 'died (killed by SIGBUS)' in lines[0] and '/dev/shm' in lines[0], lines[0]
    assert lines[0].endswith('; no epoch was saved'), lines[0]
    with open(out / 'metrics.json', encoding='utf-8') as f:
        assert json.load(f)['status'] == 'failed'
    assert alive(pids_with(str(out))) == []
