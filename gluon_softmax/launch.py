"""``python -m gluon_softmax.launch``: run a ``dist_sync`` kvstore job on this machine.

Usage::

    python -m gluon_softmax.launch -n WORKERS [-s SERVERS] [--timeout S] [--grace S] \\
        -- python -m gluon_softmax.train --kvstore dist_sync ...

MXNet's parameter-server kvstore (ps-lite) needs three kinds of processes: one
scheduler, which every other process contacts first; servers, which hold the
parameters; and workers, which run the training command and call
``mx.kv.create('dist_sync')``. The launcher starts the scheduler and the
servers as ``python -c "import mxnet"`` (importing MXNet with ``DMLC_ROLE`` set
to ``scheduler`` or ``server`` runs that role's loop and exits when the job
ends) and ``WORKERS`` copies of the command, all on the loopback interface.
Each process learns its part from the environment (see :func:`dmlc_env`), and
the launcher prints ``launch: <role> <i> pid <PID>`` on stderr as it starts it.

The same variables describe a job on several machines: ``DMLC_PS_ROOT_URI`` and
``DMLC_PS_ROOT_PORT`` become the scheduler's reachable address,
``DMLC_NODE_HOST`` / ``DMLC_INTERFACE`` each machine's own address / network
interface, and the counts stay the totals over all machines. This launcher only
does the one-machine case.

Exit status: 0 when every worker exited 0; after stopping all the others, the
status of the process that failed (128 + N if signal N killed it; a worker's own
error status is preferred to its peers' deaths that followed it); 124
when ``--timeout`` expired; 128 + N when the launcher got signal N (SIGINT,
SIGTERM, SIGHUP), which it first forwards to the workers; 2 for bad usage or a
command that cannot be started. Every child runs in its own session, so
signals are sent to its whole process group. If the launcher itself is killed
with SIGKILL, Linux kills the processes it started (``PR_SET_PDEATHSIG``), though
not what they started in turn.
"""
import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from gluon_softmax.cli import EXIT_USAGE, Parser, number_type, positive_int

EXIT_TIMEOUT = 124  # as coreutils' timeout(1)
POLL_SECONDS = 0.1
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
SETTLE_SECONDS = 1.0  # after a first failure, how long to wait for the others to show theirs
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOOPBACK_HOST, LOOPBACK_INTERFACE = '127.0.0.1', 'lo'
SERVICE_COMMAND = (sys.executable, '-c', 'import mxnet')


def build_parser():
    """The launcher's flags; the worker command follows ``--``."""
    p = Parser(prog='python -m gluon_softmax.launch',
               usage='%(prog)s -n WORKERS [-s SERVERS] [--timeout S] [--grace S] '
                     '-- COMMAND [ARG ...]',
               description='Run a dist_sync kvstore job on this machine: one scheduler, '
                           'SERVERS servers and WORKERS copies of COMMAND, on loopback.')
    p.add_argument('-n', '--num-workers', type=positive_int,
                   required=True, metavar='N', help='number of worker processes')
    p.add_argument('-s', '--num-servers', type=positive_int,
                   default=1, metavar='N', help='number of server processes (default: 1)')
    p.add_argument('--timeout', type=number_type(float, 0, low_ok=False,
                                                 expected='a positive number of seconds'),
                   default=3600.0, metavar='S',
                   help='stop everything and exit 124 after S seconds (default: 3600)')
    p.add_argument('--grace', type=number_type(float, 0, expected='a number of seconds >= 0'),
                   default=10.0, metavar='S',
                   help='seconds a process gets after SIGTERM before SIGKILL, and the servers '
                        'get to exit after the workers finished (default: 10)')
    p.add_argument('command', nargs=argparse.REMAINDER, metavar='COMMAND',
                   help='the worker command and its arguments, after "--"')
    return p


