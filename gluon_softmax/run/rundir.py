"""The run directory: the files of one run, owned by one process at a time (a lock)."""
import datetime
import errno
import fcntl
import json
import os
import stat
import tempfile

from gluon_softmax.run.checkpoint import CHECKPOINT, checkpoint_meta


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
