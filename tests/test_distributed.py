"""Training over worker processes: the launcher, ``--kvstore dist_sync``, on loopback.

Each job here is a real MXNet parameter-server job (scheduler, server, two
workers) started by ``python -m gluon_softmax.launch``, on the small copy of the data set
(small_data.py): what is tested is how the processes train together, not the data.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import pytest

from gluon_softmax.compose import build_model
from gluon_softmax.run.settings import Recipe
from gluon_softmax.scale.workers import Workers

import procs
import small_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # launched jobs: not in test-fast
LAUNCH = [sys.executable, '-m', 'gluon_softmax.launch']
# the launcher's own bound on a job, under the tests' (procs.HANG_SECONDS): it names what hung
JOB_TIMEOUT = '80'


def train(*flags):
    """The training command with ``flags`` (on the small copy when --data-dir names it)."""
    return small_data.python_m('gluon_softmax.train', *flags)


def launched_pids(stderr):
    """``{(role, index): pid}`` from the launcher's ``launch: <role> <i> pid <PID>`` lines."""
    return {(role, int(i)): int(pid)
            for role, i, pid in re.findall(r'^launch: (\w+) (\d+) pid (\d+)$', stderr, re.M)}


def alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def metrics_of(out):
    return json.loads((out / 'metrics.json').read_text())


def saved_digest(out, impl):
    """SHA-256 (as the workers compute it) of the parameters in ``out/model.params``."""
    model = build_model(Recipe(impl=impl), [mx.cpu()], 1)
    model.net.load_parameters(str(out / 'model.params'))
    return Workers().digests(model.parameters())[0]


@pytest.mark.parametrize('impl', ['concise', 'scratch'])
def test_two_workers_end_bitwise_equal_and_match_one_process(tmp_path, small_data_dir, impl):
    flags = ['--impl', impl, '--epochs', '2', '--seed', '3', '--data-dir', small_data_dir]
    job = procs.run([*LAUNCH, '-n', '2', '-s', '1', '--timeout', JOB_TIMEOUT, '--',
                     *train(*flags, '--kvstore', 'dist_sync', '--out', tmp_path / 'dist')])
    assert job.returncode == 0, job.stderr
    pids = launched_pids(job.stderr)
    assert sorted(pids) == [('scheduler', 0), ('server', 0), ('worker', 0), ('worker', 1)]
    assert not [pid for pid in pids.values() if alive(pid)]

    dist = metrics_of(tmp_path / 'dist')
    assert dist['status'] == 'complete' and dist['worker_processes'] == 2
    digests = dist['parameter_sha256_by_worker']
    assert len(digests) == 2 and digests[0] == digests[1]
    assert saved_digest(tmp_path / 'dist', impl) == digests[0]
    # only worker 0 printed the progress
    assert job.stdout.count('epoch 2/2') == 1

    single = procs.run(train(*flags, '--out', tmp_path / 'single'))
    assert single.returncode == 0, single.stderr
    one = metrics_of(tmp_path / 'single')
    assert one['worker_processes'] == 1 and 'parameter_sha256_by_worker' not in one
    assert abs(dist['epochs'][-1]['test_acc'] - one['epochs'][-1]['test_acc']) <= 0.01
    # the same global batches, so the same training up to the order of additions
    for d, o in zip(dist['epochs'], one['epochs']):
        assert d['train_loss'] == pytest.approx(o['train_loss'], rel=1e-4)


