"""``python -m gluon_softmax.launch``: run a ``dist_sync`` kvstore job on this machine.

Usage::

    python -m gluon_softmax.launch -n WORKERS [-s SERVERS] [--timeout S] [--grace S] \\
        -- python -m gluon_softmax.train --kvstore dist_sync ...
    python -m gluon_softmax.launch --hosts FILE [--remote TEMPLATE] [--cwd DIR] -n WORKERS ... \\
        -- /same/path/python -m gluon_softmax.train --kvstore dist_sync ...

MXNet's parameter-server kvstore (ps-lite) needs three kinds of processes: one
scheduler, which every other process contacts first; servers, which hold the
parameters; and workers, which run the training command and call
``mx.kv.create('dist_sync')``. The launcher starts the scheduler and the
servers as ``python -c "import gluon_softmax, mxnet"`` (importing MXNet with ``DMLC_ROLE`` set
to ``scheduler`` or ``server`` runs that role's loop and exits when the job
ends) and ``WORKERS`` copies of the command, all on the loopback interface.
Each process learns its part from the environment (see :func:`dmlc_env`), and
the launcher prints ``launch: <role> <i> pid <PID>`` on stderr as it starts it.

The same variables describe a job on several machines: ``DMLC_PS_ROOT_URI`` and
``DMLC_PS_ROOT_PORT`` become the scheduler's reachable address,
``DMLC_NODE_HOST`` / ``DMLC_INTERFACE`` each machine's own address / network
interface, and the counts stay the totals over all machines. With ``--hosts
FILE`` the launcher places the processes on the hosts of FILE (see
:func:`read_hosts`, :func:`place`) and starts each one through the ``--remote``
template (``ssh -o BatchMode=yes {host}`` unless told otherwise), which gets one
more argument: a shell command line that sets the variables, changes to
``--cwd`` and runs a small Python wrapper (:data:`REMOTE_WRAPPER`) around the
process. The launcher keeps a pipe to each remote wrapper's stdin: a signal is
forwarded as a line carrying its number, and the end of the pipe (the launcher,
or the ssh client, gone) makes the wrapper SIGKILL its process group, so nothing
outlives the job on any host. Before starting anything the launcher runs the
interpreter once on every host (:data:`FACTS`): an unreachable host, a missing
``--cwd`` or interpreter is one ``error:`` line naming the host, exit 2. The pid
lines then read ``launch: <role> <i> pid <PID> on <host>``, PID being the local
end (the ssh client).

Before starting, the launcher also refuses a job that cannot fit (see
:func:`misfit`), on this machine or on each host: more memory than the host has
available, or too many processes for its cores; ``--force`` starts it anyway.

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
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

from gluon_softmax.cli import EXIT_USAGE, Parser, number_type

EXIT_TIMEOUT = 124  # as coreutils' timeout(1)
POLL_SECONDS = 0.1
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
SETTLE_SECONDS = 1.0  # after a first failure, how long to wait for the others to show theirs
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOOPBACK_HOST, LOOPBACK_INTERFACE = '127.0.0.1', 'lo'
# importing gluon_softmax first restores numpy.bool, which MXNet needs on NumPy 1.26 (Python 3.12)
SERVICE_CODE = 'import gluon_softmax, mxnet'
SERVICE_COMMAND = (sys.executable, '-c', SERVICE_CODE)
DEFAULT_REMOTE = 'ssh -o BatchMode=yes {host}'
HOST_OPTIONS = ('slots', 'address', 'interface')  # the NAME=VALUE words a hosts file line may have
PROBE_SECONDS = 30.0  # how long a host gets to answer FACTS before the job is refused
# Peak memory (maximum resident set size from /usr/bin/time -v, on the 2-core machine this was
# written on): one worker of the default recipe, `launch -n 1 -- /usr/bin/time -v python -m
# gluon_softmax.train --kvstore dist_sync --epochs 2 --seed 0`, peaked at 628,632 kB (the data
# set as float32 arrays plus MXNet itself); `python -c "import mxnet"`, which is all a scheduler
# or server is, at 182,936 kB. Rounded up, so that the check errs on the side of refusing.
WORKER_PEAK_BYTES = 640 * 2**20
SERVICE_PEAK_BYTES = 200 * 2**20
# Every worker keeps a core busy (the loop is compute-bound and synchronous): past a few
# processes per core the job only waits for its slowest worker, and the machine for all of them.
MAX_PROCESSES_PER_CORE = 4
# A bound on every count the user gives (-n, -s, slots=), checked before any list is built from
# it: far beyond what a job of 600 MiB workers fits on (--force included), far below what
# would take the launcher's own memory.
MAX_PROCESSES = 4096

# Run by the interpreter on every host before a --hosts job starts (which also shows that the
# host answers, and that --cwd and the interpreter are there), and here for a job on this
# machine: prints the bytes available (MemAvailable, -1 if unknown) and the usable cores.
FACTS = """
import os
available = -1
try:
    with open('/proc/meminfo') as f:
        available = next(int(line.split()[1]) * 1024 for line in f
                         if line.startswith('MemAvailable:'))
