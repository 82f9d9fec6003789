"""run.signals.StopOnSignal: where a signal may be raised as Interrupted, and where it is asked
again."""
import signal
import sys
import types

import pytest

import procs
from gluon_softmax.run import signals


def frame_of(module_name, code_name='f'):
    """A stand-in for the frame a signal interrupted: its module's name and its function's."""
    return types.SimpleNamespace(f_globals={'__name__': module_name},
                                 f_code=types.SimpleNamespace(co_name=code_name), f_back=None)


@pytest.fixture
def timers(monkeypatch):
    """The re-sends the handler schedules, recorded instead of run."""
    started = []

    class Timer:
        def __init__(self, delay, function, args):
            started.append((delay, function, args))

        def start(self):
            pass
    monkeypatch.setattr(signals.threading, 'Timer', Timer)
    return started


@pytest.mark.parametrize('module', ['mxnet', 'mxnet.ndarray.ndarray', 'mxnet._ctypes.ndarray'])
def test_a_signal_inside_mxnet_is_asked_again_not_raised(timers, module):
    stop = signals.StopOnSignal()
    assert stop.handler(signal.SIGINT, frame_of(module)) is None
    assert stop.received == signal.SIGINT and len(timers) == 1
    # once the main thread is back in code of ours, the next delivery raises
    with pytest.raises(signals.Interrupted):
        stop.handler(signal.SIGINT, frame_of('gluon_softmax.training'))
    assert stop.deferred == 0


@pytest.mark.parametrize('module', ['gluon_softmax.training', 'mxnetwork', '__main__'])
def test_a_signal_outside_mxnet_is_raised_at_once(timers, module):
    with pytest.raises(signals.Interrupted):
        signals.StopOnSignal().handler(signal.SIGTERM, frame_of(module))
    assert timers == []


def test_deferral_is_bounded(timers):
    # a main thread that never leaves MXNet (a wait inside it) is still interrupted, within ~1 s
    stop = signals.StopOnSignal()
    for _ in range(signals.MAX_DEFERRALS):
        assert stop.handler(signal.SIGINT, frame_of('mxnet.gluon.data.dataloader')) is None
    with pytest.raises(signals.Interrupted):
        stop.handler(signal.SIGINT, frame_of('mxnet.gluon.data.dataloader'))
    assert len(timers) == signals.MAX_DEFERRALS
    assert signals.MAX_DEFERRALS * signals.DEFER_SECONDS <= 1.0


def test_a_signal_in_a_finalizer_is_asked_again(timers):
    stop = signals.StopOnSignal()
    assert stop.handler(signal.SIGINT, frame_of('gluon_softmax.data', '__del__')) is None
    assert len(timers) == 1


# A weakref's callback: Python prints an exception raised there ("Exception ignored in") and
# drops it, and the frame it runs in says nothing of it (importlib's module cache has such
# callbacks: a signal landed in one as a run started, once in CI).
SIGNAL_IN_A_WEAKREF_CALLBACK = '''
import os, signal, sys, time, weakref
from gluon_softmax.run import signals
stop = signals.StopOnSignal()
stop.install()

class Thing:
    pass

def callback(ref):
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(10000):  # the handler runs here, inside the callback
        pass

thing = Thing()
ref = weakref.ref(thing, callback)
try:
    del thing
    print('dropped', flush=True)
    time.sleep(20)
    print('went on')
except signals.Interrupted as interrupted:
    print('interrupted', interrupted)
'''


def test_a_signal_raised_where_python_drops_exceptions_is_asked_again():
    result = procs.run([sys.executable, '-c', SIGNAL_IN_A_WEAKREF_CALLBACK], code_may_fork=True)
    assert result.stdout.split('\n') == ['dropped', 'interrupted SIGINT', ''], result
    assert result.stderr == '', result.stderr
    assert result.returncode == 0
