"""The launcher: a real dist_sync job on loopback, every way it can end, and nothing left behind.

Worker commands are small scripts written to ``tmp_path`` that use MXNet's kvstore directly
and leave their results (and pids) in files the tests read.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gluon_softmax.scale.hosts import dmlc_env
from gluon_softmax.scale.launcher import service_command

import procs

LAUNCH = [sys.executable, '-m', 'gluon_softmax.launch']
RUN_TIMEOUT = 60  # seconds; a launcher that hangs fails the test instead of the whole run
# subprocess jobs and signals: the full suite only (make test-fast skips them)
pytestmark = pytest.mark.slow

PID_LINE = re.compile(r'^launch: (scheduler|server|worker) (\d+) pid (\d+)$', re.M)

# Connects to the job, then records its pid under its kvstore rank: the tests wait for these
# files to know every worker is inside the job.
CONNECT = '''
import os, signal, sys, time
import gluon_softmax  # first: it restores numpy.bool for MXNet (Python 3.12)
import mxnet as mx
out_dir = sys.argv[1]
kv = mx.kv.create('dist_sync')
kv.init(0, mx.nd.zeros(1))
with open(os.path.join(out_dir, f'pid-{kv.rank}'), 'w') as f:
    f.write(str(os.getpid()))
'''
SUM = CONNECT + '''
x, out = mx.nd.array([kv.rank + 1.0]), mx.nd.zeros(1)
kv.push(0, x)
kv.pull(0, out=out)
with open(os.path.join(out_dir, f'rank-{kv.rank}'), 'w') as f:
    f.write(f'{kv.rank} {kv.num_workers} {out.asnumpy()[0]}')
'''
# push/pull forever: once a peer is gone the next push blocks inside MXNet's C++ code, where
# a Python SIGTERM handler never runs; ignoring SIGTERM makes that explicit.
SPIN = CONNECT + '''
signal.signal(signal.SIGTERM, signal.SIG_IGN)
out = mx.nd.zeros(1)
while True:
    kv.push(0, mx.nd.ones(1))
    kv.pull(0, out=out)
    out.wait_to_read()
    time.sleep(0.05)
'''
# The first worker to claim the flag file exits 3 before touching the kvstore; the other
# blocks in kv.init waiting for its peer, forever.
FAIL_EARLY = '''
import os, sys
import gluon_softmax  # first: it restores numpy.bool for MXNet (Python 3.12)
import mxnet as mx
try:
    os.close(os.open(os.path.join(sys.argv[1], 'failed'), os.O_CREAT | os.O_EXCL))
except FileExistsError:
    mx.kv.create('dist_sync').init(0, mx.nd.zeros(1))
else:
    sys.exit(3)
'''
# Inside the job, rank 1 leaves with status 3 at once (os._exit: a sys.exit would wait in the
# kvstore's shutdown barrier for rank 0, which never comes), rank 0 spins.
FAIL_CONNECTED = CONNECT + '''
if kv.rank == 1:
    os._exit(3)
out = mx.nd.zeros(1)
while True:
    kv.push(0, mx.nd.ones(1))
    kv.pull(0, out=out)
    out.wait_to_read()
'''
HANG = '''
import time
time.sleep(60)
'''
# Waits in Python (not in MXNet) so that the forwarded signal runs the handler; SIGNUM is
# replaced by the signal's name.
ON_SIGNAL = CONNECT + '''
def on_signal(signum, frame):
    open(os.path.join(out_dir, f'interrupted-{kv.rank}'), 'w').close()
    os._exit(128 + signum)
signal.signal(signal.SIGNUM, on_signal)
while True:
    time.sleep(0.05)
'''


def script(tmp_path, source):
    """Write ``source`` to ``tmp_path/worker.py``; the worker command that runs it."""
    path = tmp_path / 'worker.py'
    path.write_text(textwrap.dedent(source))
    return [sys.executable, str(path), str(tmp_path)]


def child_env():
    """The test process's environment, with one OpenMP thread per process (CI has few cores)."""
    return {**os.environ, 'OMP_NUM_THREADS': '1'}


def launch(*args, timeout=RUN_TIMEOUT):
    """Run the launcher to the end; returns (CompletedProcess, seconds it took)."""
    start = time.monotonic()
    # a hung launcher fails the test with its stacks; then what it announced is killed too, as
    # a broken launcher must not leave the test run busy
    result = procs.run([*LAUNCH, *args], timeout=timeout, env=child_env(),
                       on_hang=kill_leftovers)
    return result, time.monotonic() - start


def launched_pids(stderr):
    """``{(role, index): pid}`` from the launcher's ``launch: <role> <i> pid <PID>`` lines."""
    return {(role, int(i)): int(pid) for role, i, pid in PID_LINE.findall(stderr)}


def alive(pid):
    """True if ``pid`` still exists, even as a zombie nobody reaped."""
    return os.path.exists(f'/proc/{pid}')


