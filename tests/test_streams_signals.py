"""The CLI's streams and the signals that end runs (issue 22, cases 11 and 13): a closed pipe, a
full or closed stream, an encoding that cannot hold a path, HUP/QUIT/USR1, two signals at once
during start-up, Ctrl-C while a resume starts. Each through a real program, on the small data set.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import procs
import small_data

CLI = 'gluon_softmax.train'


def metrics_of(out):
    with open(os.path.join(out, 'metrics.json'), encoding='utf-8') as f:
        return json.load(f)


def cli(data_dir, *args, signal_after=None):
    return small_data.command(data_dir, CLI, '--data-dir', data_dir, *args,
                              signal_after=signal_after)


def no_traceback(err):
    assert 'Traceback' not in err and 'Exception ignored' not in err, err


# ---------------------------------------------------------------- streams

@pytest.mark.slow
def test_a_closed_pipe_ends_the_run_as_sigpipe_would(tmp_path, small_data_copy):
    # `| head -n 2`: the reader takes two lines and goes away
    out = tmp_path / 'run'
    proc = procs.start(cli(small_data_copy, '--epochs', 3, '--out', out),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = [proc.stdout.readline() for _ in range(2)]
    assert lines[1].startswith(b'training '), lines
    proc.stdout.close()
    _, err = procs.communicate(proc)
    err = err.decode()
    assert proc.returncode == 128 + signal.SIGPIPE, err
    no_traceback(err)
    assert err.startswith('interrupted (SIGPIPE)') and err.count('\n') == 1, err
    assert metrics_of(out)['status'] == 'interrupted'


@pytest.mark.slow
@pytest.mark.parametrize('case, shell, env, expect_err', [
    ('stdout-full', '"$@" >/dev/full', {},
     'error: standard output: No space left on device; the run goes on'),
    ('stderr-closed', '"$@" 2>&-', {}, None),
    ('stdout-ascii', '"$@"', {'PYTHONIOENCODING': 'ascii'}, ''),
])
def test_streams_that_cannot_take_the_output(tmp_path, small_data_copy, case, shell, env,
                                             expect_err):
    out = tmp_path / 'run-é'  # a path the ASCII case cannot print as it is
    result = procs.run(['sh', '-c', shell, 'sh', *cli(small_data_copy, '--epochs', 1, '--out',
                                                        out)],
                       env={**os.environ, **env})
    no_traceback(result.stderr)
    assert result.returncode == 0, result.stderr
    assert metrics_of(out)['status'] == 'complete'
    if expect_err:
        assert result.stderr.startswith(expect_err), result.stderr
    elif expect_err == '':
        assert result.stderr == ''
    if case == 'stdout-ascii':
        assert 'run-\\xe9' in result.stdout  # escaped, not lost
    if case == 'stderr-closed':
        assert result.stdout.splitlines()[-1].startswith('wrote metrics.json')


# ---------------------------------------------------------------- signals

@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1],
                         ids=lambda s: signal.Signals(s).name)
def test_hup_quit_and_usr1_interrupt_like_term(tmp_path, small_data_copy, signum):
    out = tmp_path / 'run'
    result = procs.run(cli(small_data_copy, '--epochs', 3, '--seed', 5, '--out', out,
                           signal_after=(signum, 'epoch 1/3')))
    name = signal.Signals(signum).name
    assert result.returncode == 128 + signum, result.stderr
    no_traceback(result.stderr)
    assert result.stderr.startswith(f'interrupted ({name}) after 1 epoch; continue with: ')
    metrics = metrics_of(out)
    assert metrics['status'] == 'interrupted' and len(metrics['epochs']) == 1
    resumed = procs.run(cli(small_data_copy, '--resume', out))
    assert resumed.returncode == 0, resumed.stderr
    assert metrics_of(out)['status'] == 'complete' and len(metrics_of(out)['epochs']) == 3


@pytest.mark.slow
@pytest.mark.parametrize('delay', [0.0, 0.3, 1.0, 2.5])
def test_two_signals_at_once_during_start_up_are_one_line(tmp_path, small_data_copy, delay):
    out = tmp_path / 'run'
    # enough epochs that the run is still going at the last delay: a signal after the run has
    # ended, while Python shuts down, meets the default action (seen at 2.5 s with 2 epochs)
    proc = procs.start(cli(small_data_copy, '--epochs', 200, '--out', out),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, fresh=True)
    assert proc.stdout.readline().startswith('loading MXNet')
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = procs.communicate(proc)
    assert proc.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM), err
    no_traceback(err)
    assert len(err.splitlines()) == 1 and err.startswith('interrupted ('), err


@pytest.mark.slow
def test_ctrl_c_while_a_resume_starts_says_the_run_is_as_it_was(tmp_path, small_data_copy):
    out = tmp_path / 'run'
    assert procs.run(cli(small_data_copy, '--epochs', 1, '--out', out)).returncode == 0
    checkpoint = (out / 'checkpoint.npz').read_bytes()
    proc = procs.start(cli(small_data_copy, '--resume', out, '--epochs', 2),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       fresh=True)  # the signal meets MXNet's import
    assert proc.stdout.readline().startswith('loading MXNet')
    os.kill(proc.pid, signal.SIGINT)
    _, err = procs.communicate(proc)
    assert proc.returncode == 128 + signal.SIGINT, err
    no_traceback(err)
    assert 'nothing was saved' not in err
    assert 'the run directory is as it was' in err, err
    assert (out / 'checkpoint.npz').read_bytes() == checkpoint


def test_the_stop_signals_are_the_same_before_and_after_the_handlers(monkeypatch):
    # what ends a starting program ends a running one, and the other way round
    from gluon_softmax.run import signals
    installed = {}
    monkeypatch.setattr(signal, 'signal', lambda signum, handler: installed.setdefault(signum,
                                                                                      handler))
    monkeypatch.setattr(sys, 'argv', ['gluon-softmax-train'])
    signals.exit_on_signals()
    assert set(installed) == set(signals.STOP_SIGNALS)
