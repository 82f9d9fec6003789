"""The launcher's job: check it fits, start its processes, watch them, stop them all.

``python -m gluon_softmax.launch`` (its flags, and a latch of the signals it receives) calls
:func:`prepare`, :func:`start_all` and :func:`supervise`; its docstring describes the job.
"""
import os
import shlex
import signal
import sys
import time

from gluon_softmax.scale.hosts import (LOCALHOST, HostsError, dmlc_env, free_port, local_facts,
                                       misfit, place, probe, read_hosts)
from gluon_softmax.scale.processes import (POLL_SECONDS, check_command, describe_exit,
                                           exit_status, remote_argv, remote_line, start, stop,
                                           wait_until)


EXIT_TIMEOUT = 124  # as coreutils' timeout(1)
SETTLE_SECONDS = 1.0  # after a first failure, how long to wait for the others to show theirs
# A server: importing MXNet with DMLC_ROLE=server runs the role's loop (mxnet/kvstore_server.py)
# and exits when the job ends. It needs all of MXNet's Python layer: a worker's Trainer sends it
# its optimizer, pickled. Importing gluon_softmax first restores numpy.bool, which MXNet needs
# on NumPy 1.26 (Python 3.12).
SERVER_CODE = 'import gluon_softmax, mxnet'
# The scheduler only introduces the processes to each other and holds the job's barriers, all in
# MXNet's native library: it loads that library (found as MXNet itself finds it, by its
# libinfo.py, without importing the mxnet package) and makes the same two calls the import would.
# Measured here: 0.15-0.2 s of CPU and 79 MB of memory, where a server (MXNet imported) takes
# about 1 s and 130 MB. Self-contained, as the host may have MXNet but not this package.
SCHEDULER_CODE = """
import ctypes, importlib.util, os, sys
spec = importlib.util.find_spec('mxnet')
if spec is None:
    sys.exit('scheduler: cannot find MXNet (pip install mxnet)')
info = importlib.util.spec_from_file_location(
    'mxnet_libinfo', os.path.join(os.path.dirname(spec.origin), 'libinfo.py'))
libinfo = importlib.util.module_from_spec(info)
info.loader.exec_module(libinfo)
lib = ctypes.CDLL(libinfo.find_lib_path()[0], ctypes.RTLD_LOCAL)
lib.MXGetLastError.restype = ctypes.c_char_p
def check(status):
    if status != 0:
        sys.exit('scheduler: ' + lib.MXGetLastError().decode(errors='replace'))
handle = ctypes.c_void_p()
check(lib.MXKVStoreCreate(b'dist', ctypes.byref(handle)))
controller = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(
    lambda *message: None)  # called on servers only
check(lib.MXKVStoreRunServer(handle, controller, None))
check(lib.MXNotifyShutdown())  # as MXNet's own exit does
"""


def service_command(role, python=sys.executable):
    """The command of a ``'scheduler'`` or ``'server'`` process, run by ``python``."""
    return [python, '-c', SCHEDULER_CODE if role == 'scheduler' else SERVER_CODE]


def start_all(args, plan, children):
    """Start the ``plan``'s processes, appending each to ``children`` as it starts."""
    if args.hosts is None:
        port = free_port()
        for role, index, _ in plan:
            env = {**os.environ, **dmlc_env(role, args.num_workers, args.num_servers, port)}
            command = args.command if role == 'worker' else service_command(role)
            children.append(start(role, index, command, env))
        return
    # The port is free here, which is only a guess for the scheduler's host: --port fixes it.
    port = args.port or free_port('')
    root = plan[0][2]
    python = args.command[0]  # the interpreter the user named also runs the services
    for role, index, host in plan:
        variables = {**dmlc_env(role, args.num_workers, args.num_servers, port, root.address,
                                host.interface, host.address), **args.env}
        command = args.command if role == 'worker' else service_command(role, python)
        argv = remote_argv(args.remote, host, remote_line(args.cwd, command, variables))
        children.append(start(role, index, argv, os.environ, host))


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
