"""Python programs for the tests without paying for ``import mxnet`` each time.

Most test programs are ``python -m gluon_softmax.train ...`` (or ``python small_data.py ...``):
a fresh interpreter that spends about 2.5 s of CPU importing MXNet (registering its operators)
before it does a fraction of a second of work. A zygote is one interpreter per test process that
has imported the package and MXNet once; each program is a fork of it that takes the command
line, environment, working directory and standard streams it was given and runs the module as
``python -m`` would, exits as Python exits (non-daemon threads joined, ``atexit`` run, the status
of ``SystemExit``, death by SIGINT for an uncaught KeyboardInterrupt) and shows its command line
in ``/proc/PID/cmdline``. MXNet supports fork (DataLoader workers are forks too).

:func:`popen` returns a :class:`subprocess.Popen` whose child is such a fork: ``wait``,
``poll``, ``communicate``, ``send_signal`` and the pipes behave as for any child. Only programs
whose start-up would not differ are sent here (:func:`eligible`): this interpreter, ``-m MODULE``
or a script, a session of their own, pipes or files for streams, and the same MXNet-, OpenMP-,
Plotly- and Python-relevant environment as the zygote's; ``-c CODE`` when the caller says its code does not
test what importing does (``procs.run(..., code_may_fork=True)``); everything else (``-c``, ``-X``, a fake ``mxnet`` on
PYTHONPATH, ``OMP_NUM_THREADS=abc``, a terminal) starts a fresh interpreter as before.
``GLUON_SOFTMAX_TEST_ZYGOTE=0`` turns it off.

Run as a script, this file is the zygote itself (``python zygote.py FD PADDING``).
"""
import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading

ENABLED = os.environ.get('GLUON_SOFTMAX_TEST_ZYGOTE', '1') != '0'
# environment variables read at interpreter, MXNet or Plotly start-up (PLOTLY_RENDERER: the
# zygote imports Plotly, see warm_plotly): a program whose values differ from the zygote's starts
# fresh
STARTUP_PREFIXES = ('MXNET_', 'OMP_', 'KMP_', 'LD_', 'PYTHON', 'OPENBLAS', 'MKL_', 'DMLC_',
                    'LC_', 'LANG', 'PLOTLY_')
PER_PROGRAM = {'PYTHONFAULTHANDLER', 'PYTHONUNBUFFERED'}  # applied in the fork
ARGV_ROOM = 16384  # bytes of command line the zygote reserves for its forks' command lines
ALLOWED_KWARGS = {'stdin', 'stdout', 'stderr', 'text', 'universal_newlines', 'encoding', 'errors',
                  'cwd', 'start_new_session', 'bufsize'}
MAX_MESSAGE = 1 << 20
READY_SECONDS = 60  # for the zygote's imports (about 3 s)


def startup_env(env):
    return {k: v for k, v in env.items()
            if k.startswith(STARTUP_PREFIXES) and k not in PER_PROGRAM}


def eligible(cmd, env, kwargs, code=False):
    """True when the program ``cmd`` can be a fork of the zygote without any difference.

    ``code``: a ``-c`` program may be a fork too; only its caller knows that the program does
    not test what importing the package or MXNet does, which a fork has done already."""
    if not ENABLED or len(cmd) < 2 or cmd[0] != sys.executable:
        return False
    if cmd[1] in ('-m', '-c'):
        if len(cmd) < 3 or (cmd[1] == '-m' and not cmd[2].startswith('gluon_softmax')) or (
                cmd[1] == '-c' and not code):
            return False
    elif cmd[1].startswith('-') or not cmd[1].endswith('.py'):
        return False
    if not kwargs.get('start_new_session') or set(kwargs) - ALLOWED_KWARGS:
        return False
    for name in ('stdin', 'stdout', 'stderr'):
        stream = kwargs.get(name)
        fd = stream if isinstance(stream, int) else getattr(stream, 'fileno', lambda: None)()
        if fd is not None and fd >= 0 and os.isatty(fd):
            return False
    # the zygote's own start-up environment (this process's, when the zygote was started)
    return startup_env(env) == (_zygote.env if _zygote is not None else startup_env(os.environ))


