"""Child processes for tests: every wait has a bound, and a child that outlives it fails the test
with the Python stack of every thread of every process it started.

Each child starts in its own session (so its process group holds it and whatever it forks, e.g.
DataLoader workers) with ``PYTHONFAULTHANDLER=1``. When the bound expires the group gets SIGABRT,
on which faulthandler prints every thread's stack to stderr; then the group is SIGKILLed and the
test fails naming what hung, with the end of its stderr. The bounds are hang detectors, generous
next to the normal durations, never timing assertions.
"""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import zygote

# under pytest-timeout's 120 s per test (setup.cfg), so the child's stacks are what a hang shows
HANG_SECONDS = 100
# the few runs over the whole data set that take a minute or more on a quiet 2-core machine
# (10 and 50 epochs, the book's DataLoader path, the benchmark, the notebook): their tests are
# marked @pytest.mark.timeout(LONG_TEST_SECONDS) and their programs bounded by LONG_RUN_SECONDS
LONG_RUN_SECONDS = 280
LONG_TEST_SECONDS = 300
ABORT_GRACE = 10  # seconds for faulthandler to write the stacks before SIGKILL
STACK_CHARS = 12000  # of stderr kept in a failure message


def child_env(env=None):
    """``env`` (default: this process's environment) with faulthandler on for the child."""
    return {**(os.environ if env is None else env), 'PYTHONFAULTHANDLER': '1'}


def start(cmd, *, env=None, fresh=False, code_may_fork=False, **kwargs):
    """``Popen(cmd)`` in a session of its own with faulthandler on; ``kwargs`` go to Popen.

    A program of the package is forked from an interpreter that has imported MXNet already
    (zygote.py), unless ``fresh`` (the test is about the program's start-up, e.g. a signal
    during its imports) or it would not start the same way there. A ``python -c CODE`` program
    is forked only with ``code_may_fork`` (its code tests nothing that importing does)."""
    kwargs.setdefault('start_new_session', True)
    cmd, env = [os.fspath(c) for c in cmd], child_env(env)
    if not fresh and zygote.eligible(cmd, env, kwargs, code=code_may_fork):
        return zygote.popen(cmd, env, **kwargs)
    return subprocess.Popen(cmd, env=env, **kwargs)


def signal_group(proc, signum):
    """Send ``signum`` to the child's process group (its own pid, see :func:`start`), or to the
    child alone if it was started in another's group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            leader = os.getpgid(proc.pid) == proc.pid
        except ProcessLookupError:  # reaped already: its group may live on
            leader = True
        if leader:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)


def abort(proc):
    """SIGABRT the child's group, give faulthandler time to print, then SIGKILL the group."""
    signal_group(proc, signal.SIGABRT)
    try:
        proc.wait(timeout=ABORT_GRACE)
    except subprocess.TimeoutExpired:
        pass
    # the child's own children print their stacks too: give them a moment (bounded) before
    # SIGKILL, which would cut a stack half written
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and group_alive(proc.pid):
        time.sleep(0.05)
    signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=ABORT_GRACE)


def group_alive(pgid):
    """True while a process of group ``pgid`` other than a zombie is left."""
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat', 'rb') as f:
                    fields = f.read().rsplit(b')', 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in (b'Z', b'X'):
                return True
    return False


def describe(cmd):
    return ' '.join(os.fspath(c) for c in cmd)


def hang_message(what, timeout, stderr):
    text = stderr if isinstance(stderr, str) else (stderr or b'').decode('utf-8', 'replace')
    return (f'hang: {what} still running after {timeout} s; SIGABRT sent to its process group '
            f'(faulthandler stacks below), then SIGKILL\n--- end of its stderr ---\n'
            f'{text[-STACK_CHARS:]}')


def communicate(proc, timeout=HANG_SECONDS, what=None, input=None, on_hang=None):
    """``proc.communicate(input)`` bounded by ``timeout``; a hang fails the test with stacks.

    ``on_hang(stderr)`` runs after the child's group is ended (e.g. to end processes the child
    moved out of its group). Whatever interrupts the wait (pytest-timeout included) also ends the
    child's group, after its stacks are printed to this process's stderr.
    """
    what = what or describe(proc.args)
    try:
        return proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        abort(proc)
        _, err = proc.communicate()
        if on_hang is not None:
            on_hang(err)
        pytest.fail(hang_message(what, timeout, err), pytrace=False)
    except BaseException:
        abort(proc)
        with contextlib.suppress(Exception):
            _, err = proc.communicate(timeout=ABORT_GRACE)
            print(hang_message(what, 'interruption', err), file=sys.stderr)
        raise


def wait(proc, timeout=HANG_SECONDS, what=None, stderr_path=None):
    """``proc.wait()`` bounded by ``timeout`` for a child whose output goes elsewhere (e.g. a
    file at ``stderr_path``, whose end the failure message shows)."""
    what = what or describe(proc.args)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        abort(proc)
        err = ''
        if stderr_path is not None:
            with open(stderr_path, errors='replace') as f:
                err = f.read()
        pytest.fail(hang_message(what, timeout, err), pytrace=False)
    except BaseException:
        abort(proc)
        raise


def run(cmd, *, timeout=HANG_SECONDS, what=None, input=None, env=None, text=True, on_hang=None,
        fresh=False, code_may_fork=False, **kwargs):
    """Like ``subprocess.run(cmd, capture_output=True, text=True)``, bounded; a hang fails the
    test naming ``what`` (default: the command) with the stacks of the hung processes."""
    proc = start(cmd, env=env, fresh=fresh, code_may_fork=code_may_fork, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 stdin=subprocess.PIPE if input is not None else kwargs.pop('stdin', None),
                 text=text, **kwargs)
    out, err = communicate(proc, timeout, what, input, on_hang)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def read_until(proc, prefix, timeout=HANG_SECONDS, what=None):
    """Read the child's stdout (text) up to a line starting with ``prefix``; returns the lines
    read. A child that neither prints it nor ends within ``timeout`` fails the test with stacks;
    one that ends first fails it with its output."""
    what = what or describe(proc.args)
    lines, found = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(prefix):
                found.set()
                return
        found.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not found.wait(timeout):
        abort(proc)
        err = proc.stderr.read() if proc.stderr else ''
        pytest.fail(hang_message(f'{what} (no {prefix!r} line)', timeout, err), pytrace=False)
    if not (lines and lines[-1].startswith(prefix)):
        out, err = communicate(proc, ABORT_GRACE, what)
        pytest.fail(f'{what} ended ({proc.returncode}) before a {prefix!r} line:\n'
                    f'{"".join(lines)}{out}{err}', pytrace=False)
    return lines


def wait_until(condition, timeout, what):
    """Poll ``condition()`` every 0.05 s until true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f'{what}: not within {timeout} s')
        time.sleep(0.05)
