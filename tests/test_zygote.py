"""A program forked from the test zygote (zygote.py) behaves as one started by a fresh
interpreter: the same facts about itself, the same output and the same exit status."""
import os
import signal
import subprocess
import sys

import pytest

import procs
import zygote

# what a program can see of how it was started, printed as one line of repr()
PROBE = r'''
import atexit, faulthandler, json, os, signal, sys, threading
import numpy
with open('/proc/self/cmdline', 'rb') as f:
    cmdline = [a.decode() for a in f.read().split(b'\0') if a]
facts = {
    'argv': sys.argv, 'path0': sys.path[0], 'cwd': os.getcwd(), 'env': os.environ.get('PROBE'),
    'cmdline_ends': cmdline[-len(sys.argv) + 1:] if len(sys.argv) > 1 else [],
    'stdin': sys.stdin.read(), 'session_leader': os.getsid(0) == os.getpid(),
    'sigint': signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    'sigpipe': signal.getsignal(signal.SIGPIPE), 'sigchld': signal.getsignal(signal.SIGCHLD),
    'faulthandler': faulthandler.is_enabled(), 'stdout_line_buffered': sys.stdout.line_buffering,
    'stderr_line_buffered': sys.stderr.line_buffering, 'encoding': sys.stdout.encoding,
    'main': __name__,
}
print(repr(sorted(facts.items())))
print(numpy.random.randint(1 << 30), file=sys.stderr)  # seeded from the OS: differs per run
atexit.register(lambda: print('atexit ran'))
threading.Thread(target=lambda: (__import__('time').sleep(0.2), print('thread joined'))).start()
how = sys.argv[1]
if how == 'exit':
    sys.exit(int(sys.argv[2]))
if how == 'message':
    sys.exit('a message for stderr')
if how == 'raise':
    raise ValueError('uncaught')
if how == 'interrupt':
    raise KeyboardInterrupt
'''


@pytest.fixture
def probe(tmp_path):
    path = tmp_path / 'probe.py'
    path.write_text(PROBE)
    return path


def run_both(cmd, tmp_path, **kwargs):
    """The completed program started fresh and forked from the zygote."""
    env = {**os.environ, 'PROBE': 'value'}
    results = []
    for fresh in (True, False):
        proc = procs.start(cmd, env=env, fresh=fresh, cwd=tmp_path, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        assert isinstance(proc, zygote.ForkedPopen) != fresh
        out, err = procs.communicate(proc, 60, input='some input\n')
        results.append((proc.returncode, out, err.splitlines()))
    return results


@pytest.mark.parametrize('how, status', [('exit', 0), ('exit', 3), ('message', 1), ('raise', 1),
                                         ('interrupt', -signal.SIGINT)])
def test_a_forked_program_is_a_fresh_one(probe, tmp_path, how, status):
    (fresh_status, fresh_out, fresh_err), (fork_status, fork_out, fork_err) = run_both(
        [sys.executable, probe, how, '3' if status == 3 else '0'], tmp_path)
    assert fresh_status == fork_status == status
    assert fork_out == fresh_out  # every fact, 'thread joined' and 'atexit ran' in order
    assert fresh_out.endswith('thread joined\natexit ran\n')
    assert fresh_err[0] != fork_err[0]  # NumPy's global generator seeded anew
    assert fork_err[1:] == fresh_err[1:]  # the same traceback or message, if any


@pytest.mark.parametrize('how, status', [('exit', 3), ('raise', 1), ('interrupt', -signal.SIGINT)])
def test_a_forked_code_program_is_a_fresh_one(tmp_path, how, status):
    (fresh_status, fresh_out, fresh_err), (fork_status, fork_out, fork_err) = run_both(
        [sys.executable, '-c', PROBE, how, '3'], tmp_path, code_may_fork=True)
    assert fresh_status == fork_status == status
    assert fork_out == fresh_out and "('main', '__main__')" in fork_out
    assert "('argv', ['-c', " in fork_out and "('path0', '')" in fork_out
    assert fork_err[1:] == fresh_err[1:]


def test_a_package_module_runs_as_with_python_m(tmp_path):
    (fresh, fork) = run_both([sys.executable, '-m', 'gluon_softmax.train', '--epochs', 'x'],
                             tmp_path)
    assert fresh == fork and fresh[0] == 2 and fresh[2][0].startswith('error: ')


@pytest.mark.parametrize('cmd, kwargs, env', [
    (['-c', 'pass'], {}, {}),                           # code: only when the caller allows it
    (['-X', 'faulthandler', '-m', 'gluon_softmax.train'], {}, {}),   # interpreter flags
    (['-m', 'json.tool'], {}, {}),                                   # not the package
    (['-m', 'gluon_softmax.train'], {'start_new_session': False}, {}),
    (['-m', 'gluon_softmax.train'], {'preexec_fn': os.getpid}, {}),
    (['-m', 'gluon_softmax.train'], {}, {'OMP_NUM_THREADS': 'abc'}),  # read as MXNet loads
    (['-m', 'gluon_softmax.train'], {}, {'PYTHONPATH': '/somewhere'}),
    (['-m', 'gluon_softmax.train'], {}, {'PLOTLY_RENDERER': 'json'}),  # read as Plotly loads
], ids=['-c', '-X', 'stdlib', 'same-session', 'preexec', 'omp', 'pythonpath', 'plotly'])
def test_programs_that_would_start_differently_start_fresh(cmd, kwargs, env):
    kwargs = {'start_new_session': True, **kwargs}
    assert zygote.eligible([sys.executable, '-m', 'gluon_softmax.train'], dict(os.environ),
                           {'start_new_session': True})
    assert not zygote.eligible([sys.executable, *cmd], {**os.environ, **env}, kwargs)


def test_a_terminal_starts_fresh():
    leader, follower = os.openpty()
    try:
        assert not zygote.eligible([sys.executable, '-m', 'gluon_softmax.train'],
                                   dict(os.environ), {'start_new_session': True,
                                                      'stdout': follower})
    finally:
        os.close(leader)
        os.close(follower)


def test_a_killed_fork_reports_its_signal(probe, tmp_path):
    proc = procs.start([sys.executable, '-m', 'gluon_softmax.train', '--help'], cwd=tmp_path,
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert isinstance(proc, zygote.ForkedPopen)
    proc.kill()
    procs.communicate(proc, 30)
    assert proc.returncode in (-signal.SIGKILL, 0)  # 0: it printed its help first


def test_a_variable_set_after_the_zygote_started_makes_a_fresh_program(monkeypatch):
    zygote.zygote()  # started with this process's environment as it is now
    monkeypatch.setenv('MXNET_ENGINE_TYPE', 'NaiveEngine')  # read as MXNet loads
    assert not zygote.eligible([sys.executable, '-m', 'gluon_softmax.train'], dict(os.environ),
                               {'start_new_session': True})