# ------------------------------------------------------------------------------- client side

class Zygote:
    """The zygote of this test process: started on first use, ended with this process."""

    def __init__(self):
        self.env = startup_env(os.environ)
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(theirs.fileno()), 'x' * ARGV_ROOM],
            pass_fds=[theirs.fileno()], start_new_session=True, stdin=subprocess.DEVNULL)
        theirs.close()
        self.lock = threading.Lock()
        self.started, self.exited = {}, {}  # request id -> pid; pid -> (event, [status])
        self.cond = threading.Condition()
        self.next_id = 0
        # bounded: a zygote whose imports hang or fail is ended and named, not waited for
        self.sock.settimeout(READY_SECONDS)
        try:
            ready = json.loads(self.sock.recv(MAX_MESSAGE) or b'null')
        except (OSError, ValueError) as e:
            ready = repr(e)
        finally:
            self.sock.settimeout(None)
        if ready != {'ready': os.getpid()}:
            self.close()
            raise RuntimeError(f'the test zygote did not start within {READY_SECONDS} s: {ready}')
        threading.Thread(target=self.read, daemon=True, name='zygote-reader').start()
        atexit.register(self.close)

    def read(self):
        while True:
            try:
                data = self.sock.recv(MAX_MESSAGE)
            except OSError:
                data = b''
            with self.cond:
                if not data:  # the zygote is gone: nothing will report any more
                    self.started['gone'] = True
                    for event, _ in self.exited.values():
                        event.set()
                    self.cond.notify_all()
                    return
                message = json.loads(data)
                if 'started' in message:
                    self.started[message['started']] = message
                elif 'exited' in message:
                    event, status = self.exited.setdefault(message['exited'],
                                                           (threading.Event(), []))
                    status.append(message['status'])
                    event.set()
                self.cond.notify_all()

    def spawn(self, request, fds):
        """Ask for a fork running ``request`` with ``fds`` as its stdin, stdout, stderr."""
        with self.cond:
            self.next_id += 1
            request['id'] = self.next_id
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
        with self.cond:
            if not self.cond.wait_for(lambda: request['id'] in self.started
                                      or 'gone' in self.started, timeout=60):
                raise RuntimeError('the test zygote did not answer within 60 s')
            message = self.started.pop(request['id'], None)
            if message is None or 'error' in message:
                raise RuntimeError(f'the test zygote could not start {request["argv"]}: '
                                   f'{message and message["error"]}')
            pid = message['pid']
            self.exited.setdefault(pid, (threading.Event(), []))
            return pid

    def status(self, pid, timeout):
        """The raw wait status of fork ``pid`` once it has ended (None: not within ``timeout``)."""
        with self.cond:
            event, status = self.exited.setdefault(pid, (threading.Event(), []))
        if not event.wait(timeout):
            return None
        if not status:  # the zygote died first: the fork is gone or an orphan
            raise ChildProcessError(f'the test zygote ended before reporting pid {pid}')
        with self.cond:
            self.exited.pop(pid, None)
        return status[0]

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
            self.proc.wait(timeout=10)


_zygote = None
_zygote_lock = threading.Lock()


def zygote():
    global _zygote  # pylint: disable=global-statement
    with _zygote_lock:
        if _zygote is None or _zygote.proc.poll() is not None:
            _zygote = Zygote()
        return _zygote