except (OSError, StopIteration, ValueError, IndexError):
    pass
cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
print(available, cores)
"""
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


def dmlc_env(role, num_workers, num_servers, port, host=LOOPBACK_HOST,
             interface=LOOPBACK_INTERFACE, node_host=None):
    """The ``DMLC_*`` variables that tell one ps-lite process its role and where the job is.

    Parameters
    ----------
    role : str
        ``'scheduler'``, ``'server'`` or ``'worker'``.
    num_workers, num_servers : int
        Totals over the whole job (every process gets the same).
    port : int
        The scheduler's TCP port on ``host``.
    host : str
        The scheduler's address.
    interface : str or None
        The network interface that carries this process's own address (None: not set).
    node_host : str, optional
        This process's own address (default: ``host``, as on loopback where every process
        is on this machine).

    Returns
    -------
    dict of str to str, to lay over ``os.environ``.
    """
    env = {'DMLC_ROLE': role,
           'DMLC_PS_ROOT_URI': host,
           'DMLC_PS_ROOT_PORT': str(port),
           'DMLC_NUM_WORKER': str(num_workers),
           'DMLC_NUM_SERVER': str(num_servers),
           'DMLC_NODE_HOST': host if node_host is None else node_host}
    if interface is not None:
        env['DMLC_INTERFACE'] = interface
    return env


class HostsError(ValueError):
    """A hosts file, a host or a placement the launcher cannot use; the message says why."""


class Host:
    """One host of a job: the name the ``--remote`` template gets, its address, slots, interface."""

    def __init__(self, name, address, slots=1, interface=None):
        self.name, self.address, self.slots, self.interface = name, address, slots, interface

    def __repr__(self):
        return self.name


LOCALHOST = Host('localhost', LOOPBACK_HOST, interface=LOOPBACK_INTERFACE)


def read_hosts(path):
    """The hosts listed in ``path``: ``NAME [slots=N] [address=A] [interface=IF]`` per line.

    ``#`` starts a comment; ``slots=0`` makes a host for the scheduler and servers only.
    Without ``address=`` the name is resolved here, so it must resolve to the same IPv4
    address on this machine as between the hosts.
    """
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise HostsError(f'cannot read it: {getattr(e, "strerror", None) or e}') from None
    hosts = []
    for number, line in enumerate(lines, 1):
        words = line.split('#', 1)[0].split()
        if not words:
            continue
        name, options = words[0], {}
        for word in words[1:]:
            key, sep, value = word.partition('=')
            if not sep or key not in HOST_OPTIONS or not value or key in options:
                raise HostsError(f'line {number}: expected NAME [slots=N] [address=A] '
                                 f'[interface=IF], got {line.strip()!r}')
            options[key] = value
        if any(h.name == name for h in hosts):
            raise HostsError(f'line {number}: host {name!r} is listed twice (use slots=N)')
        slots = options.get('slots', '1')
        if not (slots.isascii() and slots.isdigit()) or int(slots) > MAX_PROCESSES:
            raise HostsError(f'line {number}: slots must be an integer from 0 to '
                             f'{MAX_PROCESSES}, got {slots!r}')
        hosts.append(Host(name, host_address(name, options.get('address'), number),
                          int(slots), options.get('interface')))
    if not any(h.slots for h in hosts):
        raise HostsError('no host with slots for workers in it' if hosts else 'no hosts in it')
    return hosts


def host_address(name, address, number):
    """The IPv4 address of host ``name``: ``address`` if given, else ``name`` resolved here."""
    if address is None:
        try:
            return socket.gethostbyname(name)
        except (socket.gaierror, UnicodeError) as e:
            raise HostsError(f'line {number}: cannot resolve {name!r} here ({e}); give its '
                             f'address with address=A') from None
    try:
        socket.inet_aton(address)
    except OSError:
        raise HostsError(f'line {number}: address={address} is not an IPv4 address') from None
    return address


def place(hosts, num_workers, num_servers, scheduler_host):
    """``[(role, index, host)]``: scheduler and servers on ``scheduler_host``, workers by slots.

    Workers fill the first host's slots, then the next host's, and start over at the first
    host when every slot is taken.
    """
    total = sum(host.slots for host in hosts)

    def host_of(worker):
        # the (worker mod total)-th slot, counted without a list of every slot
        slot = worker % total
        for host in hosts:
            if slot < host.slots:
                return host
            slot -= host.slots
        raise AssertionError('unreachable: slot < total')
    return ([('scheduler', 0, scheduler_host)]
            + [('server', i, scheduler_host) for i in range(num_servers)]
            + [('worker', i, host_of(i)) for i in range(num_workers)])


def free_port(host=LOOPBACK_HOST):
    """A TCP port on ``host`` that nothing listens on right now."""
    # The port is free when we close the socket; the scheduler binds it a moment later.
    # Another program could take it in between, which would show as a failed scheduler.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse_facts(stdout):
    """``(bytes available or None, cores)`` from the output of :data:`FACTS`; None if garbled."""
    try:
        available, cores = (int(word) for word in stdout.strip().splitlines()[-1].split())
    except (IndexError, ValueError):
        return None
    return (available if available >= 0 else None), max(cores, 1)


def local_facts():
    """What :data:`FACTS` says about this machine."""
    try:
        stdout = subprocess.run([sys.executable, '-c', FACTS], capture_output=True, text=True,
                                timeout=PROBE_SECONDS, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        stdout = ''  # then only the core count is checked, as far as Python knows it
    return parse_facts(stdout) or (None, os.cpu_count() or 1)


def misfit(roles, available, cores):
    """Why ``roles`` overflow ``available`` bytes (None: unknown) or ``cores``; None if not."""
    workers = roles.count('worker')
    need = workers * WORKER_PEAK_BYTES + (len(roles) - workers) * SERVICE_PEAK_BYTES
    if available is not None and need > available:
        return (f'{workers} workers and {len(roles) - workers} scheduler/servers need about '
                f'{need / 2**30:.1f} GiB ({WORKER_PEAK_BYTES // 2**20} MiB per worker, '
                f'measured) but {available / 2**30:.1f} GiB is available (MemAvailable); '
                f'--force starts it anyway')
    if len(roles) > MAX_PROCESSES_PER_CORE * cores:
        return (f'{len(roles)} processes for {cores} cores (more than {MAX_PROCESSES_PER_CORE} '
                f'per core); --force starts it anyway')
    return None


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


def start_all(args, plan, children):
    """Start the ``plan``'s processes, appending each to ``children`` as it starts."""
    if args.hosts is None:
        port = free_port()
        for role, index, _ in plan:
            env = {**os.environ, **dmlc_env(role, args.num_workers, args.num_servers, port)}
            command = args.command if role == 'worker' else list(SERVICE_COMMAND)
            children.append(start(role, index, command, env))
        return
    # The port is free here, which is only a guess for the scheduler's host: --port fixes it.
    port = args.port or free_port('')
    root = plan[0][2]
    python = args.command[0]  # the interpreter the user named also runs the services
    for role, index, host in plan:
        variables = {**dmlc_env(role, args.num_workers, args.num_servers, port, root.address,
                                host.interface, host.address), **args.env}
        command = args.command if role == 'worker' else [python, '-c', SERVICE_CODE]
        argv = remote_argv(args.remote, host, remote_line(args.cwd, command, variables))
        children.append(start(role, index, argv, os.environ, host))


