"""The epoch function ``training.train`` is given: the epoch, wrapped with progress and the
divergence check."""
from gluon_softmax.run.watch import Diverged, WatchedLoss


class EpochRunner:
    """An ``epoch_fn`` for ``training.train``: an epoch function with progress, divergence checks
    and epoch numbers, all plugged in from outside by wrapping what it is given.

    ``epoch_fn(net, batches, loss, updater, ctx)`` trains one epoch: the chapter's
    :func:`gluon_softmax.training.train_epoch` on one device and one process, or the
    scale-out epoch (:class:`gluon_softmax.scale.parallel.DataParallel`, which does its own
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
