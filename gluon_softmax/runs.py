"""Run management around the training loop: divergence, signals, progress, the epoch runner.

None of this is in the chapter's loop: it plugs into ``training.train`` as its
``epoch_fn`` (:class:`EpochRunner`, which hands the chapter's own ``train_epoch`` a wrapped
loss and batch iterator) and ``callback``.
"""
import datetime
import errno
import fcntl
import json
import math
import os
import signal
import stat
import sys
import tempfile
import threading

from gluon_softmax.checkpoint import CHECKPOINT, checkpoint_meta

DEFAULT_MAX_LOSS = 100.0  # mean loss per example; training starts near ln 10 = 2.3
CHECK_EVERY = 20  # batches between divergence checks (each check waits for the device)


class Diverged(Exception):
    """A batch's mean loss was not finite or exceeded the bound."""

    def __init__(self, batch, loss, max_loss, epoch=None):
        self.batch, self.loss, self.max_loss, self.epoch = batch, loss, max_loss, epoch
        where = f'epoch {epoch}, batch {batch}' if epoch is not None else f'batch {batch}'
        super().__init__(f'training diverged at {where}: mean loss {loss:g} '
                         f'(bound {max_loss:g}); try a smaller learning rate')


class LossWatch:
    """Raise :class:`Diverged` when a batch's mean loss is not finite or above ``max_loss``.

    Batch loss sums are read in groups of ``CHECK_EVERY``, so the device is
    waited for once per group. ``reduce`` sums a group over the worker
    processes of a job first, so every worker stops at the same batch.
    """

    def __init__(self, max_loss=DEFAULT_MAX_LOSS, reduce=None, check_every=CHECK_EVERY,
                 report=None, stop=None):
        self.max_loss, self.reduce, self.check_every = max_loss, reduce, check_every
        self.report = report  # report(mean loss of the batches just checked), e.g. a bar
        self.pending = []  # (batch number, loss sum on the device, batch size) not yet read
        # a StopOnSignal in agreed mode (see StopOnSignal.agree): the check also sums, over
        # the job, who received a stop signal, so every worker stops at the same batch
        self.stop = stop

    def batch(self, number, loss_sum, size):
        """Note one batch's loss sum; checks every ``check_every`` batches."""
        self.pending.append((number, loss_sum, size))
        if len(self.pending) == self.check_every:
            self.end()

    def end(self):
        """Check the batches not yet checked."""
        if not self.pending:
            return
        from mxnet import np  # here, not at the top: the CLI imports this module before MXNet
        pending, self.pending = self.pending, []
        sums = np.stack([loss_sum for _, loss_sum, _ in pending])
        own = None
        if self.stop is not None:
            # read once: a signal arriving after this is counted at the next check
            own = self.stop.received
            flags = np.array([1.0 if own else 0.0, float(own or 0)], ctx=sums.ctx)
            sums = np.concatenate([sums.astype('float32'), flags])
        if self.reduce is not None:
            sums = self.reduce(sums)
        sums = sums.asnumpy()  # the one device wait
        if self.stop is not None:
            (stopping, signals), sums = sums[-2:], sums[:-2]
            if stopping:
                # every worker of the job raises here, after the same batch
                self.stop.raised = True
                raise Interrupted(own or agreed_signal(signals / stopping))
        for (number, _, size), loss_sum in zip(pending, sums):
            mean = float(loss_sum) / size
            if not math.isfinite(mean) or mean > self.max_loss:
                raise Diverged(number, mean, self.max_loss)
        if self.report is not None:
            self.report(float(sums.sum()) / sum(size for _, _, size in pending))


def agreed_signal(mean):
    """The signal a worker stops on when others received one: theirs if they agree, else TERM."""
    try:
        return signal.Signals(int(round(mean))) if float(mean).is_integer() else signal.SIGTERM
    except ValueError:
        return signal.SIGTERM


