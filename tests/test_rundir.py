"""Issue 22, cases 1-7, 12, 14: a run directory is one run's, provably; sizes from outside bounded.

A ``.lock`` that is not a run's lock file, a checkpoint without metrics, a resume
racing an overwrite, an overwrite over odd files, another run's or an inflated
checkpoint, huge counts from the launcher's flags and hosts file, huge device
indices, an unusable working directory: each is one ``error:`` line (exit 2)
or a run that works, and nothing outside the run is touched.
"""
import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import zipfile

import mxnet as mx
import numpy as onp
import pytest

from gluon_softmax.compose import build_model
from gluon_softmax.run import files as files_module
from gluon_softmax.run.checkpoint import (CheckpointError, load_checkpoint, read_checkpoint,
                                      save_checkpoint)
from gluon_softmax.data import set_seed
from gluon_softmax.run.settings import Recipe
# imported now, not first inside a capsys test: progress.progress_bar binds sys.stderr as its
# default argument when imported, and a capsys stream is closed after its test
import gluon_softmax.train  # noqa: F401,E402  pylint: disable=unused-import


def main(argv):
    """``gluon_softmax.train.main(argv)``: its exit status."""
    from gluon_softmax.train import main as cli_main
    try:
        return cli_main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def one_error(capsys):
    """The only line of stderr since the last call, an ``error:`` line without a traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


def metrics_of(out):
    with open(os.path.join(out, 'metrics.json'), encoding='utf-8') as f:
        return json.load(f)


def figures(out):
    """Every number of every epoch but its duration."""
    return [{k: v for k, v in e.items() if k != 'seconds'} for e in metrics_of(out)['epochs']]


def state(directory):
    """``{name: (kind, bytes or link target)}`` of everything in ``directory`` but ``.lock``."""
    result = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            result[name] = ('link', os.readlink(path))
        elif stat.S_ISREG(mode):
            if name != '.lock':
                with open(path, 'rb') as f:
                    result[name] = ('file', f.read())
        else:
            result[name] = (stat.S_IFMT(mode), None)
    return result


# ---------------------------------------------------------------- runs of the real data set

RUN = ('--seed', 7, '--batch-size', 1024)  # the run every test copies: 1 epoch, then 2


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """``(data_dir, one, two)``: a finished 1-epoch run and the same recipe run for 2 epochs."""
    from gluon_softmax import data
    try:
        data_dir = data.find_data_dir()
    except data.DataError as e:
        if os.environ.get('GLUON_SOFTMAX_REQUIRE_DATA') == '1':
            pytest.fail(f'real Fashion-MNIST required: {e}')
        pytest.skip(f'real Fashion-MNIST not installed: {e}')
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    base = tmp_path_factory.mktemp('runs')
    made = []
    for epochs in (1, 2):
        out = base / f'epochs-{epochs}'
        assert main(['--epochs', epochs, *RUN, '--data-dir', data_dir, '--out', out]) == 0
        made.append(out)
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    return (data_dir, *made)


@pytest.fixture
def run(runs, tmp_path):
    """A private copy of the finished 1-epoch run, without its lock file."""
    copy = tmp_path / 'run'
    shutil.copytree(runs[1], copy, ignore=shutil.ignore_patterns('.lock'))
    return copy


# ================================================================= 1. the lock file

def plant_lock(directory, kind, precious):
    """Put a ``.lock`` of ``kind`` in ``directory``; ``precious`` is a file outside it."""
    lock = directory / '.lock'
    if kind == 'symlink':
        lock.symlink_to(precious)
    elif kind == 'dangling-symlink':
        lock.symlink_to(directory.parent / 'nowhere')
    elif kind == 'devnull':
        lock.symlink_to('/dev/null')
    elif kind == 'fifo':
        os.mkfifo(lock)
    elif kind == 'hardlink':
        os.link(precious, lock)
    elif kind == 'text':
        lock.write_text('my notes, not a pid\n')


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('mode', ['new', 'resume'])
@pytest.mark.parametrize('kind, needle', [
    ('symlink', 'symbolic link'),
    ('dangling-symlink', 'symbolic link'),
    ('devnull', 'symbolic link'),
    ('fifo', 'not a regular file'),
    ('hardlink', '2 links'),
    ('text', 'something other than a pid'),
])
def test_a_lock_file_that_is_not_a_runs_is_left_alone(runs, run, tmp_path, capsys, mode, kind,
                                                      needle):
    precious = tmp_path / 'precious'
    precious.write_text('precious data\n')
    out = run if mode == 'resume' else tmp_path / 'new'
    out.mkdir(exist_ok=True)
    plant_lock(out, kind, precious)
    before = state(out)
    argv = (['--resume', out, '--epochs', 2] if mode == 'resume' else
            ['--epochs', 1, '--out', out])
    status = main([*argv, '--data-dir', runs[0]])
    line = one_error(capsys)
    assert status == 2
    assert str(out) in line and needle in line
    assert state(out) == before
    assert precious.read_text() == 'precious data\n'
    assert not (tmp_path / 'nowhere').exists()


# ================================================================= 2. a checkpoint, no metrics

def killed_before_metrics(run):
    """What a run killed between its first checkpoint and its first metrics.json leaves."""
    for name in os.listdir(run):
        if name != 'checkpoint.npz':
            os.remove(run / name)
    return run


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_killed_before_its_metrics_resumes_exactly(runs, run, capsys):
    killed_before_metrics(run)
    assert main(['--resume', run, '--epochs', 2, '--data-dir', runs[0]]) == 0
    assert 'resumed after epoch 1' in capsys.readouterr().out
    assert figures(run) == figures(runs[2])
    assert metrics_of(run)['status'] == 'complete' and metrics_of(run)['seed'] == 7


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('flags, status, needle', [
    (['--epochs', 1], 2, '--resume'),
    (['--epochs', 1, '--overwrite'], 0, None),
], ids=['new', 'overwrite'])
def test_a_run_killed_before_its_metrics_is_a_runs_directory(runs, run, capsys, flags, status,
                                                            needle):
    killed_before_metrics(run)
    assert main([*flags, '--seed', 8, '--data-dir', runs[0], '--out', run]) == status
    if needle:
        line = one_error(capsys)
        assert needle in line and '--overwrite' in line and "not a run's" not in line
        assert sorted(os.listdir(run)) == ['checkpoint.npz']
    else:
        assert metrics_of(run)['seed'] == 8 and metrics_of(run)['status'] == 'complete'


# ================================================================= 3. the lock before any read

@contextlib.contextmanager
def run_held_by_pid_4242(tmp_path):
    """A run directory whose lock another process (pid 4242) holds while it writes
    metrics.json, half done: yields the directory."""
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'metrics.json').write_text('written by the run holding the lock, half done')
    fd = os.open(out / '.lock', os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b'4242\n')
        yield out
    finally:
        os.close(fd)


def test_resume_takes_the_lock_before_it_reads_the_run(tmp_path, capsys):
    with run_held_by_pid_4242(tmp_path) as out:
        assert main(['--resume', out]) == 2
        assert 'in use by another run (pid 4242)' in one_error(capsys)


@pytest.mark.slow
@pytest.mark.integration
def test_an_overwrite_while_a_resume_starts_is_refused(runs, run, capsys, monkeypatch):
    from gluon_softmax import train
    real, inner = train.load_iters, []

    def overwrite_meanwhile(*args, **kwargs):
        # the resume has read its settings and loads the data set: another run starts on it
        if not inner:
            inner.append(None)  # the other run's own data load comes here too
            inner[0] = main(['--out', run, '--overwrite', '--seed', 99, '--lr', 0.5,
                             '--epochs', 2, '--data-dir', runs[0]])
        return real(*args, **kwargs)
    monkeypatch.setattr(train, 'load_iters', overwrite_meanwhile)
    status = main(['--resume', run, '--epochs', 2, '--data-dir', runs[0]])
    err = capsys.readouterr().err
    assert inner == [2] and 'in use by another run' in err, err
    assert status == 0, err
    assert figures(run) == figures(runs[2])
    assert metrics_of(run)['seed'] == 7


# ================================================================= 4. overwrite checks first

def make_odd(run, name, kind, outside):
    path = run / name
    path.unlink()
    if kind == 'directory':
        path.mkdir()
        (path / 'inside').write_text('keep')
    elif kind == 'symlink':
        path.symlink_to(outside)
    elif kind == 'fifo':
        os.mkfifo(path)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('mode', ['overwrite', 'resume'])
@pytest.mark.parametrize('name, kind', [
    ('curves.html', 'directory'),
    ('model.params', 'symlink'),
    ('metrics.json', 'fifo'),
    ('checkpoint.npz', 'symlink'),
])
def test_odd_run_files_are_refused_before_anything_is_removed(runs, run, tmp_path, capsys,
                                                              mode, name, kind):
    outside = tmp_path / 'outside'
    shutil.copy(run / name, outside)  # a symbolic link points to a copy of the file
    kept = outside.read_bytes()
    make_odd(run, name, kind, outside)
    before = state(run)
    argv = (['--resume', run, '--epochs', 2] if mode == 'resume' else
            ['--overwrite', '--epochs', 1, '--out', run])
    status = main([*argv, '--data-dir', runs[0]])
    line = one_error(capsys)
    assert status == 2 and name in line
    assert state(run) == before
    assert outside.read_bytes() == kept


# ================================================================= 5. which run a checkpoint is

@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('change, needle', [
    ('other-run', 'lr 0.3, seed 8'),
    ('edited-lr', 'lr 0.5'),
    ('no-settings', 'does not record which run'),
])
def test_a_checkpoint_of_another_run_is_refused(runs, run, capsys, change, needle):
    path = run / 'checkpoint.npz'
    if change == 'other-run':
        settings = Recipe(seed=8, lr=0.3, batch_size=1024, epochs=1).to_dict()
        set_seed(8)
        model = build_model(Recipe(**settings), [mx.cpu()], 59)
        save_checkpoint(str(path), model, [], settings)
    elif change == 'edited-lr':
        metrics = metrics_of(run)
        metrics['hyperparameters']['lr'] = 0.5
        (run / 'metrics.json').write_text(json.dumps(metrics))
    else:
        rewrite_meta(path, settings=None)
    before = state(run)
    assert main(['--resume', run, '--epochs', 2, '--data-dir', runs[0]]) == 2
    line = one_error(capsys)
    assert str(path) in line and needle in line
    assert state(run) == before


def rewrite_meta(path, **changes):
    """Rewrite the checkpoint at ``path`` with ``meta`` fields changed (None: removed)."""
    with onp.load(path) as f:
        arrays = {name: f[name] for name in f.files}
    meta = json.loads(arrays['meta'].tobytes().decode())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    arrays['meta'] = onp.frombuffer(json.dumps(meta).encode(), dtype=onp.uint8)
    with open(path, 'wb') as f:
        onp.savez(f, **arrays)


def build(seed=1, **recipe):
    set_seed(seed)
    return build_model(Recipe(seed=seed, **recipe), [mx.cpu()], 4)


@pytest.fixture
def saved(tmp_path):
    """``(path, model, settings)``: a checkpoint of a fresh concise model with its settings."""
    model = build(momentum=0.9)
    settings = Recipe(seed=1, momentum=0.9).to_dict()
    path = str(tmp_path / 'checkpoint.npz')
    save_checkpoint(path, model, [], settings)
    return path, model, settings


def test_the_checkpoint_records_its_run_and_a_mismatch_is_refused(saved):
    path, model, settings = saved
    assert load_checkpoint(path, build(momentum=0.9), settings) == []
    assert load_checkpoint(path, build(momentum=0.9), {**settings, 'epochs': 20}) == []
    for change in ({'seed': 2}, {'lr': 0.5}, {'batch_size': 128}):
        with pytest.raises(CheckpointError, match='belongs to another run') as info:
            load_checkpoint(path, build(momentum=0.9), {**settings, **change})
        assert ', '.join(f'{k} {v}' for k, v in change.items()) in str(info.value)


def write_npz(path, members):
    """Write an .npz by hand: ``{name: (header dict, data bytes, compress)}``."""
    with zipfile.ZipFile(path, 'w') as archive:
        for name, (header, data, compress) in members.items():
            content = io.BytesIO()
            onp.lib.format.write_array_header_1_0(content, header)
            content.write(data)
            archive.writestr(name + '.npy', content.getvalue(),
                             zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)


def header(dtype, length):
    return {'descr': onp.dtype(dtype).str, 'fortran_order': False, 'shape': (length,)}


def members_of(path):
    """``{name: (header dict, data bytes, False)}`` of the checkpoint at ``path``."""
    with onp.load(path) as f:
        return {name: (header(f[name].dtype, f[name].size), f[name].tobytes(), False)
                for name in f.files}


@pytest.mark.parametrize('name, member, needle', [
    ('params', (header('uint8', 2 ** 40), b'\0' * 64, False), 'declares 1099511627776 bytes'),
    ('numpy_rng_keys', (header('uint32', 2 ** 40), b'\0' * 64, False), 'not uint32[624]'),
    ('params', (header('uint8', 1 << 20), b'\0' * (1 << 20), False), "than this model's"),
    ('trainer', (header('uint8', 1 << 20), b'\0' * (1 << 20), False), "than this model's"),
    ('params', (header('uint8', 8 << 20), b'\0' * (8 << 20), True), 'params is compressed'),
    ('params', (header('float64', 4), b'\0' * 32, False), 'not uint8'),
    ('extra', (header('uint8', 4), b'\0' * 4, False), "unexpected member 'extra.npy'"),
], ids=['huge-declared', 'huge-rng-keys', 'params-too-big', 'trainer-too-big', 'compressed',
        'params-float64', 'extra-member'])
def test_sizes_in_a_checkpoint_are_checked_before_reading(saved, name, member, needle):
    path, model, _ = saved
    members = members_of(path)
    members[name] = member
    write_npz(path, members)
    with pytest.raises(CheckpointError, match='damaged checkpoint') as info:
        load_checkpoint(path, model)
    assert needle in str(info.value)


# ================================================================= 14. the true cause

def test_checkpoint_errors_name_the_true_cause(saved, tmp_path, monkeypatch):
    path, model, settings = saved
    unreadable = tmp_path / 'dir.npz'
    unreadable.mkdir()  # as root, permissions do not stop a read: a directory does
    with pytest.raises(CheckpointError, match='cannot read it: Is a directory'):
        read_checkpoint(str(unreadable))

    def full_disk(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(files_module.tempfile, 'mkstemp', full_disk)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model, settings)
    assert 'No space left on device' in str(info.value)
    assert 'do not fit' not in str(info.value)


def test_a_mismatched_checkpoint_names_mxnets_reason_not_its_traceback(saved):
    path, model, _ = saved
    members = members_of(path)
    members['params'] = (header('uint8', 1000), b'\0' * 1000, False)  # no MXNet file
    write_npz(path, members)
    with pytest.raises(CheckpointError, match='do not fit') as info:
        load_checkpoint(path, model)
    assert 'Traceback' not in str(info.value)
    assert 'Invalid NDArray file format' in str(info.value)


@pytest.mark.parametrize('argv, needle', [
    (['--resume', ''], "--resume ''"),
    (['--lr', '1e-320'], '--lr'),  # 0 in float32: a run that learns nothing
], ids=['resume-empty', 'lr-zero-in-float32'])
def test_flags_that_cannot_mean_what_they_say_are_refused(tmp_path, capsys, argv, needle):
    # --data-dir nowhere: whatever starts a run fails on the data, with another message
    assert main([*argv, '--data-dir', tmp_path / 'nowhere']) == 2
    assert needle in one_error(capsys)


# ================================================================= 6, 7. counts and indices

@pytest.mark.parametrize('argv, needle', [
    (['-n', '99999999999999999999', '--', 'true'], '-n/--num-workers'),
    (['-n', '4097', '--', 'true'], '-n/--num-workers'),
    (['-n', '1', '-s', '99999999999999999999', '--', 'true'], '-s/--num-servers'),
], ids=['n-huge', 'n-above-bound', 's-huge'])
def test_launcher_counts_are_bounded_before_use(capsys, argv, needle):
    from gluon_softmax import launch
    with pytest.raises(SystemExit) as info:
        launch.parse_args(argv)
    assert info.value.code == 2
    line = one_error(capsys)
    assert needle in line and '4096' in line


@pytest.mark.parametrize('slots', ['99999999999999999999', '4097'])
def test_hosts_file_slots_are_bounded_before_use(tmp_path, slots):
    from gluon_softmax.scale.hosts import HostsError, read_hosts
    path = tmp_path / 'hosts'
    path.write_text(f'a address=127.0.0.1 slots={slots}\n')
    with pytest.raises(HostsError, match=f"line 1: slots must be an integer from 0 to 4096, "
                                         f"got '{slots}'"):
        read_hosts(path)


@pytest.mark.parametrize('spec', ['cpu:2147483648', 'cpu:1024', 'cpu:0,cpu:99999999999999'])
def test_cpu_indices_are_bounded(spec):
    from gluon_softmax.scale.context import ContextError, parse_ctx
    with pytest.raises(ContextError, match='above 1023'):
        parse_ctx(spec)
    assert parse_ctx('cpu:0,cpu:1023') == [mx.cpu(0), mx.cpu(1023)]  # up to the bound


def test_a_non_ascii_digit_index_is_one_error():
    from gluon_softmax.scale.context import ContextError, parse_ctx
    with pytest.raises(ContextError, match='not a number'):
        parse_ctx('cpu:\u00b2')  # '²'.isdigit() is True, int('²') fails


# ================================================================= 12. the default runs/

@pytest.fixture
def read_only():
    """``read_only(path)``: a read-only bind mount of ``path``, undone after the test."""
    done = []

    def mount(path):
        try:
            subprocess.run(['mount', '--bind', str(path), str(path)], check=True, timeout=30,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            pytest.skip(f'cannot bind-mount (needs root): {e}')
        done.append(path)
        subprocess.run(['mount', '-o', 'remount,ro,bind', str(path)], check=True, timeout=30)
    yield mount
    for path in reversed(done):
        if subprocess.run(['umount', str(path)], timeout=30).returncode:
            subprocess.run(['umount', '-l', str(path)], timeout=30)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('cwd_state, needle', [
    ('file-named-runs', 'exists and is not a directory'),
    ('deleted', 'working directory no longer exists'),
    ('read-only', 'Read-only file system'),
])
def test_an_unusable_default_runs_directory_is_one_error(runs, tmp_path, capsys, monkeypatch,
                                                         read_only, cwd_state, needle):
    cwd = tmp_path / 'cwd'
    cwd.mkdir()
    if cwd_state == 'file-named-runs':
        (cwd / 'runs').write_text('my notes')
    elif cwd_state == 'read-only':
        read_only(cwd)  # before the chdir: a process inside keeps the directory under the mount
    monkeypatch.chdir(cwd)
    if cwd_state == 'deleted':
        cwd.rmdir()
    assert main(['--epochs', 1, '--data-dir', runs[0]]) == 2
    line = one_error(capsys)
    assert needle in line and '--out' in line
    if cwd_state == 'file-named-runs':
        assert (cwd / 'runs').read_text() == 'my notes'