def test_a_killed_worker_ends_the_whole_job(tmp_path, small_data_dir):
    out, err_path = tmp_path / 'run', tmp_path / 'launch.err'
    grace = 3
    with open(err_path, 'w') as err:
        # more epochs than can end before the kill
        job = procs.start([*LAUNCH, '-n', '2', '--timeout', JOB_TIMEOUT, '--grace', str(grace),
                           '--', *train('--epochs', '100000', '--seed', '0', '--data-dir',
                                        small_data_dir, '--kvstore', 'dist_sync', '--out', out)],
                          stdout=subprocess.DEVNULL, stderr=err)
    try:
        # training is under way once worker 0 has written the first epoch's metrics
        procs.wait_until(lambda: (out / 'metrics.json').exists(), 60, 'the first epoch')
        pids = launched_pids(err_path.read_text())
        os.kill(pids[('worker', 1)], signal.SIGKILL)
        killed_at = time.monotonic()
        status = procs.wait(job, grace + 30, 'the launcher after SIGKILL of worker 1',
                            err_path)
        took = time.monotonic() - killed_at
    finally:
        if job.poll() is None:
            procs.abort(job)
    stderr = err_path.read_text()
    assert status != 0
    assert took < grace + 20, f'the launcher took {took:.1f} s to stop the job'
    assert re.search(r'error: worker 1 .*SIGKILL', stderr), stderr
    assert not [pid for pid in launched_pids(stderr).values() if alive(pid)]
    # the completed epochs' checkpoint survives for --resume
    assert (out / 'checkpoint.npz').exists()


def test_divergence_stops_every_worker_at_the_same_batch(tmp_path, small_data_dir):
    job = procs.run([*LAUNCH, '-n', '2', '--timeout', JOB_TIMEOUT, '--',
                     *train('--lr', '1000', '--seed', '0', '--data-dir', small_data_dir,
                            '--kvstore', 'dist_sync', '--out', tmp_path / 'run')])
    # both workers see the losses summed over the job, so both exit 3, not one left hanging
    assert job.returncode == 3, job.stderr
    assert job.stderr.count('error: training diverged at epoch 1') == 1
    assert metrics_of(tmp_path / 'run')['status'] == 'diverged'
    assert not [pid for pid in launched_pids(job.stderr).values() if alive(pid)]


def test_a_bad_flag_on_the_workers_fails_the_job_with_status_2(tmp_path, small_data_dir):
    taken = tmp_path / 'taken'
    taken.mkdir()
    (taken / 'notes.txt').write_text('not a run directory\n')
    job = procs.run([*LAUNCH, '-n', '2', '--timeout', JOB_TIMEOUT, '--grace', '3', '--',
                     *train('--seed', '0', '--data-dir', small_data_dir, '--kvstore', 'dist_sync',
                            '--out', taken)])
    assert job.returncode == 2, job.stderr
    assert 'error: --out' in job.stderr and 'Traceback' not in job.stderr
    assert sorted(os.listdir(taken)) == ['notes.txt']
    assert not [pid for pid in launched_pids(job.stderr).values() if alive(pid)]


def test_a_job_resumes_like_an_uninterrupted_single_process(tmp_path, small_data_dir):
    flags = ['--momentum', '0.9', '--lr', '0.03', '--seed', '0', '--data-dir', small_data_dir]
    job = [*LAUNCH, '-n', '2', '--timeout', JOB_TIMEOUT, '--']
    first = procs.run([*job, *train('--kvstore', 'dist_sync', '--epochs', '1',
                                    '--out', tmp_path / 'job', *flags)])
    assert first.returncode == 0, first.stderr
    resumed = procs.run([*job, *train('--kvstore', 'dist_sync', '--resume', tmp_path / 'job',
                                      '--epochs', '2', '--data-dir', small_data_dir)])
    assert resumed.returncode == 0, resumed.stderr
    assert 'resumed after epoch 1' in resumed.stdout
    single = procs.run(train('--epochs', '2', '--out', tmp_path / 'single', *flags))
    assert single.returncode == 0, single.stderr
    job_epochs = metrics_of(tmp_path / 'job')['epochs']
    single_epochs = metrics_of(tmp_path / 'single')['epochs']
    assert [e['epoch'] for e in job_epochs] == [1, 2]
    for j, s in zip(job_epochs, single_epochs):
        # momentum included: the optimizer state is saved by worker 0 and restored by all
        assert j['train_loss'] == pytest.approx(s['train_loss'], rel=1e-4)
        assert j['test_acc'] == pytest.approx(s['test_acc'], abs=1e-3)
