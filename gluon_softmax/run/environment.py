"""The environment variables MXNet reads, checked before it loads: a bad value is one line."""
import math
import os
import sys

from gluon_softmax.run.cli import EXIT_USAGE


# The environment variables MXNet 1.9.1 reads as it starts or runs its first operators, where a
# value it cannot parse aborts the process in C++ (exit 134, "terminate called after throwing
# an instance of 'dmlc::ParamError'"), raises MXNet's own traceback, or hangs (a thread count of
# 0, or of two billion): each checked before MXNet is imported, by kind. Found by setting each
# variable the library names to a bad value and training one batch. An empty value is unset
# for MXNet, except MXNET_ENGINE_TYPE's.
MAX_THREADS = 4096
ENGINES = ('NaiveEngine', 'ThreadedEngine', 'ThreadedEnginePerDevice')
MXNET_ENVIRONMENT = {
    **dict.fromkeys(('OMP_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS',
                     'MXNET_CPU_PRIORITY_NTHREADS', 'MXNET_GPU_WORKER_NTHREADS',
                     'MXNET_MP_WORKER_NTHREADS', 'MXNET_OMP_MAX_THREADS'), 'threads'),
    **dict.fromkeys(('MXNET_CPU_PARALLEL_RAND_COPY', 'MXNET_CPU_PARALLEL_SIZE',
                     'MXNET_CPU_TEMP_COPY', 'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN',
                     'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN_FWD',
                     'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN_BWD', 'MXNET_EXEC_INPLACE_GRAD_SUM_CAP',
                     'MXNET_MKLDNN_CACHE_NUM', 'MXNET_USE_NUM_CORES_OPERATOR_TUNING',
                     'MXNET_PROFILER_AUTOSTART'), 'integer'),
    **dict.fromkeys(('MXNET_EXEC_BULK_EXEC_TRAIN', 'MXNET_EXEC_BULK_EXEC_INFERENCE',
                     'MXNET_MKLDNN_ENABLED', 'MXNET_ENGINE_INFO',
                     'MXNET_MEM_PLAN_VERBOSE_LOGGING',
                     'MXNET_INFER_STORAGE_TYPE_VERBOSE_LOGGING'), 'boolean'),
    'MXNET_TUNING_WEIGHT_SCALE': 'number',
    'MXNET_ENGINE_TYPE': 'engine',
}
INT32_MAX = 2**31 - 1


def _whole(text):
    """``int(text)`` as MXNet's parser reads it (ASCII digits, one sign, spaces around), or None."""
    digits = text.strip()
    digits = digits[1:] if digits[:1] in ('+', '-') else digits
    return int(text) if digits.isascii() and digits.isdigit() else None


def environment_problem(environ=None):
    """``NAME=VALUE: what is wrong`` for the first MXNet variable MXNet would fail on, or None."""
    environ = os.environ if environ is None else environ
    for name, kind in MXNET_ENVIRONMENT.items():
        value = environ.get(name)
        if value is None or (value == '' and kind != 'engine'):
            continue
        plain = value and value.isprintable() and value.strip() == value
        shown = f'{name}={value}' if plain else f'{name}={value!r}'
        if kind in ('threads', 'integer') and _whole(value) is None:
            return f'{shown}: not a whole number'
        if kind == 'threads' and not 1 <= _whole(value) <= MAX_THREADS:
            return f'{shown}: not a number of threads from 1 to {MAX_THREADS}'
        if kind == 'integer' and not -INT32_MAX - 1 <= _whole(value) <= INT32_MAX:
            return f'{shown}: out of range (MXNet reads a 32-bit integer)'
        if kind == 'boolean' and value.lower() not in ('true', 'false', '1', '0'):
            return f'{shown}: not true, false, 1 or 0'
        if kind == 'number':
            try:
                finite = math.isfinite(float(value))
            except ValueError:
                finite = False
            if not finite:
                return f'{shown}: not a finite number'
        if kind == 'engine' and value not in ENGINES:
            return f'{shown}: not an MXNet engine ({", ".join(ENGINES)})'
    return None


def check_environment(environ=None):
    """Exit 2 with one ``error:`` line when MXNet would abort or hang on an environment variable.

    Call before MXNet is imported (it reads them as it loads, or at its first operator).
    """
    problem = environment_problem(environ)
    if problem:
        print(f'error: {problem} (an environment variable MXNet reads; fix or unset it)',
              file=sys.stderr)
        sys.exit(EXIT_USAGE)
