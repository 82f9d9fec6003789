"""Divergence: a check of every batch's loss, plugged into the loop through the loss it is given."""
import math
import signal

from gluon_softmax.run.signals import Interrupted


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
