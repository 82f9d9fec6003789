"""Issue 22, case 14: every failure names its true cause in one ``error:`` line.

Weight decay and --max-loss that cannot work (not "try a smaller learning rate"), environment
variables MXNet would abort or hang on, the benchmark's flag errors and its --out, an empty
--out, a file-size limit while the results are written, a distributed resume's lock, and what
the benchmark and the data check were doing when interrupted.
"""
import os
import resource
import signal
import sys

import pytest

import procs
import small_data
from test_rundir import metrics_of, run_held_by_pid_4242


def one_error(err):
    """The only line of ``err``, an ``error:`` line without a traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


def train(data_dir, *args, **kwargs):
    return procs.run(small_data.command(data_dir, 'gluon_softmax.train', '--data-dir', data_dir,
                                        *args), **kwargs)


# ---------------------------------------------------------------- a. settings that cannot work

@pytest.mark.parametrize('argv, needle', [
    # the weight decay's cases took 2-3 s each here, the others well under one: the full suite
    pytest.param(['--wd', '3.3e38'], '--wd 3.3e+38: weight decay too large for --lr 0.1',
                 marks=pytest.mark.slow),
    pytest.param(['--wd', '25'], 'use --wd below 20',  # lr * wd = 2.5: |1 - lr wd| > 1
                 marks=pytest.mark.slow),
    pytest.param(['--wd', '25', '--momentum', '0.5'], None,  # allowed: the bound is 2 (1 + m) / lr
                 marks=pytest.mark.slow),
    (['--max-loss', '1e-300'], '--max-loss 1e-300: below the loss every new run starts at'),
    (['--max-loss', '2'], '--max-loss 2: below the loss every new run starts at'),
], ids=['wd-huge', 'wd-unstable', 'wd-with-momentum-ok', 'max-loss-tiny', 'max-loss-below-start'])
def test_settings_that_cannot_train_are_refused_up_front(tmp_path, small_data_copy, argv,
                                                         needle):
    out = tmp_path / 'run'
    result = train(small_data_copy, '--epochs', 1, '--out', out, *argv)
    if needle is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2
    assert needle in one_error(result.stderr)
    assert not out.exists() or not os.listdir(out)  # refused before anything was written


@pytest.mark.slow
def test_a_bound_below_the_loss_is_named_as_the_cause_of_a_resumed_divergence(
        tmp_path, small_data_copy):
    out = tmp_path / 'run'
    assert train(small_data_copy, '--epochs', 1, '--out', out).returncode == 0
    result = train(small_data_copy, '--resume', out, '--epochs', 2, '--max-loss', '0.01')
    assert result.returncode == 3
    line = one_error(result.stderr)
    assert 'above --max-loss 0.01; that is not divergence' in line, line
    assert '--max-loss is too low' in line and 'smaller' not in line, line
    assert metrics_of(out)['status'] == 'diverged'


# ---------------------------------------------------------------- b. MXNet's environment

@pytest.mark.parametrize('variable, value, needle', [
    ('OMP_NUM_THREADS', 'abc', 'OMP_NUM_THREADS=abc: not a whole number'),
    ('OMP_NUM_THREADS', '0', 'OMP_NUM_THREADS=0: not a number of threads'),
    ('MXNET_ENGINE_TYPE', 'Bogus', 'MXNET_ENGINE_TYPE=Bogus: not an MXNet engine'),
    ('MXNET_CPU_WORKER_NTHREADS', 'abc', 'MXNET_CPU_WORKER_NTHREADS=abc: not a whole number'),
    ('MXNET_CPU_WORKER_NTHREADS', '0', 'MXNET_CPU_WORKER_NTHREADS=0: not a number of threads'),
    ('MXNET_EXEC_BULK_EXEC_TRAIN', 'abc', 'MXNET_EXEC_BULK_EXEC_TRAIN=abc: not true, false'),
])
@pytest.mark.parametrize('module', ['train', 'bench', 'launch', 'data'])
def test_an_environment_variable_mxnet_cannot_read_is_one_error(tmp_path, module, variable,
                                                                value, needle):
    # before: exit 134 (a C++ abort), MXNet's traceback, or a hang (a thread count of 0)
    args = {'launch': ['-n', '1', '--', sys.executable, '-m', 'gluon_softmax.train',
                       '--kvstore', 'dist_sync'],
            'train': ['--out', tmp_path / 'run', '--data-dir', tmp_path / 'nowhere'],
            'bench': ['--out', tmp_path / 'bench.json', '--data-dir', tmp_path / 'nowhere'],
            'data': [tmp_path / 'nowhere']}[module]
    result = procs.run([sys.executable, '-m', f'gluon_softmax.{module}', *args],
                       env={**os.environ, variable: value})
    assert result.returncode == 2, result.stderr
    assert needle in one_error(result.stderr)


def test_values_mxnet_reads_are_accepted():
    from gluon_softmax.run.environment import environment_problem
    assert environment_problem({'OMP_NUM_THREADS': ' 2', 'MXNET_ENGINE_TYPE': 'NaiveEngine',
                                'MXNET_EXEC_BULK_EXEC_TRAIN': 'False',
                                'MXNET_CPU_WORKER_NTHREADS': '', 'MXNET_CPU_TEMP_COPY': '-1',
                                'MXNET_TUNING_WEIGHT_SCALE': '0.5'}) is None


# ---------------------------------------------------------------- c, f, g. the bench's flags

@pytest.mark.parametrize('argv, needle', [
    (['--epochs', '0'], 'argument --epochs: expected an integer >= 1'),
    (['--bogus'], 'unrecognized arguments: --bogus'),
    (['--out', ''], '--out: empty path'),
    (['--out', '{tmp}'], 'is a directory'),
    (['--out', '{tmp}/file/bench.json'], 'is not a directory'),
], ids=['bad-number', 'unknown-flag', 'out-empty', 'out-directory', 'out-under-a-file'])
def test_bench_flag_errors_are_one_line_before_anything_runs(tmp_path, capsys, argv, needle):
    from gluon_softmax import bench
    (tmp_path / 'file').write_text('')
    argv = [a.replace('{tmp}', str(tmp_path)) for a in argv]
    try:
        # --data-dir nowhere: had the benchmark started, the data would be the error
        status = bench.main([*argv, '--data-dir', str(tmp_path / 'nowhere')])
    except SystemExit as e:
        status = e.code
    assert status == 2
    assert needle in one_error(capsys.readouterr().err)


def test_train_out_empty_is_an_error(tmp_path, small_data_copy, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(small_data_copy, '--epochs', 1, '--out', '')
    assert result.returncode == 2
    assert one_error(result.stderr) == 'error: --out: empty path'
    assert os.listdir(tmp_path) == []  # no runs/ directory either


@pytest.mark.parametrize('make, flags, needle', [
    (lambda d: None, ['--out', ''], '--out: empty path'),
    (lambda d: d.write_text('x'), ['--out', '{d}'], 'exists and is not a directory'),
    (lambda d: (d.mkdir(), (d / 'notes.txt').write_text('x')), ['--out', '{d}'],
     "holds files that are not a run's (notes.txt)"),
    (lambda d: (d.mkdir(), (d / 'notes.txt').write_text('x')), ['--out', '{d}', '--overwrite'],
     "holds files that are not a run's (notes.txt)"),
    (lambda d: (d.mkdir(), (d / 'metrics.json').write_text('{"impl": "concise", "status": '
                                                            '"complete"}')),
     ['--out', '{d}'], 'holds an earlier run (status complete)'),
], ids=['empty', 'a-file', 'foreign-files', 'foreign-files-overwrite', 'an-earlier-run'])
def test_train_out_is_checked_before_mxnet_loads(tmp_path, make, flags, needle):
    # an "mxnet" that fails loudly when imported, found before the real one
    fake = tmp_path / 'fake' / 'mxnet'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text('raise SystemExit("error: MXNet was imported")\n')
    target = tmp_path / 'out'
    make(target)
    before = sorted(os.listdir(target)) if target.is_dir() else None
    argv = [a.replace('{d}', str(target)) for a in flags]
    result = procs.run([sys.executable, '-m', 'gluon_softmax.train', *argv],
                       env={**os.environ, 'PYTHONPATH': str(tmp_path / 'fake')})
    assert result.returncode == 2
    assert needle in one_error(result.stderr)
    assert 'loading MXNet' not in result.stdout
    assert (sorted(os.listdir(target)) if target.is_dir() else None) == before


# ---------------------------------------------------------------- d. what an interrupt stopped

def test_data_check_interrupted_says_what_it_was_reading(small_data_copy):
    # Ctrl-C while the test set is verified (the signal sent as its reading starts)
    code = ('import os, signal, sys\n'
            'from gluon_softmax import data_files\n'
            f'sys.path.insert(0, {os.path.dirname(small_data.__file__)!r})\n'
            'import small_data\n'
            'small_data.pin(sys.argv[1])\n'
            'real = data_files.read_split\n'
            'def read_split(directory, train):\n'
            '    if not train:\n'
            '        os.kill(os.getpid(), signal.SIGINT)\n'
            '    return real(directory, train)\n'
            'data_files.read_split = read_split\n'
            'sys.exit(data_files.main([sys.argv[1]]))\n')
    result = procs.run([sys.executable, '-c', code, small_data_copy], code_may_fork=True)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr == (f'interrupted (SIGINT) while verifying the test set in '
                             f'{small_data_copy}; nothing was changed\n')


def test_bench_interrupted_names_the_measurement_it_stopped(tmp_path):
    # the measuring child sends the Ctrl-C to its parent, as the user would while it runs
    code = ('import os, signal, sys\n'
            'from gluon_softmax import bench\n'
            'def run_all(args):\n'
            '    bench.run_child([sys.executable, "-c", "import os, signal, time; '
            'os.kill(os.getppid(), signal.SIGINT); time.sleep(60)"], '
            '"row concise (batch size 256, resize 28)")\n'
            'bench.run_all = run_all\n'
            'sys.exit(bench.main(["--out", sys.argv[1]]))\n')
    result = procs.run([sys.executable, '-c', code, tmp_path / 'bench.json'], code_may_fork=True)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr == ('interrupted (SIGINT) while measuring row concise (batch size 256, '
                             'resize 28); it was stopped; no results were written\n')
    assert not (tmp_path / 'bench.json').exists()



def test_a_ctrl_c_while_the_measurement_starts_ends_it(tmp_path):
    # the signal arrives inside Popen, after the child exists (seen under load: the child's
    # own SIGINT to its parent came before Popen had returned)
    code = ('import os, signal, subprocess, sys\n'
            'from gluon_softmax import bench\n'
            'real = subprocess.Popen\n'
            'def popen(*args, **kwargs):\n'
            '    proc = real(*args, **kwargs)\n'
            '    open(sys.argv[2], "w").write(str(proc.pid))\n'
            '    os.kill(os.getpid(), signal.SIGINT)\n'
            '    [None for _ in range(1000)]  # the handler runs here, inside Popen\n'
            '    return proc\n'
            'subprocess.Popen = popen\n'
            'def run_all(args):\n'
            '    bench.run_child([sys.executable, "-c", "import time; time.sleep(60)"], '
            '"row concise (batch size 256, resize 28)")\n'
            'bench.run_all = run_all\n'
            'sys.exit(bench.main(["--out", sys.argv[1]]))\n')
    pid_file = tmp_path / 'child'
    result = procs.run([sys.executable, '-c', code, tmp_path / 'bench.json', pid_file],
                       code_may_fork=True)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr == ('interrupted (SIGINT) while measuring row concise (batch size 256, '
                             'resize 28); it was stopped; no results were written\n')
    assert not os.path.exists(f'/proc/{pid_file.read_text()}'), 'the measurement still runs'


# ---------------------------------------------------------------- e. a file-size limit

@pytest.mark.slow
def test_a_file_size_limit_ends_the_run_failed_with_its_files_whole(tmp_path, small_data_copy):
    out = tmp_path / 'run'
    # 1 MB: the checkpoint and metrics fit, plotly.min.js (3.5 MB) does not
    limit = 2**20

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    result = train(small_data_copy, '--epochs', 2, '--seed', 1, '--out', out,
                   preexec_fn=limited)
    assert result.returncode == 2, result.stderr
    line = one_error(result.stderr)
    assert 'plotly.min.js: File too large; the checkpoint of epoch 2 is kept' in line, line
    metrics = metrics_of(out)
    assert metrics['status'] == 'failed' and len(metrics['epochs']) == 2
    assert 'File too large' in metrics['ended']['error']
    assert not any(name.endswith('.tmp') for name in os.listdir(out))
    # the checkpoint is whole: the run resumes from it (nothing left to train) and completes
    resumed = train(small_data_copy, '--resume', out)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics_of(out)['status'] == 'complete'


# ---------------------------------------------------------------- h. a job's resume locks first

@pytest.mark.slow
def test_a_resumed_job_takes_the_lock_before_it_reads_the_run(tmp_path, small_data_copy):
    with run_held_by_pid_4242(tmp_path) as out:
        worker = small_data.command(small_data_copy, 'gluon_softmax.train', '--data-dir',
                                    small_data_copy, '--kvstore', 'dist_sync', '--resume', out)
        result = procs.run([sys.executable, '-m', 'gluon_softmax.launch', '-n', '2', '--grace',
                            '5', '--', *worker])
    # before: every worker read the half-written metrics.json ("not a run directory")
    errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert errors[0] == (f'error: --resume {out}: in use by another run (pid 4242); wait for '
                         'it or choose another directory'), result.stderr
    assert result.returncode == 2, result.stderr
    assert 'Traceback' not in result.stderr
