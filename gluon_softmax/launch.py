"""``python -m gluon_softmax.launch``: run a ``dist_sync`` kvstore job on this machine.

Usage::

    python -m gluon_softmax.launch -n WORKERS [-s SERVERS] [--timeout S] [--grace S] \\
        -- python -m gluon_softmax.train --kvstore dist_sync ...
    python -m gluon_softmax.launch --hosts FILE [--remote TEMPLATE] [--cwd DIR] -n WORKERS ... \\
        -- /same/path/python -m gluon_softmax.train --kvstore dist_sync ...

MXNet's parameter-server kvstore (ps-lite) needs three kinds of processes: one scheduler,
which every other process contacts first; servers, which hold the parameters; and workers,
which run the training command and call ``mx.kv.create('dist_sync')``. The launcher starts
the servers as ``python -c "import gluon_softmax, mxnet"`` (importing MXNet with ``DMLC_ROLE``
set to ``server`` runs that role's loop and exits when the job ends), the scheduler as a short
program that runs its loop in MXNet's native library alone
(:data:`~gluon_softmax.scale.launcher.SCHEDULER_CODE`), and ``WORKERS`` copies of the command,
all on the loopback interface.
Each process learns its part from the environment (see
:func:`~gluon_softmax.scale.hosts.dmlc_env`), and the launcher prints ``launch: <role> <i>
pid <PID>`` on stderr as it starts it.

The same variables describe a job on several machines: ``DMLC_PS_ROOT_URI`` and
``DMLC_PS_ROOT_PORT`` become the scheduler's reachable address, ``DMLC_NODE_HOST`` /
``DMLC_INTERFACE`` each machine's own address / network interface, and the counts stay the
totals over all machines. With ``--hosts FILE`` the launcher places the processes on the
hosts of FILE (see :func:`~gluon_softmax.scale.hosts.read_hosts`,
:func:`~gluon_softmax.scale.hosts.place`) and starts each one through the ``--remote``
template (``ssh -o BatchMode=yes {host}`` unless told otherwise), which gets one more
argument: a shell command line that sets the variables, changes to ``--cwd`` and runs a
small Python wrapper around the process
(:data:`~gluon_softmax.scale.processes.REMOTE_WRAPPER`). The launcher keeps a pipe to each
remote wrapper's stdin: a signal is forwarded as a line carrying its number, and the end of
the pipe (the launcher, or the ssh client, gone) makes the wrapper SIGKILL its process
group, so nothing outlives the job on any host. Before starting anything the launcher runs
the interpreter once on every host (:data:`~gluon_softmax.scale.hosts.FACTS`): an
unreachable host, a missing ``--cwd`` or interpreter is one ``error:`` line naming the host,
exit 2. The pid lines then read ``launch: <role> <i> pid <PID> on <host>``, PID being the
local end (the ssh client).

Before starting, the launcher also refuses a job that cannot fit (see
:func:`~gluon_softmax.scale.hosts.misfit`), on this machine or on each host: more memory
than the host has available, or too many processes for its cores; ``--force`` starts it
anyway.

Exit status: 0 when every worker exited 0; after stopping all the others, the
status of the process that failed (128 + N if signal N killed it; a worker's own
error status is preferred to its peers' deaths that followed it); 124
when ``--timeout`` expired; 128 + N when the launcher got signal N (SIGINT,
SIGTERM, SIGHUP), which it first forwards to the workers; 2 for bad usage or a
command that cannot be started, a bad hosts file, a host that cannot run the job or a
job that does not fit. Every child runs in its own session, so
signals are sent to its whole process group. If the launcher itself is killed
with SIGKILL, Linux kills the processes it started (``PR_SET_PDEATHSIG``), though
not what they started in turn.
"""
import argparse
import os
import shlex
import signal
import sys

from gluon_softmax.run.cli import EXIT_USAGE, Parser, number_type
from gluon_softmax.run.signals import SignalLatch
from gluon_softmax.scale.hosts import MAX_PROCESSES, MAX_PROCESSES_PER_CORE, HostsError
from gluon_softmax.scale.launcher import prepare, start_all, supervise
from gluon_softmax.scale.processes import stop

DEFAULT_REMOTE = 'ssh -o BatchMode=yes {host}'


process_count = number_type(int, 1, high=MAX_PROCESSES + 1,
                            expected=f'an integer from 1 to {MAX_PROCESSES}')


