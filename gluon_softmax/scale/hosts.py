"""The launcher's hosts: hosts files, where each process of a job runs, and whether it fits."""
import os
import signal
import socket
import subprocess
import sys
import time

from gluon_softmax.scale.processes import die_with_parent, remote_argv, remote_line


LOOPBACK_HOST, LOOPBACK_INTERFACE = '127.0.0.1', 'lo'
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