class ForkedPopen(subprocess.Popen):
    """A Popen whose child is a fork of the zygote (it reports the exit status)."""

    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env,
                       startupinfo, creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite,
                       errread, errwrite, *rest):
        own = (0, 1, 2)
        fds = [fd if fd != -1 else own[i] for i, fd in enumerate((p2cread, c2pwrite, errwrite))]
        request = {'argv': [os.fsdecode(a) for a in args], 'env': dict(env),
                   'cwd': os.fspath(cwd) if cwd is not None else os.getcwd()}
        self._zygote = zygote()
        try:
            self.pid = self._zygote.spawn(request, fds)
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)
        self._child_created = True

    def _try_wait(self, wait_flags):
        status = self._zygote.status(self.pid, 0 if wait_flags & os.WNOHANG else None)
        return (0, 0) if status is None else (self.pid, status)

    def _internal_poll(self, *args, **kwargs):
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                status = self._zygote.status(self.pid, 0)
                if status is not None:
                    self._handle_exitstatus(status)
        return self.returncode


def popen(cmd, env, **kwargs):
    return ForkedPopen(cmd, env=env, **kwargs)


# ------------------------------------------------------------------------------- zygote side

def serve(fd):
    """The zygote's loop: fork a program per request, report each fork's exit status."""
    sock = socket.socket(fileno=fd)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of pytest is for pytest
    sock.sendall(json.dumps({'ready': os.getppid()}).encode())
    import select
    while True:
        readable, _, _ = select.select([sock, read_end], [], [])
        if read_end in readable:
            os.read(read_end, 4096)
        while True:  # reap every ended fork
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            sock.sendall(json.dumps({'exited': pid, 'status': status}).encode())
        if sock in readable:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 3)
            if not data:
                os._exit(0)  # the test process is gone
            request = json.loads(data)
            try:
                pid = os.fork()
            except OSError as e:
                sock.sendall(json.dumps({'started': request['id'], 'error': str(e)}).encode())
                continue
            if pid == 0:
                os.close(read_end)
                os.close(write_end)
                sock.close()
                become(request, fds)  # never returns
            for f in fds:
                os.close(f)
            sock.sendall(json.dumps({'started': request['id'], 'pid': pid}).encode())


def set_cmdline(argv):
    """Show ``argv`` in /proc/self/cmdline: written over the room the zygote's own holds."""
    import ctypes
    with open('/proc/self/stat', 'rb') as f:
        fields = f.read().rsplit(b')', 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5), 48 and 49)
    data = b''.join(os.fsencode(a) + b'\0' for a in argv)[:end - start - 1]
    ctypes.memmove(start, data + b'\0' * (end - start - len(data)), end - start)


def std_streams(env):
    """New sys.stdin/stdout/stderr over fds 0-2, made the way the interpreter makes them."""
    import io
    unbuffered = bool(env.get('PYTHONUNBUFFERED'))
    made = []
    for fd, mode, errors in ((0, 'rb', 'strict'), (1, 'wb', 'strict'),
                             (2, 'wb', 'backslashreplace')):
        raw = io.FileIO(fd, mode, closefd=False)
        tty = raw.isatty()
        if mode == 'wb' and unbuffered:
            buffered = raw
        else:
            buffered = (io.BufferedReader if mode == 'rb' else io.BufferedWriter)(raw)
        made.append(io.TextIOWrapper(buffered, encoding=sys.__stdout__.encoding, errors=errors,
                                     newline='\n', line_buffering=not unbuffered and (tty or fd == 2),
                                     write_through=unbuffered and fd != 0))
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = made


