"""The launcher over a hosts file: parsing, placement, the fit check, and real jobs on
simulated hosts (network namespaces, see ``netns.py``), through ``ip netns exec`` and ssh.

The namespace tests need root and ``ip``; they are skipped with the reason otherwise,
unless ``GLUON_SOFTMAX_REQUIRE_NETNS=1`` (as in CI) makes that a failure.
"""
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from gluon_softmax import launch
from gluon_softmax.scale import hosts as hosts_module
from gluon_softmax.scale import launcher
from gluon_softmax.scale.hosts import Host, HostsError, misfit, place, read_hosts
from netns import INTERFACE, Network, NetnsUnavailable, Sshd
import procs
import small_data
# background is test_launch's fixture: imported, pytest offers it here too
from test_launch import (FAIL_EARLY, HANG, LAUNCH, ON_SIGNAL, RUN_TIMEOUT, SPIN, SUM,  # noqa: F401
                         background, child_env, error_lines, launch as run_launcher, script,
                         wait_for_files)

# subprocess runs, signals and multi-epoch training: the full suite only (not make test-fast);
# on one pytest-xdist worker, so the namespaces and their sshd are set up once (12 s each time)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('hosts')]

TRAIN = [sys.executable, '-m', 'gluon_softmax.train']
# launch: <role> <i> pid <PID> on <host>: the local end (ip netns exec, ssh) of each process
HOST_PID_LINE = re.compile(r'^launch: (scheduler|server|worker) (\d+) pid (\d+) on (\S+)$', re.M)
NETNS_REMOTE = 'ip netns exec {host} sh -c'
JOB_TIMEOUT = 90  # seconds for a whole training job on two busy cores (procs.HANG_SECONDS)


def require_netns(reason):
    """Skip with ``reason``, or fail when GLUON_SOFTMAX_REQUIRE_NETNS=1 (CI)."""
    if os.environ.get('GLUON_SOFTMAX_REQUIRE_NETNS') == '1':
        pytest.fail(f'simulated hosts required (GLUON_SOFTMAX_REQUIRE_NETNS=1): {reason}')
    pytest.skip(f'cannot simulate hosts with network namespaces: {reason}')


@pytest.fixture(scope='module')
def network():
    """Three namespaces on one bridge (192.0.2.1-3), removed after the module, pass or fail."""
    net = Network(3)
    try:
        net.create()
    except NetnsUnavailable as e:
        require_netns(str(e))
    try:
        yield net
    finally:
        net.remove()


@pytest.fixture(scope='module')
def sshd(network, tmp_path_factory):
    """sshd in each namespace, on its address only, with throwaway keys; stopped afterwards."""
    daemons = Sshd(network, str(tmp_path_factory.mktemp('ssh')))
    try:
        daemons.start()
    except (NetnsUnavailable, OSError, subprocess.SubprocessError) as e:
        daemons.stop()
        require_netns(str(e))
    try:
        yield daemons
    finally:
        daemons.stop()


@pytest.fixture
def clean_network(network):
    """The network, checked empty before the test and emptied (by force) after it."""
    assert network.counts() == {h.name: 0 for h in network.hosts}
    yield network
    network.kill_all()


def host_pids(stderr):
    """``{(role, index): (pid, host)}`` from the launcher's ``... pid <PID> on <host>`` lines."""
    return {(role, int(i)): (int(pid), host)
            for role, i, pid, host in HOST_PID_LINE.findall(stderr)}


def hosts_launch(hosts_file, *args, timeout=RUN_TIMEOUT):
    """Run the launcher over ``hosts_file`` with ``ip netns exec``; (CompletedProcess, s)."""
    return run_launcher('--hosts', hosts_file, '--remote', NETNS_REMOTE, *args, timeout=timeout)


