"""Issue 22, case 9: Ctrl-C of a 2-worker dist_sync job under the launcher.

The launcher forwards the signal to every worker. A worker that left at once left its peer
blocked inside MXNet, in a collective waiting for it, where no Python signal handler runs: the
launcher then killed it after twice --grace, and when that peer was worker 0, metrics.json
stayed ``running`` with no resume hint. Now the workers stop at the same batch (the divergence
check also sums who got a signal) and worker 0 records the run as interrupted.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

import procs
import small_data

pytestmark = pytest.mark.slow

# A worker still in MXNet after a grace this long was blocked there: the launcher would wait
# two of them (120 s) and the test's bound (procs.HANG_SECONDS) ends first, with the stacks.
GRACE = 60


def job(data_dir, out):
    """The launcher running 2 workers + 1 server on the small data set, many short epochs."""
    train = small_data.command(data_dir, 'gluon_softmax.train', '--data-dir', data_dir,
                               '--kvstore', 'dist_sync', '--epochs', 300, '--seed', 3,
                               '--batch-size', 128, '--out', out)
    return [sys.executable, '-m', 'gluon_softmax.launch', '-n', '2', '-s', '1', '--grace',
            str(GRACE), '--', *train]


# A few tries, each Ctrl-C'd at another point of training: after the 1st, 3rd, 6th epoch line
# (a random batch of the next epoch by the time the signal arrives).
@pytest.mark.parametrize('after_epoch', [1, 3, 6])
def test_ctrl_c_of_a_job_records_it_interrupted_with_the_resume_hint(tmp_path, small_data_copy,
                                                                     after_epoch):
    out = tmp_path / 'run'
    proc = procs.start(job(small_data_copy, out), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    procs.read_until(proc, f'epoch {after_epoch:>3}/300', what='the job (until an epoch line)')
    # as a terminal does: to the launcher's process group (the workers are in sessions of
    # their own, and get it from the launcher)
    procs.signal_group(proc, signal.SIGINT)
    _, err = procs.communicate(proc, what='the interrupted job')
    assert proc.returncode == 128 + signal.SIGINT, err
    assert 'Traceback' not in err, err
    with open(out / 'metrics.json', encoding='utf-8') as f:
        metrics = json.load(f)
    assert metrics['status'] == 'interrupted', err
    done = len(metrics['epochs'])
    assert done >= after_epoch
    lines = [line for line in err.splitlines() if not line.startswith('launch: ')]
    assert lines == [
        f'interrupted (SIGINT) after {done} epoch{"s" if done > 1 else ""}; continue with: '
        f'{sys.executable} -m gluon_softmax.train --resume {os.path.abspath(out)} '
        f'--data-dir {small_data_copy}',
        'error: interrupted by SIGINT; stopped all 4 processes'], err
