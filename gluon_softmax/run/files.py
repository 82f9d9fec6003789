"""Atomic writes: a file is written to a temporary name beside it, flushed and renamed."""
import os
import tempfile


class WriteError(Exception):
    """A file of the run could not be written (full disk, no permission); the old one is kept."""


def atomic_write(path, write):
    """Call ``write(tmp_path)``, then rename onto ``path``: readers see old or new, never half.

    Any OSError (a full disk, a read-only directory) becomes :class:`WriteError`
    naming ``path``; the previous ``path`` is untouched and the temporary file removed.
    """
    try:
        _atomic_write(path, write)
    except OSError as e:
        raise WriteError(f'cannot write {path}: {e.strerror or e}') from None


def _atomic_write(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path), suffix='.tmp')
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates the file 0600; give it the permissions of an ordinary new file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Atomically write a text file."""
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    atomic_write(path, write)
