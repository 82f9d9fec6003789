"""Standard streams that may be closed, full, or unable to encode a path."""
import os
import signal
import sys


def guard_streams(stop):
    """Make the CLI's standard streams safe to write whatever became of them.

    A closed stream (``2>&-``) becomes /dev/null; text the encoding cannot hold
    (``PYTHONIOENCODING=ascii``, a path under ``LC_ALL=C``) is written escaped, never
    lost; and standard output becomes a :class:`GuardedStdout`.
    """
    for name in ('stdout', 'stderr'):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, 'w'))
        elif hasattr(stream, 'reconfigure'):
            stream.reconfigure(errors='backslashreplace')
    sys.stdout = GuardedStdout(sys.stdout, stop)


class GuardedStdout:
    """Standard output whose reader went away: a closed pipe (``| head``) ends the run as
    SIGPIPE would (status ``interrupted``, the resume hint on stderr); any other write error
    (``>/dev/full``) is said once on stderr and the run goes on, its results in files."""

    def __init__(self, stream, stop):
        self.stream, self.stop = stream, stop

    def write(self, text):
        return self._guarded(self.stream.write, text)

    def flush(self):
        return self._guarded(self.stream.flush)

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def _guarded(self, call, *args):
        try:
            return call(*args)
        except OSError as e:
            # from now on the descriptor writes to /dev/null: later writes, and the flush at
            # exit, succeed and go nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
            if isinstance(e, BrokenPipeError):
                self.stop.handler(signal.SIGPIPE, None)  # raises Interrupted unless held
            else:
                print(f'error: standard output: {e.strerror}; the run goes on, its results '
                      'are written to files', file=sys.stderr, flush=True)
            return 0