class WatchedLoss:
    """A loss that hands every batch's loss sum to a :class:`LossWatch`: the divergence check,
    plugged into a training loop that knows nothing of it.

    Called once per batch by :func:`gluon_softmax.training.train_epoch`, so its calls
    number the batches (1, 2, ... within one epoch: make one per epoch).
    """

    def __init__(self, loss, watch):
        self.loss, self.watch, self.batches = loss, watch, 0

    def __call__(self, y_hat, y):
        l = self.loss(y_hat, y)
        self.batches += 1
        # detached: the watch keeps up to CHECK_EVERY sums, which must not keep the batches'
        # autograd graphs alive; the loop's own l.sum() and backward are untouched
        self.watch.batch(self.batches, l.detach().sum(), y.shape[0])
        return l

    def __repr__(self):
        return f'WatchedLoss({self.loss!r})'


class EpochRunner:
    """An ``epoch_fn`` for ``training.train``: an epoch function with progress, divergence checks
    and epoch numbers, all plugged in from outside by wrapping what it is given.

    ``epoch_fn(net, batches, loss, updater, ctx)`` trains one epoch: the chapter's
    :func:`gluon_softmax.training.train_epoch` on one device and one process, or the
    scale-out epoch (:class:`gluon_softmax.parallel.DataParallel`, which does its own
    divergence check, as its batches are split). ``progress(batches, epoch)`` may wrap each
    epoch's batches (a bar). ``watch``, a :class:`LossWatch`, sees every batch's loss
    through a :class:`WatchedLoss`. A :class:`Diverged` raised inside gets the epoch number.
    """

    def __init__(self, epoch_fn, first_epoch=1, progress=None, watch=None):
        self.epoch_fn, self.epoch, self.progress = epoch_fn, first_epoch - 1, progress
        self.watch = watch
        self.bar = None

    def __call__(self, net, train_iter, loss, updater, ctx=None):
        self.epoch += 1
        self.bar = self.progress(train_iter, self.epoch) if self.progress else None
        try:
            if self.watch is not None:
                loss = WatchedLoss(loss, self.watch)
            result = self.epoch_fn(net, self.bar or train_iter, loss, updater, ctx)
            if self.watch is not None:
                self.watch.end()  # the last batches of the epoch, fewer than check_every
            return result
        except Diverged as e:
            raise Diverged(e.batch, e.loss, e.max_loss, self.epoch) from None
        finally:
            if self.bar is not None:
                self.bar.close()  # also on Ctrl-C: the bar leaves the screen, not half of it
                self.bar = None

    def show_loss(self, mean):
        """Show the running mean loss on the progress bar (a ``LossWatch`` report)."""
        if self.bar is not None:
            self.bar.set_postfix_str(f'loss {mean:.4f}', refresh=False)


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

    def install(self):
        """Install the handlers (main thread only).

        DataLoader workers set their own dispositions as they start (see
        :mod:`gluon_softmax.loader_workers`); the check in :meth:`handler`
        covers the moment between their fork and that.
        """
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handler)

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
            raise Interrupted(self.received)


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


def progress_bar(num_epochs, stream=None):
    """``progress(batches, epoch)``: a tqdm bar over each epoch when ``stream`` is a terminal."""
    stream = sys.stderr if stream is None else stream
    if not stream.isatty():
        return None
    from tqdm import tqdm
    width = len(str(num_epochs))
    return lambda batches, epoch: tqdm(batches, total=len(batches), leave=False, unit='batch',
                                       desc=f'epoch {epoch:>{width}}/{num_epochs}', file=stream)


class RunDirectoryError(Exception):
    """A run directory that this run may not use."""


METRICS, CURVES, PARAMS, REPORT = 'metrics.json', 'curves.html', 'model.params', 'report.html'
PLOTLY_JS = 'plotly.min.js'  # one copy beside a run's pages, which load it by this name
RUN_FILES = (METRICS, CURVES, PARAMS, CHECKPOINT, REPORT, PLOTLY_JS)
LOCK = '.lock'
TEMPORARY_PREFIXES = tuple('.' + name for name in RUN_FILES) + ('.checkpoint-part-', '.probe-')


def is_temporary(name):
    """Our temporary files (``checkpoint.atomic_write``'s, the probe's); never the user's."""
    return name.endswith('.tmp') and name.startswith(TEMPORARY_PREFIXES)


