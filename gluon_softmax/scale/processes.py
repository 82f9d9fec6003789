"""The launcher's processes: started here or on a host, signalled as a group, stopped."""
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time


POLL_SECONDS = 0.1
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>

# Runs every process of a --hosts job on its host, as `python -c REMOTE_WRAPPER COMMAND...`.
# Killing the local ssh client does not kill what it started on the remote host, so the
# launcher keeps a pipe to this wrapper's stdin: a line with a signal number is forwarded to
# the command's process group; the end of the pipe (launcher or ssh gone) SIGKILLs the group.
# If the wrapper itself is killed, PR_SET_PDEATHSIG (1) takes the command with it. It exits
# like the command did, a death by signal included. Self-contained: the host may run an
# older gluon_softmax, or none, for the scheduler and servers.
REMOTE_WRAPPER = """
import ctypes, os, signal, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, start_new_session=True,
                         preexec_fn=lambda: ctypes.CDLL(None).prctl(1, signal.SIGKILL))
def signal_group(signum):
    try:
        os.killpg(child.pid, signum)
    except OSError:
        pass
def relay():
    for line in sys.stdin:
        if line.strip().isdigit():
            signal_group(int(line))
    signal_group(signal.SIGKILL)
threading.Thread(target=relay, daemon=True).start()
status = child.wait()
signal_group(signal.SIGKILL)
if status < 0:
    try:
        signal.signal(-status, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), -status)
sys.exit(status)
"""


class Child:
    """One started process: its role, its index within the role and its ``Popen``."""

    def __init__(self, role, index, proc):
        self.role, self.index, self.proc = role, index, proc

    def __repr__(self):
        return f'{self.role} {self.index} (pid {self.proc.pid})'

    def running(self):
        """True until the process has exited (and has been reaped)."""
        return self.proc.poll() is None

    def failed(self):
        """True if the process exited with a non-zero status or by a signal."""
        return self.proc.poll() not in (None, 0)

    def signal_group(self, signum):
        """Send ``signum`` to the process's group (its session), if anyone is left in it."""
        # start_new_session made the child a group leader, so its pid names the group and
        # the signal also reaches whatever the command started (a shell's children).
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone (some systems say EPERM when only a zombie is left)


class RemoteChild(Child):
    """A process on another host: its ``Popen`` is the remote command (ssh) that started it."""

    def __init__(self, role, index, proc, host):
        super().__init__(role, index, proc)
        self.host = host

    def __repr__(self):
        return f'{self.role} {self.index} on {self.host} (pid {self.proc.pid})'

    def signal_group(self, signum):
        """Have :data:`REMOTE_WRAPPER` send ``signum`` to the remote group (SIGKILL: end it)."""
        if signum == signal.SIGKILL:
            # The local end dies; the wrapper, on this machine or behind ssh, sees its stdin
            # close and SIGKILLs its group.
            super().signal_group(signum)
            return
        try:
            self.proc.stdin.write(f'{int(signum)}\n'.encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the wrapper is gone already


def die_with_parent():
    """In a child, before exec: ask Linux to SIGKILL it if the launcher itself dies."""
    # the one case the launcher cannot clean up after: being killed with SIGKILL
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: children then outlive a SIGKILLed launcher


def start(role, index, command, env, host=None):
    """Start ``command`` in a new session with ``env``; announce its pid on stderr.

    With a ``host``, ``command`` is the remote command that runs the process there; it gets
    a pipe as stdin, through which :class:`RemoteChild` signals it.
    """
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            preexec_fn=die_with_parent,
                            stdin=None if host is None else subprocess.PIPE)
    where = '' if host is None else f' on {host}'
    print(f'launch: {role} {index} pid {proc.pid}{where}', file=sys.stderr, flush=True)
    return Child(role, index, proc) if host is None else RemoteChild(role, index, proc, host)


def remote_argv(template, host, line):
    """The ``--remote`` template for ``host``, split as a shell would, then ``line``."""
    return [word.replace('{host}', host.name) for word in shlex.split(template)] + [line]


def remote_line(cwd, command, variables=None):
    """The shell command line a host runs: cd to ``cwd``, set ``variables``, run ``command``.

    With ``variables`` the command runs under :data:`REMOTE_WRAPPER` (through the same
    interpreter); without, it runs as it is.
    """
    if variables is not None:
        settings = [f'{name}={value}' for name, value in variables.items()]
        command = ['env', *settings, command[0], '-c', REMOTE_WRAPPER, *command]
    return f'cd -- {shlex.quote(cwd)} && exec {shlex.join(command)}'


def check_command(command):
    """Raise FileNotFoundError unless ``command[0]`` names an executable file (on PATH)."""
    # Checked before anything starts, so a typo costs no scheduler or servers; Popen's own
    # OSError still covers what this misses (a file the kernel cannot execute).
    if shutil.which(command[0]) is None:
        raise FileNotFoundError('not an executable file, nor one found on PATH')


def describe_exit(child):
    """``'exited with status S'`` or ``'was killed by SIGNAME'`` for a finished child."""
    status = child.proc.returncode
    if status >= 0:
        return f'exited with status {status}'
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f'signal {-status}'
    return f'was killed by {name}'


def exit_status(child):
    """The launcher's exit status for a failed child: its status, or 128 + signal number."""
    status = child.proc.returncode
    return status if status > 0 else 128 - status


def wait_until(predicate, seconds, interrupted=lambda: False):
    """Poll ``predicate()`` until it is true, ``seconds`` have passed or ``interrupted()``."""
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline and not interrupted():
        time.sleep(POLL_SECONDS)


def stop(children, grace, signum=signal.SIGTERM, interrupted=lambda: False):
    """Send ``signum`` to the running ``children``, SIGKILL whoever is left after ``grace`` s.

    Every child has been reaped on return (unless a SIGKILLed process fails to die within
    a few seconds, which is reported).
    """
    running = [c for c in children if c.running()]
    for child in running:
        child.signal_group(signum)
    wait_until(lambda: not any(c.running() for c in running), grace, interrupted)
    # SIGKILL is essential: a worker blocked in MXNet's C++ code waiting for a dead peer
    # never gets back to the interpreter to run a Python SIGTERM handler.
    killed = [c for c in running if c.running()]
    for child in killed:
        child.signal_group(signal.SIGKILL)
    for child in killed:
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f'launch: warning: {child} did not die after SIGKILL', file=sys.stderr)
