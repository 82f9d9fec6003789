"""Simulated hosts: Linux network namespaces on one bridge, and sshd inside them.

The bridge lives in a namespace of its own (the switch), not in this machine's: there the
kernel may pass bridged frames through this machine's firewall (``bridge-nf-call-iptables``, on
here), which measured 12.5 s of dropped connections before the namespaces reached each other.

Every name carries the test session's pid, and every address is from 192.0.2.0/24
(TEST-NET-1), which only exists inside these namespaces: nothing here sends traffic
anywhere else.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

SUBNET_PREFIX = '192.0.2.'
INTERFACE = 'eth0'  # the name of each namespace's end of its veth pair, inside the namespace
COMMAND_SECONDS = 20
SSH_PORT = 22


class NetnsUnavailable(Exception):
    """Namespaces cannot be made here; the message says why."""


def ip(*args, check=True):
    """Run ``ip ARGS``; raise NetnsUnavailable with its message when it fails and ``check``."""
    result = subprocess.run(['ip', *args], capture_output=True, text=True,
                            timeout=COMMAND_SECONDS)
    if check and result.returncode != 0:
        raise NetnsUnavailable(f'ip {" ".join(args)}: {result.stderr.strip()}')
    return result


class SimulatedHost:
    """One namespace: its name (what ``ip netns exec`` takes) and its address on the bridge."""

    def __init__(self, name, address):
        self.name, self.address = name, address

    def pids(self):
        """The pids of every process in the namespace."""
        out = ip('netns', 'pids', self.name, check=False).stdout
        return [int(pid) for pid in out.split()]

    def run(self, *command, **kwargs):
        """``subprocess.run`` of ``command`` inside the namespace."""
        return subprocess.run(['ip', 'netns', 'exec', self.name, *command], **kwargs)


class Network:
    """``count`` namespaces on one bridge, loopback up in each; :meth:`remove` undoes it all."""

    def __init__(self, count, tag=None):
        tag = tag or str(os.getpid())
        self.bridge = 'br0'  # inside the switch's namespace
        self.switch = f'gsns{tag}sw'
        self.hosts = [SimulatedHost(f'gsns{tag}{chr(ord("a") + i)}', f'{SUBNET_PREFIX}{i + 1}')
                      for i in range(count)]
        self.peers = [f'gsv{tag}{chr(ord("a") + i)}' for i in range(count)]
        self.daemons = set()  # pids that belong to the simulated hosts, not to a job (sshd)

    def create(self):
        """Make the bridge and the namespaces; on any failure remove what was made, then raise."""
        if os.geteuid() != 0:
            raise NetnsUnavailable('network namespaces need root (CAP_NET_ADMIN)')
        if shutil.which('ip') is None:
            raise NetnsUnavailable('no `ip` command (apt-get install iproute2)')
        try:
            ip('netns', 'add', self.switch)
            ip('-n', self.switch, 'link', 'add', self.bridge, 'type', 'bridge')
            ip('-n', self.switch, 'link', 'set', self.bridge, 'up')
            for host, peer in zip(self.hosts, self.peers):
                ip('netns', 'add', host.name)
                ip('-n', host.name, 'link', 'set', 'lo', 'up')
                # one end inside the namespace (named eth0 there), the other on the bridge
                ip('link', 'add', INTERFACE, 'netns', host.name, 'type', 'veth',
                   'peer', 'name', peer, 'netns', self.switch)
                ip('-n', self.switch, 'link', 'set', peer, 'master', self.bridge)
                ip('-n', self.switch, 'link', 'set', peer, 'up')
                ip('-n', host.name, 'addr', 'add', f'{host.address}/24', 'dev', INTERFACE)
                ip('-n', host.name, 'link', 'set', INTERFACE, 'up')
            self.wait_connected()
        except (NetnsUnavailable, OSError, subprocess.TimeoutExpired) as e:
            self.remove()
            raise NetnsUnavailable(str(e)) from None
        return self

    def wait_connected(self, seconds=COMMAND_SECONDS):
        """Wait until every namespace reaches every other one over TCP (refused is reached).

        With the bridge in its own namespace the first round passes (0.3 s for the whole
        network); with it in this machine's, connections timed out for 12.5 s (module
        docstring). The check stays: a network that cannot carry TCP fails here, in one place.
        """
        check = ('import socket, sys\n'
                 'for address in sys.argv[1:]:\n'
                 '    try:\n'
                 '        socket.create_connection((address, 9), timeout=0.5).close()\n'
                 '    except ConnectionRefusedError:\n'
                 '        pass\n')
        deadline = time.monotonic() + seconds
        while True:
            results = [host.run(sys.executable, '-c', check,
                                *(h.address for h in self.hosts if h is not host),
                                capture_output=True, timeout=seconds).returncode
                       for host in self.hosts]
            if not any(results):
                return
            if time.monotonic() > deadline:
                raise NetnsUnavailable(f'the namespaces cannot reach each other over '
                                       f'{self.bridge} of {self.switch} after {seconds} s')

    def job_pids(self, host):
        """The pids in ``host``'s namespace but the daemons'."""
        return [pid for pid in host.pids() if pid not in self.daemons]

    def kill_all(self, daemons=False):
        """SIGKILL every process left in the namespaces (and the daemons); the pids it killed."""
        killed = []
        for host in self.hosts:
            for pid in host.pids() if daemons else self.job_pids(host):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        return killed

    def remove(self):
        """Kill what runs in the namespaces, delete them (their veth pairs and the bridge go
        with them)."""
        self.kill_all(daemons=True)
        for host in self.hosts:
            ip('netns', 'del', host.name, check=False)
        ip('netns', 'del', self.switch, check=False)

    def hosts_file(self, path, slots=(0, 1, 1)):
        """Write a hosts file naming the namespaces (``{host}`` is the namespace); its path."""
        path.write_text(''.join(f'{h.name} slots={n} address={h.address} interface={INTERFACE}\n'
                                for h, n in zip(self.hosts, slots)))
        return str(path)

    def counts(self):
        """``{namespace: number of processes in it}``, the daemons left out."""
        return {host.name: len(self.job_pids(host)) for host in self.hosts}

    def wait_until_empty(self, seconds=10):
        """Wait until no process (but a daemon) is left in any namespace; the counts."""
        deadline = time.monotonic() + seconds
        while True:
            counts = self.counts()
            if not any(counts.values()) or time.monotonic() > deadline:
                return counts
            time.sleep(0.05)


SSHD_CONFIG = '''\
ListenAddress {address}
Port {port}
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/client_key.pub
PidFile {dir}/sshd-{address}.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
'''
SSH_CONFIG = '''\
IdentityFile {dir}/client_key
IdentitiesOnly yes
StrictHostKeyChecking no
UserKnownHostsFile /dev/null
LogLevel ERROR
Port {port}
ConnectTimeout 10
'''


class Sshd:
    """Debian's sshd in every namespace, listening on its address only, with throwaway keys."""

    def __init__(self, network, directory):
        self.network, self.dir = network, directory
        self.procs = []

    def start(self):
        """Make the keys and configs, start the daemons, wait until each accepts; self."""
        sshd = shutil.which('sshd') or '/usr/sbin/sshd'
        if not os.path.exists(sshd) or shutil.which('ssh') is None:
            raise NetnsUnavailable('no sshd or ssh (apt-get install openssh-server '
                                   'openssh-client)')
        os.makedirs('/run/sshd', exist_ok=True)  # sshd's privilege separation directory
        for name in ('host_key', 'client_key'):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                            f'{self.dir}/{name}'], check=True, timeout=COMMAND_SECONDS)
        with open(self.config_path(), 'w') as f:
            f.write(SSH_CONFIG.format(dir=self.dir, port=SSH_PORT))
        for host in self.network.hosts:
            config = f'{self.dir}/sshd-{host.address}.conf'
            with open(config, 'w') as f:
                f.write(SSHD_CONFIG.format(dir=self.dir, address=host.address, port=SSH_PORT))
            self.procs.append(subprocess.Popen(
                ['ip', 'netns', 'exec', host.name, sshd, '-D', '-e', '-f', config],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(f'{self.dir}/sshd-{host.address}.log', 'w')))
            self.network.daemons.add(self.procs[-1].pid)
        deadline = time.monotonic() + COMMAND_SECONDS
        for host in self.network.hosts:
            while self.ssh(host, 'true').returncode != 0:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    raise NetnsUnavailable(f'sshd on {host.address} does not answer: '
                                           + open(f'{self.dir}/sshd-{host.address}.log').read())
                time.sleep(0.2)
        # The server's side of each probe (sshd's per-connection process) can outlive the
        # client for a moment; the tests start from empty namespaces.
        left = self.network.wait_until_empty(COMMAND_SECONDS)
        if any(left.values()):
            raise NetnsUnavailable(f'the probes of the ssh daemons are still running: {left}')
        return self

    def config_path(self):
        """The ssh client's configuration file: the throwaway key, no host key checks."""
        return f'{self.dir}/ssh_config'

    def client(self):
        """The ssh client command, run in the first namespace (the root one has no route)."""
        return ['ip', 'netns', 'exec', self.network.hosts[0].name, 'ssh', '-F',
                self.config_path(), '-o', 'BatchMode=yes']

    def ssh(self, host, line):
        """Run the shell command ``line`` on ``host`` over ssh."""
        return subprocess.run([*self.client(), host.address, line], capture_output=True,
                              text=True, timeout=COMMAND_SECONDS)

    def stop(self):
        """Stop the daemons."""
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=COMMAND_SECONDS)
            self.network.daemons.discard(proc.pid)
