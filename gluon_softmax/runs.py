"""Run management around the training loop: divergence, signals, progress, the epoch runner.

None of this is in the chapter's loop: it plugs into ``training.train`` as its
``epoch_fn`` (:class:`EpochRunner`) and ``callback``.
"""
import math
import signal
import sys

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

    def __init__(self, max_loss=DEFAULT_MAX_LOSS, reduce=None, check_every=CHECK_EVERY):
        self.max_loss, self.reduce, self.check_every = max_loss, reduce, check_every
        self.pending = []  # (batch number, loss sum on the device, batch size) not yet read

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
        if self.reduce is not None:
            sums = self.reduce(sums)
        for (number, _, size), loss_sum in zip(pending, sums.asnumpy()):  # one device wait
            mean = float(loss_sum) / size
            if not math.isfinite(mean) or mean > self.max_loss:
                raise Diverged(number, mean, self.max_loss)


class EpochRunner:
    """An ``epoch_fn`` for ``training.train``: a scale-out epoch with progress and epoch numbers.

    ``strategy.train_epoch`` trains (e.g. :class:`gluon_softmax.parallel.DataParallel`);
    ``progress(batches, epoch)`` may wrap each epoch's batches (a bar). A
    :class:`Diverged` raised inside gets the epoch number.
    """

    def __init__(self, strategy, first_epoch=1, progress=None):
        self.strategy, self.epoch, self.progress = strategy, first_epoch - 1, progress

    def __call__(self, net, train_iter, loss, updater, ctx=None):
        self.epoch += 1
        batches = self.progress(train_iter, self.epoch) if self.progress else train_iter
        try:
            return self.strategy.train_epoch(net, batches, loss, updater, ctx)
        except Diverged as e:
            raise Diverged(e.batch, e.loss, e.max_loss, self.epoch) from None


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; raised in the main thread by :class:`StopOnSignal`."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """Turn SIGINT/SIGTERM into :class:`Interrupted`, held back while a checkpoint is written."""

    def __init__(self):
        self.received = None
        self.holding = False

    def handler(self, signum, frame):
        self.received = signum
        if not self.holding:
            raise Interrupted(signum)

    def install(self):
        """Install the handlers (main thread only)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handler)

    def run_whole(self, work):
        """Run ``work()`` without being cut off, then act on a signal that came meanwhile."""
        self.holding = True
        try:
            work()
        finally:
            self.holding = False
        if self.received is not None:
            raise Interrupted(self.received)


def progress_bar(stream=sys.stderr):
    """``progress(batches, epoch)``: a tqdm bar over each epoch when ``stream`` is a terminal."""
    if not stream.isatty():
        return None
    from tqdm import tqdm
    return lambda batches, epoch: tqdm(batches, total=len(batches), leave=False, unit='batch',
                                       desc=f'epoch {epoch}', file=stream)
