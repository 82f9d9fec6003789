"""Devices: parse ``cpu`` / ``gpu`` / ``gpu:1`` / ``cpu:0,cpu:1`` / ``gpu:all`` and check them."""
import mxnet as mx

GPU_HELP = ('install a CUDA build of MXNet (e.g. pip install mxnet-cu112==1.9.1, which needs '
            'CUDA 11 and cuDNN 8 on the host) on a machine with an NVIDIA GPU of compute '
            'capability 5.0-8.6, or use --ctx cpu')


# cpu:N names the N-th copy of the model in this process (MXNet keeps per-device tables sized by
# the largest index: cpu:2147483648 grows memory for minutes before anything runs)
MAX_CPU_INDEX = 1023


class ContextError(Exception):
    """A device spec is malformed or names a device this MXNet cannot use."""


def num_gpus():
    """How many GPUs this MXNet build sees (always 0 on the CPU wheel)."""
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:
        # a CUDA build on a machine without a usable driver
        return 0


def parse_ctx(spec):
    """Parse a device spec into a list of ``mx.Context``, checking GPUs exist.

    ``cpu`` and ``gpu`` mean device 0; ``gpu:all`` means every visible GPU;
    a comma list gives several devices for data-parallel training.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ContextError(f'--ctx {spec!r}: expected cpu, gpu, gpu:N, gpu:all or a comma list')
    ctxs = []
    for part in spec.split(','):
        ctxs.extend(_parse_one(part.strip().lower(), spec))
    if len(set(ctxs)) != len(ctxs):
        raise ContextError(f'--ctx {spec!r}: a device is listed twice')
    for ctx in ctxs:
        if ctx.device_type == 'gpu':
            probe(ctx, spec)
    return ctxs


def probe(ctx, spec):
    """Run one small kernel on ``ctx``; a GPU this MXNet cannot drive raises ContextError.

    A CUDA wheel counts every GPU the driver shows, but has kernels only for the
    architectures it was built for: on a newer card (e.g. Hopper) the first
    kernel fails with "no kernel image is available for execution on the device".
    """
    try:
        (mx.nd.ones((2, 2), ctx=ctx) * 2).asnumpy()
    except mx.base.MXNetError as e:
        reason = next((line.strip() for line in str(e).splitlines()
                       if 'ErrStr' in line or 'CUDA' in line), str(e).strip().splitlines()[-1])
        raise ContextError(f'--ctx {spec!r}: MXNet cannot run on {ctx}: {reason}; '
                           f'{GPU_HELP}') from None


def _parse_one(part, spec):
    """One comma-separated item of a device spec -> list of contexts."""
    kind, _, index = part.partition(':')
    if kind not in ('cpu', 'gpu') or (_ and not index):
        raise ContextError(f'--ctx {spec!r}: expected cpu, gpu, gpu:N, gpu:all or a comma list')
    if kind == 'gpu':
        available = num_gpus()
        if available == 0:
            raise ContextError(f'--ctx {spec!r}: this MXNet build or machine has no GPU '
                               f'(mx.context.num_gpus() is 0); {GPU_HELP}')
        if index == 'all':
            return [mx.gpu(i) for i in range(available)]
    if not index:
        return [mx.Context(kind, 0)]
    if not (index.isascii() and index.isdigit()):
        raise ContextError(f'--ctx {spec!r}: device index {index!r} is not a number')
    if kind == 'cpu' and int(index) > MAX_CPU_INDEX:
        raise ContextError(f'--ctx {spec!r}: cpu index {index} is above {MAX_CPU_INDEX} (each '
                           'cpu:N is one more copy of the model in this process)')
    if kind == 'gpu' and int(index) >= available:
        raise ContextError(f'--ctx {spec!r}: gpu:{index} requested but MXNet sees '
                           f'{available} GPU(s)')
    return [mx.Context(kind, int(index))]


def try_gpu(i=0):
    """``mx.gpu(i)`` if it exists, else ``mx.cpu()`` (the book's helper)."""
    return mx.gpu(i) if num_gpus() > i else mx.cpu()