def build_parser():
    """The launcher's flags; the worker command follows ``--``."""
    p = Parser(prog='python -m gluon_softmax.launch',
               usage='%(prog)s -n WORKERS [-s SERVERS] [--timeout S] [--grace S] [--force] '
                     '[--hosts FILE [--remote TEMPLATE] [--cwd DIR] [--scheduler-host HOST] '
                     '[--port N] [--env NAME[=VALUE]]] -- COMMAND [ARG ...]',
               description='Run a dist_sync kvstore job: one scheduler, SERVERS servers and '
                           'WORKERS copies of COMMAND, on loopback, or on the hosts of a '
                           'hosts file.')
    p.add_argument('-n', '--num-workers', type=process_count,
                   required=True, metavar='N', help='number of worker processes (at most '
                   f'{MAX_PROCESSES})')
    p.add_argument('-s', '--num-servers', type=process_count,
                   default=1, metavar='N', help='number of server processes (default: 1)')
    p.add_argument('--timeout', type=number_type(float, 0, low_ok=False,
                                                 expected='a positive number of seconds'),
                   default=3600.0, metavar='S',
                   help='stop everything and exit 124 after S seconds (default: 3600)')
    p.add_argument('--grace', type=number_type(float, 0, expected='a number of seconds >= 0'),
                   default=10.0, metavar='S',
                   help='seconds a process gets after SIGTERM before SIGKILL, and the servers '
                        'get to exit after the workers finished (default: 10)')
    p.add_argument('--force', action='store_true',
                   help='start the job even where it does not fit: more memory than a host has '
                        f'available or more than {MAX_PROCESSES_PER_CORE} processes per core '
                        '(default: refuse)')
    p.add_argument('--hosts', metavar='FILE',
                   help='start the job on the hosts of FILE, one a line: NAME [slots=N] '
                        '[address=A] [interface=IF] (default: this machine, on loopback)')
    p.add_argument('--remote', metavar='TEMPLATE',
                   help='with --hosts: the command that runs a shell command line (appended as '
                        'one argument) on {host} (default: ' + DEFAULT_REMOTE + ')')
    p.add_argument('--cwd', metavar='DIR',
                   help='with --hosts: the working directory on every host (default: the '
                        'current one)')
    p.add_argument('--scheduler-host', metavar='HOST',
                   help='with --hosts: the host of the scheduler and servers (default: the '
                        'first in FILE)')
    p.add_argument('--port', type=number_type(int, 1, high=65536, expected='a TCP port 1-65535'),
                   metavar='N', help="with --hosts: the scheduler's TCP port (default: one "
                                     "that is free on this machine)")
    p.add_argument('--env', action='append', default=[], metavar='NAME[=VALUE]',
                   help='with --hosts: also set NAME on every host, to VALUE or to its value '
                        'here (repeatable)')
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
    check_host_flags(parser, args)
    return args


def check_host_flags(parser, args):
    """Refuse the --hosts-only flags without --hosts; fill in their defaults with it."""
    only = {'--remote': args.remote, '--cwd': args.cwd, '--scheduler-host': args.scheduler_host,
            '--port': args.port, '--env': args.env or None}
    if args.hosts is None:
        given = [flag for flag, value in only.items() if value is not None]
        if given:
            parser.error(f'{given[0]} needs --hosts (without it the job runs on this machine)')
        return
    args.remote = DEFAULT_REMOTE if args.remote is None else args.remote
    try:
        words = shlex.split(args.remote)
    except ValueError as e:
        parser.error(f'--remote {args.remote!r}: {e}')
    if not words or '{host}' not in args.remote:
        parser.error(f'--remote {args.remote!r}: expected a command that names {{host}}')
    args.cwd = os.getcwd() if args.cwd is None else args.cwd
    variables = {}
    for item in args.env:
        name, sep, value = item.partition('=')
        if not name.isidentifier() or not name.isascii():
            parser.error(f'--env {item!r}: expected NAME or NAME=VALUE')
        if not sep and name not in os.environ:
            parser.error(f'--env {name}: not set here (give NAME=VALUE)')
        variables[name] = value if sep else os.environ[name]
    args.env = variables


def main(argv=None):
    """Run the launcher with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = parse_args(argv)
    children = []
    with SignalLatch() as latch:
        try:
            try:
                plan = prepare(args)
                start_all(args, plan, children)
            except HostsError as e:
                print(f'error: {e}', file=sys.stderr)
                return EXIT_USAGE
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