class RunDirectory:
    """The directory of one run, owned by one process at a time.

    :meth:`claim` takes an exclusive lock (``flock`` on ``.lock``, which holds
    the owner's pid) for as long as this process lives, before it reads
    anything else there; checks the directory can be written, removes
    temporary files a killed run left, and makes sure the directory describes
    this run only: a new run needs an empty directory, ``--overwrite`` first
    removes an earlier run's files (and refuses, before removing anything,
    files that are not a run's), ``--resume`` continues the run there.
    """

    def __init__(self, path, flag='--out'):
        self.path, self.flag, self.lock_fd = path, flag, None

    def __str__(self):
        return self.path

    @classmethod
    def unique(cls, parent, prefix):
        """A new directory ``parent/prefix-<timestamp>[-N]``, made here so no other run gets it."""
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            # a file named like the parent, a deleted or read-only working directory
            why = ('exists and is not a directory' if isinstance(e, FileExistsError)
                   else e.strerror or str(e))
            raise RunDirectoryError(f'cannot create the run directory {_where(parent)}: {why}; '
                                    'choose one with --out DIR') from None
        base = os.path.join(parent, f"{prefix}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
        for n in range(1, 1000):
            path = base if n == 1 else f'{base}-{n}'
            try:
                os.mkdir(path)  # atomic: of two runs in the same second one gets -2
                return cls(path)
            except FileExistsError:
                continue
            except OSError as e:
                raise RunDirectoryError(f'cannot create {path}: {e.strerror or e}; choose a '
                                        'run directory with --out DIR') from None
        raise RunDirectoryError(f'{base}: 999 runs in one second already')

    def _fail(self, what):
        raise RunDirectoryError(f'{self.flag} {self.path}: {what}')

    def claim(self, mode='new'):
        """Own the directory for a ``'new'``, ``'overwrite'`` or ``'resume'`` run."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            self._fail('exists and is not a directory')
        if mode == 'resume' and not os.path.isdir(self.path):
            self._fail('not a run directory (no such directory)')
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            self._fail(f'cannot create directory: {e.strerror}')
        created_lock = self._lock()
        try:
            return self._take(mode)
        except RunDirectoryError:
            if created_lock:  # a refused directory is left as it was found
                os.remove(os.path.join(self.path, LOCK))
            self.release()
            raise

    def release(self):
        """Give the directory up (a process's end does it too)."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def check(self, mode='new'):
        """Before a program's slow start (MXNet, the data set): raise now the error that
        :meth:`claim` would give about the directory's contents; changes nothing. (The
        claim, later, checks again under the lock, and the lock itself.)"""
        if not os.path.lexists(self.path):
            return  # the claim makes it
        if not os.path.isdir(self.path):
            self._fail('exists and is not a directory')
        try:
            names = os.listdir(self.path)
        except OSError as e:
            self._fail(f'cannot read it: {e.strerror}')
        self._verify(mode, sorted(name for name in names
                                  if name != LOCK and not is_temporary(name)))

    def _take(self, mode):
        """Check and prepare the locked directory for ``mode``."""
        self._check_writable()
        for name in os.listdir(self.path):
            if is_temporary(name):
                os.remove(os.path.join(self.path, name))
        entries = sorted(name for name in os.listdir(self.path) if name != LOCK)
        if self._verify(mode, entries) and mode == 'overwrite':
            # metrics.json last: until it goes, what is left is still recognisably a run's
            for name in sorted(entries, key=lambda name: name == METRICS):
                os.remove(os.path.join(self.path, name))
        return self

    def _verify(self, mode, entries):
        """Whether a ``mode`` run may use a directory holding ``entries`` (our temporary files
        and the lock left out): raises RunDirectoryError if not; True when an earlier run's
        files are there (``'overwrite'`` removes them)."""
        odd = [f'{name} ({kind})' for name, kind in
               ((name, _kind(os.path.join(self.path, name))) for name in entries
                if name in RUN_FILES) if kind != 'file']
        if odd:
            # every file of ours is a regular file: anything else there is the user's, and a run
            # would fail on it only after training (resume) or after removing the rest (overwrite)
            self._fail(f'{", ".join(odd[:3])}{", ..." if len(odd) > 3 else ""} where a run '
                       'keeps a file; move it away or choose another directory')
        if mode == 'resume':
            if not {METRICS, CHECKPOINT} & set(entries):
                self._fail(f'not a run directory (neither {METRICS} nor {CHECKPOINT} in it)')
            return False
        if not entries:
            return False
        status = self._run_status()
        foreign = [name for name in entries if name not in RUN_FILES or status is None]
        if foreign:
            # the user's own files, even one named like ours: never ours to replace
            self._fail(f'holds files that are not a run\'s ({", ".join(foreign[:3])}'
                       f'{", ..." if len(foreign) > 3 else ""}); choose an empty or new directory')
        if mode != 'overwrite':
            resume = (f'continue it with --resume {self.path}, '
                      if os.path.exists(os.path.join(self.path, CHECKPOINT)) else '')
            self._fail(f'holds an earlier run (status {status}); {resume}replace it with '
                       '--overwrite, or choose a new directory')
        return True

    def _run_status(self):
        """The status of the run in the directory, or None when it holds no run of ours.

        A run killed after its first checkpoint but before its first metrics.json
        left only the checkpoint: its status is ``killed``.
        """
        path = os.path.join(self.path, METRICS)
        if not os.path.lexists(path):
            meta = checkpoint_meta(os.path.join(self.path, CHECKPOINT))
            return None if meta is None else 'killed'
        try:
            with open(path, encoding='utf-8') as f:
                metrics = json.load(f)
            return metrics['status'] if 'impl' in metrics else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _lock(self):
        """Take the directory's lock, or say which process holds it; True if .lock was created.

        ``.lock`` is opened without following a symbolic link and without
        blocking on a FIFO, and used only when it is a regular file with one
        link, holding nothing but a pid: any other file named so is the user's,
        and left exactly as it is.
        """
        path = os.path.join(self.path, LOCK)
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        created = True
        try:
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                created = False
                fd = os.open(path, flags)
        except OSError as e:
            if e.errno == errno.ELOOP:
                self._fail(f'{LOCK} is a symbolic link: not the lock file of a run; remove it')
            self._fail(f'cannot open {LOCK}: {e.strerror}')
        problem = None if created else _foreign_lock(fd)
        if problem:
            os.close(fd)
            self._fail(f'{LOCK} is {problem}: not the lock file of a run; remove it')
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                self._fail(f'cannot lock {LOCK}: {e.strerror}')
            owner = os.pread(fd, 32, 0).decode(errors='replace').strip() or 'unknown'
            os.close(fd)
            self._fail(f'in use by another run (pid {owner}); wait for it or choose another '
                       'directory')
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        self.lock_fd = fd  # held, hence locked, until this process ends
        return created

    def _check_writable(self):
        """Write and remove a probe file: a read-only directory fails now, not after an epoch."""
        try:
            fd, probe = tempfile.mkstemp(dir=self.path, prefix='.probe-', suffix='.tmp')
            os.close(fd)
            os.remove(probe)
        except OSError as e:
            self._fail(f'cannot write there: {e.strerror}')


MAX_LOCK_BYTES = 32  # a pid and a newline


def _foreign_lock(fd):
    """Why the open ``.lock`` is not a run's lock file, or None when it is one."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return 'not a regular file'
    if st.st_nlink != 1:
        return f'a file with {st.st_nlink} links (another name for some other file)'
    if st.st_uid != os.geteuid() and os.geteuid() != 0:
        return f'owned by another user (uid {st.st_uid})'
    if st.st_size > MAX_LOCK_BYTES:
        return f'a file of {st.st_size} bytes'
    content = os.pread(fd, MAX_LOCK_BYTES, 0).decode(errors='replace').strip()
    if content and not content.isdigit():
        return 'a file holding something other than a pid'
    return None


def _kind(path):
    """``'file'``, ``'directory'``, ``'symbolic link'`` or ``'special file'`` (not followed)."""
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        return 'file'
    if stat.S_ISDIR(mode):
        return 'directory'
    return 'symbolic link' if stat.S_ISLNK(mode) else 'special file'


def _where(path):
    """``path`` made absolute for a message, or said to be in a working directory now gone."""
    if os.path.isabs(path):
        return path
    try:
        return os.path.join(os.getcwd(), path)
    except OSError:
        return f'{path} (the working directory no longer exists)'