def parse_args(argv=None):
    """Parse ``argv``: the launcher's flags, then everything after the first ``--``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # Split by hand: argparse would take the worker command's own flags (-n, --help, a
    # second --) for the launcher's.
    if '--' in argv:
        cut = argv.index('--')
        args = parser.parse_args(argv[:cut])
        if args.command:
            parser.error(f'unexpected arguments before "--": {" ".join(args.command)}')
        args.command = argv[cut + 1:]
    else:
        args = parser.parse_args(argv)
    if not args.command:
        parser.error('no worker command: give it after "--"')
    return args


def dmlc_env(role, num_workers, num_servers, port, host=LOOPBACK_HOST,
             interface=LOOPBACK_INTERFACE):
    """The ``DMLC_*`` variables that tell one ps-lite process its role and where the job is.

    Parameters
    ----------
    role : str
        ``'scheduler'``, ``'server'`` or ``'worker'``.
    num_workers, num_servers : int
        Totals over the whole job (every process gets the same).
    port : int
        The scheduler's TCP port on ``host``.
    host, interface : str
        The scheduler's address, also used as this process's own address and interface
        (loopback: every process is on this machine).

    Returns
    -------
    dict of str to str, to lay over ``os.environ``.
    """
    return {'DMLC_ROLE': role,
            'DMLC_PS_ROOT_URI': host,
            'DMLC_PS_ROOT_PORT': str(port),
            'DMLC_NUM_WORKER': str(num_workers),
            'DMLC_NUM_SERVER': str(num_servers),
            'DMLC_NODE_HOST': host,
            'DMLC_INTERFACE': interface}


def free_port(host=LOOPBACK_HOST):
    """A TCP port on ``host`` that nothing listens on right now."""
    # The port is free when we close the socket; the scheduler binds it a moment later.
    # Another program could take it in between, which would show as a failed scheduler.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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


def die_with_parent():
    """In a child, before exec: ask Linux to SIGKILL it if the launcher itself dies."""
    # the one case the launcher cannot clean up after: being killed with SIGKILL
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: children then outlive a SIGKILLed launcher


def start(role, index, command, env):
    """Start ``command`` in a new session with ``env``; announce its pid on stderr."""
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            preexec_fn=die_with_parent)
    print(f'launch: {role} {index} pid {proc.pid}', file=sys.stderr, flush=True)
    return Child(role, index, proc)


def check_command(command):
    """Raise FileNotFoundError unless ``command[0]`` names an executable file (on PATH)."""
    # Checked before anything starts, so a typo costs no scheduler or servers; Popen's own
    # OSError still covers what this misses (a file the kernel cannot execute).
    if shutil.which(command[0]) is None:
        raise FileNotFoundError('not an executable file, nor one found on PATH')


def start_all(args, children):
    """Start scheduler, servers and workers, appending each to ``children`` as it starts."""
    port = free_port()
    plan = [('scheduler', 1, list(SERVICE_COMMAND)),
            ('server', args.num_servers, list(SERVICE_COMMAND)),
            ('worker', args.num_workers, args.command)]
    for role, count, command in plan:
        env = {**os.environ, **dmlc_env(role, args.num_workers, args.num_servers, port)}
        for index in range(count):
            children.append(start(role, index, command, env))


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


class SignalLatch:
    """Records the signals the launcher receives instead of dying on them."""

    def __init__(self):
        self.received = []
        self._previous = {}

    def __enter__(self):
        for signum in FORWARDED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _record(self, signum, frame):
        self.received.append(signum)

    def first(self):
        """The first signal received, or None."""
        return self.received[0] if self.received else None

    def more_than(self, count):
        """A callable: has the launcher received more than ``count`` signals?"""
        return lambda: len(self.received) > count


def supervise(children, args, latch):
    """Watch the started job until it ends, is interrupted or times out; the exit status."""
    workers = [c for c in children if c.role == 'worker']
    services = [c for c in children if c.role != 'worker']
    deadline = time.monotonic() + args.timeout
    while True:
        signum = latch.first()
        if signum is not None:
            return interrupt(children, workers, args.grace, signum, latch)
        if any(c.failed() for c in children):
            # when one process fails its peers often fail a moment later: look a little
            # longer, to name the one that caused it
            wait_until(lambda: not any(c.running() for c in workers), SETTLE_SECONDS,
                       latch.more_than(0))
            failed = [c for c in workers + services if c.failed()]
            cause = root_cause(failed)
            also = ''.join(f'; {c} {describe_exit(c)}' for c in failed if c is not cause)
            stop(children, args.grace, interrupted=latch.more_than(0))
            print(f'error: {cause} {describe_exit(cause)}; stopped the others{also}',
                  file=sys.stderr)
            return exit_status(cause)
        if not any(c.running() for c in workers):
            return finish(services, args.grace, latch)
        if time.monotonic() >= deadline:
            stop(children, args.grace, interrupted=latch.more_than(0))
            print(f'error: timed out after {args.timeout:g} s (--timeout); stopped all '
                  f'{len(children)} processes', file=sys.stderr)
            return EXIT_TIMEOUT
        time.sleep(POLL_SECONDS)


def root_cause(failed):
    """Of the failed children, the one worth naming: a worker's own error status first.

    A worker that exits with an error status chose to (a bad flag, divergence); its
    peers then often abort inside ps-lite (SIGABRT) as the connection goes away.
    """
    return min(failed, key=lambda c: (c.proc.returncode <= 0, c.role != 'worker'))


def interrupt(children, workers, grace, signum, latch):
    """Forward ``signum`` to the workers, then stop everything; 128 + ``signum``."""
    count = len(latch.received)
    # The workers get the launcher's own signal (so a Ctrl-C handler can save state) and
    # the grace period to act on it; only then do the servers go, as workers may still
    # need them while saving. A second signal cuts every wait short.
    forwarded = [c for c in workers if c.running()]
    for child in forwarded:
        child.signal_group(signum)
    wait_until(lambda: not any(c.running() for c in forwarded), grace, latch.more_than(count))
    stop(children, grace, interrupted=latch.more_than(count))
    print(f'error: interrupted by {signal.Signals(signum).name}; stopped all '
          f'{len(children)} processes', file=sys.stderr)
    return 128 + signum


def finish(services, grace, latch):
    """After every worker exited 0: give the servers ``grace`` s to exit; the exit status."""
    wait_until(lambda: not any(c.running() for c in services), grace, latch.more_than(0))
    # A server that crashes on the way out is still a crash worth an exit status; one that
    # merely lingers is stopped with a warning, since the workers' results are complete
    # (for the same reason a signal now only cuts the wait short).
    failed = next((c for c in services if c.failed()), None)
    lingering = [c for c in services if c.running()]
    stop(lingering, grace)
    if failed is not None:
        print(f'error: {failed} {describe_exit(failed)} after the workers finished',
              file=sys.stderr)
        return exit_status(failed)
    for child in lingering:
        print(f'launch: warning: {child} still ran {grace:g} s after the workers finished; '
              f'stopped it', file=sys.stderr)
    return 0


def main(argv=None):
    """Run the launcher with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = parse_args(argv)
    children = []
    with SignalLatch() as latch:
        try:
            try:
                check_command(args.command)
                start_all(args, children)
            except OSError as e:
                # FileNotFoundError, PermissionError, ENOEXEC: the command, not the job.
                print(f'error: cannot run the worker command {args.command[0]!r} (after '
                      f'"--"): {e.strerror or e}', file=sys.stderr)
                return EXIT_USAGE
            return supervise(children, args, latch)
        finally:
            # Every exit path (including an exception in the launcher itself) ends here:
            # nobody the launcher started may outlive it, not even a grandchild.
            stop(children, args.grace)
            for child in children:
                child.signal_group(signal.SIGKILL)


if __name__ == '__main__':
    sys.exit(main())