def become(request, fds):
    """In the fork: take the request's streams, environment and command line, and run it."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # what a fresh interpreter started by the test process would have: Python's handler,
        # or SIG_IGN when SIGINT came ignored (a background job of a non-interactive shell)
        signal.signal(signal.SIGINT, INHERITED_SIGINT)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in set(fds) - {0, 1, 2}:
            os.close(fd)
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        std_streams(request['env'])
        import faulthandler
        if request['env'].get('PYTHONFAULTHANDLER'):
            faulthandler.enable(all_threads=True)
        else:
            faulthandler.disable()
        import numpy
        numpy.random.seed()  # a fresh interpreter's NumPy is seeded from the OS too
        argv = request['argv']
        set_cmdline(argv)
        code = run(argv[1:])
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt as e:
        report(e)
        code = 'SIGINT'
    except BaseException as e:  # pylint: disable=broad-except
        report(e)
        code = 1
    os._exit(finish(code))


def report(error):
    """Print an uncaught exception as the interpreter would: from the program's first frame
    (without this file's and runpy's)."""
    import runpy
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in (
            os.path.abspath(__file__), runpy.__file__, '<frozen runpy>'):
        tb = tb.tb_next
    sys.excepthook(type(error), error.with_traceback(tb), tb)


def run(args):
    """Run ``-m MODULE ARGS``, ``-c CODE ARGS`` or ``SCRIPT ARGS`` as the interpreter would;
    returns 0."""
    import runpy
    if args[0] == '-m':
        sys.argv = [args[1], *args[2:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(args[1], run_name='__main__', alter_sys=True)
    elif args[0] == '-c':
        import types
        sys.argv = ['-c', *args[2:]]
        sys.path[0] = ''
        main_module = types.ModuleType('__main__')
        main_module.__builtins__ = __builtins__
        sys.modules['__main__'] = main_module
        if sys.version_info >= (3, 13):  # from 3.13 a traceback shows the -c code's lines
            import linecache
            lines = args[1].splitlines(keepends=True)
            linecache.cache['<string>'] = (len(args[1]), None, lines, '<string>')
        exec(compile(args[1], '<string>', 'exec'), main_module.__dict__)  # pylint: disable=exec-used
    else:
        script = os.path.abspath(args[0])
        sys.argv = list(args)
        sys.path[0] = os.path.dirname(script)
        runpy.run_path(script, run_name='__main__')
    return 0


def finish(code):
    """What interpreter shutdown does after ``code`` (SystemExit's): the exit status."""
    import threading as threads
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xff
    elif code == 'SIGINT':
        status = 'SIGINT'
    else:
        print(code, file=sys.stderr)
        status = 1
    with contextlib.suppress(BaseException):
        threads._shutdown()  # pylint: disable=protected-access
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()  # pylint: disable=protected-access
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # pylint: disable=broad-except
            status = 120 if status == 0 else status
    if status == 'SIGINT':
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 130
    return status


INHERITED_SIGINT = signal.getsignal(signal.SIGINT)  # before serve() ignores it


def main():
    fd = int(sys.argv[1])
    # what every program would import first: the package (its NumPy shim), NumPy and MXNet
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: end with the test process
    import gluon_softmax  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    import mxnet  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    import numpy  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    warm_plotly()
    serve(fd)


def warm_plotly():
    """Import Plotly and draw one figure of each kind the package draws, so a fork that writes
    a report (most CLI runs do) starts with Plotly's modules loaded and its property validators
    built: about 0.3 s of CPU less per such fork (measured: a 1-epoch run on the small data set
    as a fork, 0.70-1.16 s without this, 0.48-0.80 s with; 5 interleaved rounds of 6 forks).
    Plotly only: the package's ``plots`` module reads the program's language when it is
    imported, which only the program may do."""
    # pylint: disable=import-outside-toplevel
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    figure = make_subplots(rows=1, cols=3)
    figure.add_trace(go.Scatter(x=[1, 2], y=[1, 2], mode='lines+markers', line={'dash': 'dot'}),
                     row=1, col=1)
    figure.add_trace(go.Heatmap(z=[[0, 1]], colorscale='gray', showscale=False), row=1, col=2)
    figure.add_trace(go.Bar(x=[1], y=['a'], orientation='h'), row=1, col=3)
    figure.add_annotation(text='a', x=1, y=1, showarrow=False)
    figure.add_vline(x=1, line_dash='dot', row=1, col=1)
    figure.update_layout(template='plotly_white', title={'text': 'a'}, height=100)
    figure.update_xaxes(title_text='a', showticklabels=False)
    figure.update_yaxes(scaleanchor='x', autorange='reversed')
    figure.to_html(full_html=False, include_plotlyjs=False)


if __name__ == '__main__':
    main()