def probe(args, hosts):
    """Run :data:`FACTS` on every host at once; ``{host: facts}``, or HostsError naming one."""
    # one that fails, or does not answer within PROBE_SECONDS (ssh may wait long to connect)
    line = remote_line(args.cwd, [args.command[0], '-c', FACTS])
    procs = {host: subprocess.Popen(remote_argv(args.remote, host, line),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True,
                                    preexec_fn=die_with_parent)
             for host in hosts}
    seconds = min(PROBE_SECONDS, args.timeout)
    deadline = time.monotonic() + seconds
    facts = {}
    try:
        for host, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                raise HostsError(f'host {host} (--hosts {args.hosts}): no answer within '
                                 f'{seconds:g} s') from None
            facts[host] = parse_facts(out) if proc.returncode == 0 else None
            if facts[host] is None:
                said = err.strip().splitlines()[-1:] or ['no output']
                raise HostsError(f'host {host} (--hosts {args.hosts}): cannot run '
                                 f'{args.command[0]} in {args.cwd} there (status '
                                 f'{proc.returncode}): {said[0]}')
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return facts


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
    # A worker still running has had its signal and its grace: it is blocked inside MXNet
    # (waiting for a peer that left), where a SIGTERM would not reach its Python handler
    # either, so it gets SIGKILL now and the launcher exits within one --grace. The servers
    # and the scheduler die on SIGTERM at once.
    for child in forwarded:
        if child.running():
            child.signal_group(signal.SIGKILL)
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