def kill_leftovers(stderr):
    """SIGKILL the announced processes that still exist; returns their pids."""
    left = [pid for pid in launched_pids(stderr).values() if alive(pid)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def assert_all_gone(stderr, num_workers=2, num_servers=1):
    """Every process the launcher announced was started, and none of them exists any more."""
    pids = launched_pids(stderr)
    expected = {('scheduler', 0)} | {('server', i) for i in range(num_servers)} \
        | {('worker', i) for i in range(num_workers)}
    assert set(pids) == expected, stderr
    assert kill_leftovers(stderr) == [], stderr


def error_lines(stderr):
    """The launcher's ``error:`` lines."""
    return [line for line in stderr.splitlines() if line.startswith('error:')]


def wait_for_files(paths, seconds=30):
    """Wait until every path exists; fails the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f'not all of {paths} appeared in {seconds} s'
        time.sleep(0.05)


@pytest.fixture
def background():
    """Start the launcher without waiting: ``background(*args)`` -> Popen, SIGTERMed if left."""
    started = []

    def start(*args):
        proc = procs.start([*LAUNCH, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=child_env())
        started.append(proc)
        return proc
    yield start
    for proc in started:  # only if a test failed half-way: the launcher should clean up after it
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                procs.abort(proc)


def test_dmlc_env_loopback():
    env = dmlc_env('worker', 4, 2, 9091)
    assert env == {'DMLC_ROLE': 'worker', 'DMLC_PS_ROOT_URI': '127.0.0.1',
                   'DMLC_PS_ROOT_PORT': '9091', 'DMLC_NUM_WORKER': '4',
                   'DMLC_NUM_SERVER': '2', 'DMLC_NODE_HOST': '127.0.0.1',
                   'DMLC_INTERFACE': 'lo'}
    assert all(isinstance(v, str) for v in env.values())  # os.environ takes only strings
    for role in ('scheduler', 'server'):
        assert dmlc_env(role, 4, 2, 9091) == {**env, 'DMLC_ROLE': role}
    other = dmlc_env('server', 1, 1, 5000, host='10.0.0.2', interface='eth0')
    assert (other['DMLC_PS_ROOT_URI'], other['DMLC_NODE_HOST'], other['DMLC_INTERFACE'],
            other['DMLC_PS_ROOT_PORT']) == ('10.0.0.2', '10.0.0.2', 'eth0', '5000')


def test_a_scheduler_that_cannot_find_mxnet_says_so_in_one_line():
    # -S: without site-packages, as on a host whose interpreter has no MXNet
    result = subprocess.run([sys.executable, '-S', '-c', service_command('scheduler')[2]],
                            capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            env={**child_env(), 'DMLC_ROLE': 'scheduler'})
    assert (result.returncode, result.stderr) == (
        1, 'scheduler: cannot find MXNet (pip install mxnet)\n')


def test_two_workers_sum_their_pushes(tmp_path):
    result, _ = launch('-n', '2', '--grace', '5', '--', *script(tmp_path, SUM))
    assert result.returncode == 0, result.stderr
    # No error and no warning: the scheduler and server also left on their own.
    assert [line for line in result.stderr.splitlines()
            if not PID_LINE.match(line)] == [], result.stderr
    ranks = sorted((tmp_path / f'rank-{r}').read_text().split() for r in range(2))
    # rank r pushed r + 1: after the sync both workers pull 1 + 2.
    assert ranks == [['0', '2', '3.0'], ['1', '2', '3.0']]
    assert_all_gone(result.stderr)


def test_two_servers(tmp_path):
    result, _ = launch('-n', '2', '-s', '2', '--grace', '5', '--', *script(tmp_path, SUM))
    assert result.returncode == 0, result.stderr
    for rank in range(2):
        assert (tmp_path / f'rank-{rank}').read_text().split()[2] == '3.0'
    assert_all_gone(result.stderr, num_servers=2)


def test_killed_worker_stops_the_job(tmp_path, background):
    grace = 2
    proc = background('-n', '2', '--grace', str(grace), '--', *script(tmp_path, SPIN))
    wait_for_files([tmp_path / 'pid-0', tmp_path / 'pid-1'])
    victim = int((tmp_path / 'pid-1').read_text())
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = procs.communicate(proc, RUN_TIMEOUT)
    # The survivor ignores SIGTERM, so it only goes at the SIGKILL after the grace period.
    assert grace <= time.monotonic() - killed_at < grace + 5, stderr
    assert proc.returncode == 128 + signal.SIGKILL, stderr
    pids = launched_pids(stderr)
    name = next(f'{role} {i}' for (role, i), pid in pids.items() if pid == victim)
    assert error_lines(stderr) == [
        f'error: {name} (pid {victim}) was killed by SIGKILL; stopped the others'], stderr
    assert name.startswith('worker')
    assert_all_gone(stderr)


@pytest.mark.parametrize('source', [FAIL_EARLY, FAIL_CONNECTED], ids=['early', 'connected'])
def test_failing_worker_status_is_the_exit_status(tmp_path, source):
    result, seconds = launch('-n', '2', '--grace', '2', '--', *script(tmp_path, source))
    assert result.returncode == 3, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and re.fullmatch(
        r'error: worker [01] \(pid \d+\) exited with status 3; stopped the others', lines[0]), \
        result.stderr
    assert seconds < 20
    assert_all_gone(result.stderr)


def test_timeout_stops_everything(tmp_path):
    result, seconds = launch('-n', '2', '--timeout', '3', '--grace', '1', '--',
                             *script(tmp_path, HANG))
    assert result.returncode == 124, result.stderr
    assert 3 <= seconds < 8
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith('error: timed out after 3 s'), result.stderr
    assert_all_gone(result.stderr)


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_is_forwarded_to_workers(tmp_path, background, signum):
    source = ON_SIGNAL.replace('SIGNUM', signum.name)
    proc = background('-n', '2', '--grace', '5', '--', *script(tmp_path, source))
    wait_for_files([tmp_path / 'pid-0', tmp_path / 'pid-1'])
    sent_at = time.monotonic()
    proc.send_signal(signum)
    _, stderr = procs.communicate(proc, RUN_TIMEOUT)
    assert proc.returncode == 128 + signum, stderr
    # Both workers ran their own handler: the launcher forwarded the very same signal.
    assert (tmp_path / 'interrupted-0').exists() and (tmp_path / 'interrupted-1').exists()
    assert time.monotonic() - sent_at < 5  # the workers left at once: no grace period spent
    assert error_lines(stderr) == [
        f'error: interrupted by {signum.name}; stopped all 4 processes'], stderr
    assert_all_gone(stderr)


def test_lingering_services_are_stopped_with_a_warning(tmp_path):
    # Workers that never create a kvstore: the scheduler keeps waiting for them to register.
    result, seconds = launch('-n', '1', '--grace', '1', '--', sys.executable, '-c', 'pass')
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if 'warning' in line]
    assert [w.split()[2] for w in warnings] == ['scheduler', 'server'], result.stderr
    assert all(w.startswith('launch: warning: ') for w in warnings)
    assert seconds < 8
    assert_all_gone(result.stderr, num_workers=1)


@pytest.mark.parametrize('args, needle', [
    (['-n', '0', '--', 'python'], '-n/--num-workers'),
    (['-n', 'two', '--', 'python'], '-n/--num-workers'),
    (['-n', '2', '-s', '0', '--', 'python'], '-s/--num-servers'),
    (['-n', '2'], 'no worker command'),
    (['-n', '2', '--'], 'no worker command'),
    (['--', 'python'], '-n/--num-workers'),
    (['-n', '2', '--timeout', '-1', '--', 'python'], '--timeout'),
    (['-n', '2', '--timeout', 'nan', '--', 'python'], '--timeout'),
    (['-n', '2', '--grace', '-1', '--', 'python'], '--grace'),
    (['-n', '2', 'stray', '--', 'python'], 'stray'),
    (['-n', '2', '--', 'no-such-command-gluon-softmax'], "'no-such-command-gluon-softmax'"),
])
def test_usage_errors(args, needle):
    result, _ = launch(*args)
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and result.stderr.startswith('error: '), \
        result.stderr
    assert needle in result.stderr
    assert launched_pids(result.stderr) == {}  # refused before anything started


@pytest.mark.parametrize('content, mode, started', [
    (b'\x7fELF garbage', 0o755, {('scheduler', 0), ('server', 0)}),  # only exec() can tell
    (b'#!/bin/sh\n', 0o644, set()),  # refused before anything starts
], ids=['exec-format', 'not-executable'])
def test_command_that_cannot_run(tmp_path, content, mode, started):
    program = tmp_path / 'program'
    program.write_bytes(content)
    program.chmod(mode)
    result, seconds = launch('-n', '2', '--', str(program))
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and str(program) in lines[0], result.stderr
    assert 'Traceback' not in result.stderr
    assert set(launched_pids(result.stderr)) == started
    assert kill_leftovers(result.stderr) == []
    assert seconds < 8


def test_a_killed_launcher_takes_its_processes_with_it(tmp_path, background):
    proc = background('-n', '2', '--grace', '5', '--', *script(tmp_path, SPIN))
    wait_for_files([tmp_path / 'pid-0', tmp_path / 'pid-1'])
    proc.kill()  # SIGKILL: no handler, no cleanup of its own
    _, stderr = procs.communicate(proc, RUN_TIMEOUT)
    pids = launched_pids(stderr)
    assert len(pids) == 4, stderr
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids.values() if alive(pid)]
