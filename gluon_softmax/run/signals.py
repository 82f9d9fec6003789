"""Signals: every handler of the package's programs, in one place.

:func:`exit_on_signals` (a program's first moments, and the data check),
:class:`StopOnSignal` (a training run), :class:`SignalLatch` (the launcher, which relays
them to its job) and :func:`signal_held` (the benchmark's clean-up). The launcher's remote
wrapper (``scale.processes.REMOTE_WRAPPER``) is the one exception: it runs on another host,
where the package may not be installed.
"""
import contextlib
import os
import signal
import sys
import threading


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised in the main thread by :class:`StopOnSignal`.

    A BaseException, as KeyboardInterrupt is: code that turns any Exception into
    its own error (a checkpoint that "is not a checkpoint", MXNet's DataLoader
    terminating its pool) must let it through.
    """

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self):
        # pickled by number: Exception's default would call Interrupted('SIGTERM')
        return Interrupted, (self.signum,)


def in_finalizer(frame):
    """True when ``frame`` runs inside a ``__del__`` (an exception there is printed and lost)."""
    while frame is not None:
        if frame.f_code.co_name == '__del__':
            return True
        frame = frame.f_back
    return False


DEFER_SECONDS, MAX_DEFERRALS = 0.01, 100  # a signal waits at most ~1 s to leave MXNet's code


def in_mxnet(frame):
    """True when ``frame`` (the one a signal interrupted) is MXNet's own Python code."""
    name = frame.f_globals.get('__name__', '') if frame is not None else ''
    return name == 'mxnet' or name.startswith('mxnet.')


# what ends a run as Ctrl-C does: a closed terminal or ssh session (HUP), quit (QUIT), a
# service manager or a user's kill (TERM, USR1)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)


class StopOnSignal:
    """Turn the ``STOP_SIGNALS`` into :class:`Interrupted`, held back while a checkpoint is written.

    Only in the process that installed it: a process forked with the handler
    (a DataLoader worker, until it sets its own dispositions) gets the
    default action for SIGTERM and leaves Ctrl-C to the main process.
    """

    def __init__(self):
        self.received = None
        self.holding = False
        self.deferred = 0  # times in a row a signal was asked again (see handler)
        self.raised = False  # Interrupted was raised once: later signals are only noted
        self.agreed = False  # see agree()
        self.owner = os.getpid()

    def handler(self, signum, frame):
        if os.getpid() != self.owner:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if signum == signal.SIGTERM:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        self.received = signum
        if self.holding or self.raised or self.agreed:
            # a signal while one is handled: noted, the same exit status, no traceback; in
            # agreed mode the next check of every worker acts on it
            return
        # Raised in a finalizer it would be printed and dropped; raised inside MXNet's own
        # Python code it can leave an object half made (an NDArray without its handle, whose
        # __del__ then prints a traceback). Either way: ask again soon, within a bound.
        if in_finalizer(frame) or (in_mxnet(frame) and self.deferred < MAX_DEFERRALS):
            self.deferred += 1
            threading.Timer(DEFER_SECONDS, os.kill, (os.getpid(), signum)).start()
            return
        self.deferred = 0
        self.raised = True
        raise Interrupted(signum)

    def finish(self):
        """From now on only note signals: the run has ended, what is left is clean-up."""
        self.holding = True

    def agree(self):
        """In a job of worker processes: from now on a signal is only noted, and ends the run at
        the next divergence check, where every worker learns of it (``LossWatch(stop=...)``).

        The workers must stop at the same batch: one that left at once would leave its peers
        blocked inside MXNet, waiting for it in a collective, out of reach of any Python signal
        handler, until the launcher kills them, worker 0 included, before it writes anything.
        """
        self.agreed = True

    def unraisable(self, unraisable):
        """``sys.unraisablehook`` once installed: an :class:`Interrupted` that Python could only
        print and drop is asked again instead, as :meth:`handler` does in a ``__del__``.

        The frame a signal interrupts does not show every place whose exceptions Python drops:
        a weakref's callback (importlib's module cache has them; a signal landed in one once in
        CI), a garbage collector's callback. There the signal was lost: the run printed a
        traceback and went on.
        """
        if isinstance(unraisable.exc_value, Interrupted) and os.getpid() == self.owner:
            self.raised = False
            threading.Timer(DEFER_SECONDS, os.kill,
                            (os.getpid(), unraisable.exc_value.signum)).start()
            return
        self.previous_unraisable(unraisable)

    def install(self):
        """Install the handlers (main thread only).

        DataLoader workers set their own dispositions as they start (see
        :mod:`gluon_softmax.loader_workers`); the check in :meth:`handler`
        covers the moment between their fork and that.
        """
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handler)
        if sys.unraisablehook != self.unraisable:
            self.previous_unraisable = sys.unraisablehook
            sys.unraisablehook = self.unraisable

    def run_whole(self, work, raise_after=True):
        """Run ``work()`` without being cut off, then act on a signal that came meanwhile.

        With ``raise_after`` False the signal is left in ``received`` for the caller.
        """
        self.holding = True
        try:
            work()
        finally:
            self.holding = False
        if self.received is not None and raise_after and not self.agreed:
            self.raised = True  # as when the handler raises: later signals are only noted
            raise Interrupted(self.received)


def exit_on_signals(doing='starting', kept=None):
    """Until a program installs its own handlers, the stop signals end it with one line:
    ``interrupted (SIGNAME) while <doing>; <kept>``. A program that only reads (the data
    check) calls it again for each step, so the line says what was going on.

    Leaving with ``os._exit`` rather than an exception: raised inside an
    extension module's import (NumPy's, MXNet's) an exception comes out as that
    library's ImportError essay.
    """
    if kept is None:
        resuming = any(arg == '--resume' or arg.startswith('--resume=') for arg in sys.argv)
        kept = 'the run directory is as it was' if resuming else 'nothing was saved'

    def handler(signum, frame):
        try:
            os.write(2, f'interrupted ({signal.Signals(signum).name}) while {doing}; '
                        f'{kept}\n'.encode(errors='backslashreplace'))
        except OSError:  # no stderr (2>&-): the exit status says it
            pass
        os._exit(128 + signum)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(signum, handler)


@contextlib.contextmanager
def signal_held(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold ``signums`` back in this thread for the block; they arrive when it ends."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signums)


class SignalLatch:
    """Records the launcher's ``FORWARDED_SIGNALS`` instead of dying on them."""

    def __init__(self):
        self.received = []
        self._previous = {}

    def __enter__(self):
        for signum in FORWARDED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _record(self, signum, frame):
        self.received.append(signum)

    def first(self):
        """The first signal received, or None."""
        return self.received[0] if self.received else None

    def more_than(self, count):
        """A callable: has the launcher received more than ``count`` signals?"""
        return lambda: len(self.received) > count


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
