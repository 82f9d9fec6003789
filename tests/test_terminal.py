"""What the terminal shows: an early first line, --help everywhere, a progress bar that talks."""
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from gluon_softmax.train import plural, program_name

import procs

# Runs the CLI with an import hook that prints a marker the moment MXNet starts to load.
MARK_MXNET_IMPORT = r'''
import sys
class Marker:
    def find_spec(self, name, path=None, target=None):
        if name == 'mxnet':
            print('<mxnet import starts>', flush=True)
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, Marker())
sys.argv[0] = 'gluon-softmax-train'
from gluon_softmax.train import program
program()
'''


@pytest.mark.slow  # seconds each: the full suite only (make test-fast leaves it out)
def test_the_first_line_comes_before_mxnet_is_imported(tmp_path):
    result = subprocess.run([sys.executable, '-c', MARK_MXNET_IMPORT, '--data-dir',
                             str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'run')],
                            capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert lines[:2] == ['loading MXNet and Fashion-MNIST ...', '<mxnet import starts>'], lines
    assert result.returncode == 2 and result.stderr.startswith('error: ')


@pytest.mark.parametrize('module, prog', [
    ('gluon_softmax', 'python -m gluon_softmax'),
    ('gluon_softmax.train', 'python -m gluon_softmax.train'),
    ('gluon_softmax.data', 'python -m gluon_softmax.data'),
    ('gluon_softmax.data_files', 'python -m gluon_softmax.data_files'),
    ('gluon_softmax.launch', 'python -m gluon_softmax.launch'),
    ('gluon_softmax.bench', 'python -m gluon_softmax.bench'),
])
def test_every_entry_point_answers_help(module, prog):
    result = procs.run([sys.executable, '-m', module, '--help'])  # a fork of the tests' zygote
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f'usage: {prog} ') and result.stderr == ''


def test_the_console_script_names_itself():
    assert program_name('/venv/bin/gluon-softmax-train') == 'gluon-softmax-train'
    assert program_name('/repo/gluon_softmax/__main__.py') == 'python -m gluon_softmax'
    assert program_name('/repo/gluon_softmax/train.py') == 'python -m gluon_softmax.train'


def test_plural():
    assert [plural(n, 'epoch') for n in (0, 1, 2)] == ['0 epochs', '1 epoch', '2 epochs']


def screen_lines(raw):
    """The text a terminal shows for ``raw`` output: ``\\r`` returns, later text overwrites."""
    lines, line, col = [], [], 0
    for char in re.sub(r'\x1b\[[0-9;?]*[A-Za-z]', '', raw):  # drop cursor/colour sequences
        if char == '\n':
            lines.append(''.join(line).rstrip())
            line, col = [], 0
        elif char == '\r':
            col = 0
        else:
            line[col:col + 1] = [char] if col < len(line) else line[col:] + [char]
            col += 1
    lines.append(''.join(line).rstrip())
    return lines


def read_until(fd, proc, pattern, seconds):
    """Read the pty until ``pattern`` shows up in what was read (or the time is up)."""
    out, deadline = b'', time.monotonic() + seconds
    while time.monotonic() < deadline and not re.search(pattern, out):
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


@pytest.mark.slow
@pytest.mark.integration
def test_the_progress_bar_shows_epoch_and_loss_and_is_cleared_on_ctrl_c(tmp_path, real_data_dir):
    # the book's DataLoader path: an epoch takes seconds, so the bar is drawn many times
    primary, secondary = pty.openpty()
    # a terminal of 24 x 120 (a fresh pty reports 0 columns, and tqdm then draws nothing)
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, '-m', 'gluon_softmax.train', '--loader',
                             'dataloader', '--epochs', '2', '--seed', '0', '--out',
                             str(tmp_path / 'run')], stdin=secondary, stdout=secondary,
                            stderr=secondary)
    os.close(secondary)
    try:
        out = read_until(primary, proc, rb'epoch 1/2[^\r\n]*/235[^\r\n]*loss \d\.\d{4}', 240)
        assert re.search(rb'epoch 1/2[^\r\n]*\d+/235[^\r\n]*loss \d\.\d{4}', out), out[-2000:]
        proc.send_signal(signal.SIGINT)
        out += read_until(primary, proc, rb'interrupted \(SIGINT\)[^\n]*\n', 60)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
        os.close(primary)
    shown = [line for line in screen_lines(out.decode(errors='replace')) if line]
    # no half bar left behind: every line on screen is a line the CLI meant to leave
    assert not [line for line in shown if re.search(r'\d+/235', line)], shown
    assert shown[-1].startswith('interrupted (SIGINT) after 0 epochs; no epoch finished')