@contextlib.contextmanager
def ended(proc):
    """SIGKILL the launcher ``proc`` if it still runs when the block is left (a failed test)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=RUN_TIMEOUT)


def argv_of(pid):
    """The command line of ``pid`` as a list ([] once it is gone)."""
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return [a.decode() for a in f.read().split(b'\0')[:-1]]
    except OSError:
        return []


# --- the hosts file, placement and the fit check: no namespaces needed ---

def test_read_hosts(tmp_path):
    path = tmp_path / 'hosts'
    path.write_text('# scheduler only\n'
                    'head slots=0 address=192.0.2.1\n'
                    '\n'
                    'node1 address=192.0.2.2 interface=eth1 slots=2  # comment\n'
                    '127.0.0.1\n')
    hosts = read_hosts(path)
    assert [(h.name, h.address, h.slots, h.interface) for h in hosts] == [
        ('head', '192.0.2.1', 0, None), ('node1', '192.0.2.2', 2, 'eth1'),
        ('127.0.0.1', '127.0.0.1', 1, None)]


@pytest.mark.parametrize('text, needle', [
    ('', 'no hosts'),
    ('# nothing\n', 'no hosts'),
    ('a slots=0 address=192.0.2.1\n', 'no host with slots'),
    ('a slots=two address=192.0.2.1\n', 'line 1: slots'),
    ('a address=192.0.2.1\nb cores=4 address=192.0.2.2\n', "line 2: expected NAME"),
    ('a address=192.0.2.1 address=192.0.2.2\n', 'line 1: expected NAME'),
    ('a address=192.0.2.1\na address=192.0.2.1\n', "line 2: host 'a' is listed twice"),
    ('a address=not-an-address\n', 'line 1: address=not-an-address'),
    ('no-such-host.invalid\n', "line 1: cannot resolve 'no-such-host.invalid'"),
])
def test_bad_hosts_files(tmp_path, text, needle):
    path = tmp_path / 'hosts'
    path.write_text(text)
    with pytest.raises(HostsError, match=re.escape(needle)):
        read_hosts(path)


def test_place_round_robin_by_slots():
    a, b, c = Host('a', '192.0.2.1', 0), Host('b', '192.0.2.2', 2), Host('c', '192.0.2.3', 1)
    plan = place([a, b, c], 5, 2, a)
    assert [(role, i, h.name) for role, i, h in plan] == [
        ('scheduler', 0, 'a'), ('server', 0, 'a'), ('server', 1, 'a'),
        ('worker', 0, 'b'), ('worker', 1, 'b'), ('worker', 2, 'c'),
        ('worker', 3, 'b'), ('worker', 4, 'b')]


def test_misfit_memory_and_cores():
    roles = ['scheduler', 'server'] + ['worker'] * 4
    need = 4 * hosts_module.WORKER_PEAK_BYTES + 2 * hosts_module.SERVICE_PEAK_BYTES
    assert misfit(roles, need, 2) is None
    assert misfit(roles, None, 2) is None  # MemAvailable unknown: only the cores count
    assert 'MemAvailable' in misfit(roles, need - 1, 2)
    assert '6 processes for 1 cores' in misfit(roles, need, 1)


def test_a_job_too_big_for_this_machine_is_refused(tmp_path):
    result, seconds = run_launcher('-n', '4096', '--', sys.executable, '-c', 'pass')
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(r'error: -n 4096: 4096 workers and 2 scheduler/servers need about '
                        r'\d+\.\d GiB .*MemAvailable\); --force starts it anyway\n',
                        result.stderr), result.stderr
    assert 'pid' not in result.stderr  # nothing started
    assert seconds < 10


def test_force_starts_a_job_that_does_not_fit(monkeypatch, capsys):
    # this machine, as the launcher sees it, has 1 MB available
    monkeypatch.setattr(launcher, 'local_facts', lambda: (2**20, 2))
    worker = ['--', sys.executable, '-c', 'pass']
    assert launch.main(['-n', '1', *worker]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: -n 1: 1 workers and 2 scheduler/servers') and \
        err.count('\n') == 1, err
    # workers that never join the kvstore: the services linger for --grace, then go
    assert launch.main(['-n', '1', '--grace', '1', '--force', *worker]) == 0
    err = capsys.readouterr().err
    assert 'launch: worker 0 pid' in err and 'error' not in err, err


@pytest.mark.parametrize('args, needle', [
    (['--cwd', '/tmp'], '--cwd needs --hosts'),
    (['--remote', 'ssh {host}'], '--remote needs --hosts'),
    (['--env', 'A=1'], '--env needs --hosts'),
    (['--scheduler-host', 'a'], '--scheduler-host needs --hosts'),
    (['--hosts', 'HOSTS', '--remote', 'ssh'], 'expected a command that names {host}'),
    (['--hosts', 'HOSTS', '--remote', 'ssh "{host}'], 'No closing quotation'),
    (['--hosts', 'HOSTS', '--remote', 'no-such-program-gs {host}'], "cannot run "
                                                                   "'no-such-program-gs'"),
    (['--hosts', 'HOSTS', '--env', '1A=2'], "--env '1A=2'"),
    (['--hosts', 'HOSTS', '--env', 'GLUON_SOFTMAX_SURELY_UNSET'], 'not set here'),
    (['--hosts', 'HOSTS', '--scheduler-host', 'z'], '--scheduler-host z: not a host'),
    (['--hosts', 'MISSING'], '--hosts MISSING: cannot read it'),
    (['--hosts', 'HOSTS', '--port', '70000'], '--port'),
])
def test_host_usage_errors(tmp_path, monkeypatch, args, needle):
    (tmp_path / 'HOSTS').write_text('a address=192.0.2.1\n')
    monkeypatch.chdir(tmp_path)  # the file names in args are relative
    result, _ = run_launcher(*args, '-n', '2', '--', sys.executable)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count('\n') == 1 and result.stderr.startswith('error: '), \
        result.stderr
    assert needle in result.stderr
    assert 'pid' not in result.stderr


def test_a_host_that_does_not_answer(tmp_path):
    (tmp_path / 'hostfile').write_text('a address=192.0.2.1\n')
    marker = f'gluon-softmax-probe-{os.getpid()}'
    # a "remote command" that never answers: the probe gives up after min(30 s, --timeout)
    result, seconds = run_launcher('--hosts', str(tmp_path / 'hostfile'), '--remote',
                                   f'sh -c "sleep 60; : {marker}" {{host}}', '--timeout', '2',
                                   '-n', '1', '--', sys.executable)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f'error: host a (--hosts {tmp_path / "hostfile"}): no answer ' \
                            f'within 2 s\n'
    assert 2 <= seconds < 8
    left = [pid for pid in os.listdir('/proc') if pid.isdigit()
            and any(marker in arg for arg in argv_of(pid))]
    assert left == []  # the waiting remote command was killed


# --- simulated hosts: ip netns exec ---

def test_two_hosts_train_like_one_process(tmp_path, small_data_dir, clean_network):
    """2 workers on 2 hosts, scheduler and server on a third: the metrics of one process."""
    hosts = clean_network.hosts_file(tmp_path / 'hostfile')
    flags = ['--epochs', '2', '--seed', '0', '--data-dir', small_data_dir]
    # the small data set (small_data.py): the point is the processes, not the data
    train = small_data.python_m('gluon_softmax.train', *flags)
    dist = [*train, '--kvstore', 'dist_sync']
    job, job_s = hosts_launch(hosts, '-n', '2', '--timeout', str(JOB_TIMEOUT), '--',
                              *dist, '--out', str(tmp_path / 'hosts'), timeout=JOB_TIMEOUT + 10)
    assert job.returncode == 0, job.stderr
    placed = {key: host for key, (_, host) in host_pids(job.stderr).items()}
    a, b, c = (h.name for h in clean_network.hosts)
    assert placed == {('scheduler', 0): a, ('server', 0): a, ('worker', 0): b,
                      ('worker', 1): c}, job.stderr
    assert clean_network.wait_until_empty() == {a: 0, b: 0, c: 0}

    loopback, loopback_s = run_launcher('-n', '2', '--timeout', str(JOB_TIMEOUT), '--', *dist,
                                        '--out', str(tmp_path / 'loopback'),
                                        timeout=JOB_TIMEOUT + 10)
    assert loopback.returncode == 0, loopback.stderr
    start = time.monotonic()
    single = procs.run([*train, '--out', str(tmp_path / 'single')], env=child_env())
    single_s = time.monotonic() - start
    assert single.returncode == 0, single.stderr

    on_hosts, on_loopback, one = (json.loads((tmp_path / name / 'metrics.json').read_text())
                                  for name in ('hosts', 'loopback', 'single'))
    digests = on_hosts['parameter_sha256_by_worker']
    assert len(digests) == 2 and digests[0] == digests[1]
    # the same computation as the loopback job, only over a network: bitwise the same end
    assert digests == on_loopback['parameter_sha256_by_worker']
    assert (tmp_path / 'hosts' / 'model.params').read_bytes() == \
        (tmp_path / 'loopback' / 'model.params').read_bytes()
    # and one process's training, up to the order of additions
    for d, o in zip(on_hosts['epochs'], one['epochs'], strict=True):
        assert d['train_loss'] == pytest.approx(o['train_loss'], rel=1e-4)
        assert d['test_acc'] == pytest.approx(o['test_acc'], abs=1e-3)
    print(f'\ntimings: 2 hosts {job_s:.1f} s, loopback job {loopback_s:.1f} s, one process '
          f'{single_s:.1f} s; epoch seconds: hosts {[e["seconds"] for e in on_hosts["epochs"]]}'
          f', loopback {[e["seconds"] for e in on_loopback["epochs"]]}, one '
          f'{[e["seconds"] for e in one["epochs"]]}')


def test_a_killed_worker_stops_the_job_on_every_host(tmp_path, small_data_dir, clean_network):
    hosts = clean_network.hosts_file(tmp_path / 'hostfile')
    out, err_path, grace = tmp_path / 'run', tmp_path / 'launch.err', 3
    with open(err_path, 'w') as err:
        job = subprocess.Popen([*LAUNCH, '--hosts', hosts, '--remote', NETNS_REMOTE, '-n', '2',
                                '--timeout', str(JOB_TIMEOUT), '--grace', str(grace), '--',
                                *small_data.python_m(
                                    'gluon_softmax.train', '--epochs', '500', '--seed', '0',
                                    '--data-dir', small_data_dir, '--kvstore', 'dist_sync',
                                    '--out', str(out))],
                               stdout=subprocess.DEVNULL, stderr=err, env=child_env())
    last = clean_network.hosts[2]
    with ended(job):
        wait_for_files([out / 'metrics.json'], 120)  # the first epoch is done
        before = clean_network.counts()
        # the training process itself (python small_data.py DIR gluon_softmax.train ...), not
        # the wrapper around it (python -c WRAPPER ...)
        victim = next(pid for pid in last.pids()
                      if argv_of(pid)[1:2] == [small_data.command(None, '')[1]])
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        status = job.wait(timeout=grace + 30)
        took = time.monotonic() - killed_at
    stderr = err_path.read_text()
    assert status != 0 and took < grace + 15, (status, took, stderr)
    assert error_lines(stderr)[0].startswith(f'error: worker 1 on {last.name} '), stderr
    after = clean_network.wait_until_empty(seconds=2)
    print(f'\nprocesses per namespace: before the kill {before}, after the job {after}')
    assert after == {h.name: 0 for h in clean_network.hosts}


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_a_signal_reaches_the_workers_on_their_hosts(tmp_path, clean_network, background, signum):
    hosts = clean_network.hosts_file(tmp_path / 'hostfile')
    proc = background('--hosts', hosts, '--remote', NETNS_REMOTE, '-n', '2', '--grace', '5',
                      '--', *script(tmp_path, ON_SIGNAL.replace('SIGNUM', signum.name)))
    wait_for_files([tmp_path / 'pid-0', tmp_path / 'pid-1'])
    sent_at = time.monotonic()
    proc.send_signal(signum)
    _, stderr = procs.communicate(proc, RUN_TIMEOUT)
    took = time.monotonic() - sent_at
    # each worker ran its own handler for that very signal, on its own host, at once
    handled = sorted(path.name for path in tmp_path.glob('interrupted-*'))
    assert (proc.returncode, handled, error_lines(stderr)) == (
        128 + signum, ['interrupted-0', 'interrupted-1'],
        [f'error: interrupted by {signum.name}; stopped all 4 processes']), stderr
    assert took < 5, stderr  # no grace period spent
    assert clean_network.wait_until_empty(seconds=2) == {h.name: 0 for h in clean_network.hosts}


def test_a_failing_worker_status_is_the_exit_status(tmp_path, clean_network):
    hosts = clean_network.hosts_file(tmp_path / 'hostfile')
    result, seconds = hosts_launch(hosts, '-n', '2', '--grace', '2', '--',
                                   *script(tmp_path, FAIL_EARLY))
    assert result.returncode == 3, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and re.fullmatch(
        r'error: worker [01] on gsns\w+ \(pid \d+\) exited with status 3; stopped the others',
        lines[0]), result.stderr
    assert seconds < 20
    assert clean_network.wait_until_empty(seconds=2) == {h.name: 0 for h in clean_network.hosts}


def test_the_timeout_holds_on_every_host(tmp_path, clean_network):
    hosts = clean_network.hosts_file(tmp_path / 'hostfile')
    result, seconds = hosts_launch(hosts, '-n', '2', '--timeout', '3', '--grace', '1', '--',
                                   *script(tmp_path, HANG))
    assert result.returncode == 124, result.stderr
    assert error_lines(result.stderr)[0].startswith('error: timed out after 3 s'), result.stderr
    assert 3 <= seconds < 10
    assert clean_network.wait_until_empty(seconds=2) == {h.name: 0 for h in clean_network.hosts}


def test_a_host_that_is_not_there(tmp_path, clean_network):
    a, b, _ = clean_network.hosts
    hosts = tmp_path / 'hostfile'
    hosts.write_text(f'{a.name} slots=0 address={a.address}\n'
                     f'gsns-missing address=192.0.2.9\n{b.name} address={b.address}\n')
    result, seconds = hosts_launch(str(hosts), '-n', '2', '--', sys.executable)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count('\n') == 1 and result.stderr.startswith(
        f'error: host gsns-missing (--hosts {hosts}): cannot run'), result.stderr
    assert 'Cannot open network namespace' in result.stderr and 'pid' not in result.stderr
    assert seconds < 15


@pytest.mark.parametrize('args, said', [
    (['--cwd', '/nonexistent-gs'], "can't cd to /nonexistent-gs"),
    (['--remote', 'ip netns exec {host} false'], 'status 1): no output'),
])
def test_a_remote_command_that_fails_at_once(tmp_path, clean_network, args, said):
    hosts = clean_network.hosts_file(tmp_path / 'hostfile')
    result, seconds = hosts_launch(hosts, *args, '-n', '2', '--', sys.executable)
    assert result.returncode == 2, result.stderr
    first = clean_network.hosts[0].name
    assert result.stderr.count('\n') == 1 and result.stderr.startswith(
        f'error: host {first} (--hosts {hosts}): cannot run {sys.executable}'), result.stderr
    assert said in result.stderr and 'pid' not in result.stderr
    assert seconds < 15


# --- simulated hosts: ssh ---

def ssh_remote(sshd):
    """The --remote template: ssh with the throwaway key, from the first namespace."""
    return shlex.join([*sshd.client(), '{host}'])


def ssh_hosts_file(path, network):
    """A hosts file naming the hosts by address, as ssh reaches them."""
    path.write_text(''.join(f'{h.address} slots={n} interface={INTERFACE}\n'
                            for h, n in zip(network.hosts, (0, 1, 1))))
    return str(path)


def ssh_env():
    """--env flags: sshd starts a clean environment, so what the workers need is passed."""
    names = [name for name in ('PYTHONPATH',) if name in os.environ]
    return [f for name in names for f in ('--env', name)] + ['--env', 'OMP_NUM_THREADS=1']


def test_ssh_job_sums_over_hosts(tmp_path, sshd, clean_network):
    hosts = ssh_hosts_file(tmp_path / 'hostfile', clean_network)
    result, _ = run_launcher('--hosts', hosts, '--remote', ssh_remote(sshd), *ssh_env(),
                             '--cwd', str(tmp_path), '-n', '2', '--grace', '5', '--',
                             *script(tmp_path, SUM))
    assert result.returncode == 0, result.stderr
    ranks = sorted((tmp_path / f'rank-{r}').read_text().split() for r in range(2))
    assert ranks == [['0', '2', '3.0'], ['1', '2', '3.0']]
    placed = {key: host for key, (_, host) in host_pids(result.stderr).items()}
    assert placed[('worker', 0)] == '192.0.2.2' and placed[('worker', 1)] == '192.0.2.3'
    assert clean_network.wait_until_empty() == \
        {h.name: 0 for h in clean_network.hosts}


def test_a_killed_ssh_client_takes_the_remote_process_with_it(tmp_path, sshd, clean_network):
    hosts = ssh_hosts_file(tmp_path / 'hostfile', clean_network)
    proc = subprocess.Popen([*LAUNCH, '--hosts', hosts, '--remote', ssh_remote(sshd),
                             *ssh_env(), '--cwd', str(tmp_path), '-n', '2', '--grace', '2',
                             '--', *script(tmp_path, SPIN)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    with ended(proc):
        clients = {}
        while ('worker', '1') not in clients:  # the launcher announces every process at once
            match = HOST_PID_LINE.match(proc.stderr.readline().strip() or 'EOF')
            assert match or proc.poll() is None, 'the launcher ended before starting worker 1'
            if match:
                clients[match.group(1, 2)] = int(match.group(3))
        wait_for_files([tmp_path / 'pid-0', tmp_path / 'pid-1'])
        third = clean_network.hosts[2]
        remote = next(pid for pid in (int((tmp_path / f'pid-{r}').read_text()) for r in (0, 1))
                      if pid in third.pids())
        # worker 1's local end is its ssh client; killing it only closes the connection, and
        # sshd does not kill what it started
        os.kill(clients[('worker', '1')], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists(f'/proc/{remote}') and time.monotonic() < deadline:
            time.sleep(0.1)
        remote_gone = not os.path.exists(f'/proc/{remote}')
        _, rest = procs.communicate(proc, RUN_TIMEOUT)
    assert remote_gone, 'the remote worker outlived its ssh client'
    assert proc.returncode != 0
    assert re.search(r'^error: worker 1 on 192\.0\.2\.3 \(pid \d+\) was killed by SIGKILL',
                     rest, re.M), rest
    after = clean_network.wait_until_empty()
    print(f'\nprocesses per namespace after the killed ssh client (sshd excluded): {after}')
    assert after == {h.name: 0 for h in clean_network.hosts}


def test_a_host_ssh_cannot_reach(tmp_path, sshd, clean_network):
    hosts = tmp_path / 'hostfile'
    a = clean_network.hosts[0]
    # 192.0.2.9 is on the bridge's subnet, but no namespace has it
    hosts.write_text(f'{a.address} slots=0\n192.0.2.9 interface={INTERFACE}\n')
    result, seconds = run_launcher('--hosts', str(hosts), '--remote', ssh_remote(sshd),
                                   '-n', '1', '--', sys.executable)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count('\n') == 1 and result.stderr.startswith(
        f'error: host 192.0.2.9 (--hosts {hosts}): cannot run {sys.executable}'), result.stderr
    assert 'ssh: connect to host 192.0.2.9' in result.stderr, result.stderr
    assert seconds < 40
    print(f'\n{result.stderr.strip()} ({seconds:.1f} s)')