def prepare(args):
    """Check the job before anything starts; the plan (see :func:`place`).

    Raises HostsError (hosts file, hosts, a job that does not fit) or OSError (a worker
    command that cannot run here).
    """
    if args.hosts is None:
        check_command(args.command)
        plan = place([LOCALHOST], args.num_workers, args.num_servers, LOCALHOST)
        problem = None if args.force else misfit([role for role, _, _ in plan], *local_facts())
        if problem:
            raise HostsError(f'-n {args.num_workers}: {problem}')
        return plan
    where = f'(--hosts {args.hosts})'
    try:
        hosts = read_hosts(args.hosts)
    except HostsError as e:
        raise HostsError(f'--hosts {args.hosts}: {e}') from None
    scheduler = hosts[0]
    if args.scheduler_host is not None:
        scheduler = next((h for h in hosts if h.name == args.scheduler_host), None)
        if scheduler is None:
            raise HostsError(f'--scheduler-host {args.scheduler_host}: not a host of {where}')
    remote = shlex.split(args.remote)
    try:
        check_command(remote)
    except OSError as e:
        raise HostsError(f'--remote {args.remote!r}: cannot run {remote[0]!r}: '
                         f'{e.strerror or e}') from None
    plan = place(hosts, args.num_workers, args.num_servers, scheduler)
    used = [h for h in hosts if any(on is h for _, _, on in plan)]
    facts = probe(args, used)
    for host in used:
        problem = None if args.force else misfit(
            [role for role, _, on in plan if on is host], *facts[host])
        if problem:
            raise HostsError(f'host {host} {where}: {problem}')
    return plan


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
