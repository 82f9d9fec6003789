"""The tests' own child-process helper (procs.py): a hung child fails the test quickly, naming
what hung and showing the Python stacks of its processes, and leaves none of them behind."""
import subprocess
import sys
import textwrap
import time

import pytest

import procs

# a child that forks a grandchild (as a DataLoader does) and both wait forever in named functions
# (each says so on stdout from inside its function, so both are there when the wait begins)
HANGING = textwrap.dedent(r'''
    import os, sys, time
    def grandchild_waits_forever():
        os.write(1, b'%d\n' % os.getpid())  # one write: the two processes share the pipe
        time.sleep(10000)
    def child_waits_forever():
        print('started', file=sys.stderr, flush=True)
        os.write(1, b'child\n')
        time.sleep(10000)
    if os.fork() == 0:
        grandchild_waits_forever()
    child_waits_forever()
''')


def gone(pid, seconds=10):
    """True once ``pid`` no longer exists (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f'/proc/{pid}/stat') as f:
                if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow  # seconds each: the full suite only (make test-fast leaves it out)
def test_a_hung_child_fails_with_the_stacks_of_its_processes():
    proc = procs.start([sys.executable, '-c', HANGING], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    lines = {proc.stdout.readline().strip(), proc.stdout.readline().strip()}
    grandchild = int((lines - {'child'}).pop())
    with pytest.raises(pytest.fail.Exception) as info:
        procs.communicate(proc, timeout=3, what='the hanging child')
    message = str(info.value)
    assert message.startswith('hang: the hanging child still running after 3 s')
    assert 'started' in message  # its stderr
    assert 'child_waits_forever' in message and 'grandchild_waits_forever' in message
    assert gone(proc.pid) and gone(grandchild)


def test_run_returns_like_subprocess_run_and_sets_faulthandler():
    code = 'import os, sys; print(os.environ["PYTHONFAULTHANDLER"]); sys.exit(3)'
    result = procs.run([sys.executable, '-c', code])
    assert result.returncode == 3 and result.stdout == '1\n'


@pytest.mark.slow  # seconds each: the full suite only (make test-fast leaves it out)
def test_read_until_fails_when_the_line_never_comes():
    proc = procs.start([sys.executable, '-c', 'import time\nprint("epoch 0", flush=True)\n'
                        'def waits_for_nothing():\n    time.sleep(10000)\nwaits_for_nothing()'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with pytest.raises(pytest.fail.Exception) as info:
        procs.read_until(proc, 'epoch 1', timeout=3)
    assert "no 'epoch 1' line" in str(info.value) and 'waits_for_nothing' in str(info.value)
    assert gone(proc.pid)


def test_a_ci_leg_test_runs_everywhere_but_in_ci_on_another_python():
    from conftest import CI_VARIABLE, ci_leg_skip
    assert ci_leg_skip('3.12', '3.11', {}) is None  # make test on any machine: it runs
    assert ci_leg_skip('3.12', '3.12', {CI_VARIABLE: '1'}) is None
    assert '3.12 leg' in ci_leg_skip('3.12', '3.11', {CI_VARIABLE: '1'})


def test_every_ci_leg_is_a_leg_ci_runs():
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parent
    legs = re.search(r'for minor in ([\d ]+); do', (root.parent / '.ci' / 'run').read_text())
    runs = {f'3.{minor}' for minor in legs.group(1).split()}
    marked = {m for path in root.glob('test_*.py')
              for m in re.findall(r"ci_leg\('(3\.\d+)'\)", path.read_text(encoding='utf-8'))}
    assert marked and marked <= runs, (marked, runs)
    assert 'export GLUON_SOFTMAX_CI=1' in (root.parent / '.ci' / 'run').read_text()
