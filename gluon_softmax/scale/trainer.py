"""The concise model's Trainer on several devices or over the workers of a job."""
from mxnet import gluon

from gluon_softmax import concise
from gluon_softmax.scale.workers import ParallelError


class WorkerSumTrainer:
    """A ``gluon.Trainer`` stepping on gradients summed over devices and worker processes.

    The sum goes through :meth:`Workers.sum`, out of place. Measured with MXNet
    1.9.1: the Trainer's own in-place pushpull of the gradients on a dist
    kvstore (``update_on_kvstore=False``) corrupts them for a hybridized net.
    Every worker then applies the same update to the same sums, so the copies
    of the parameters stay bitwise equal; the optimizer state stays local.
    """

    def __init__(self, trainer, params, workers):
        self.trainer, self.params, self.workers = trainer, list(params), workers

    def step(self, batch_size):
        """Sum every gradient over devices and workers, then update with ``batch_size``."""
        for param in self.params:
            if param.grad_req == 'null':
                continue
            grads = param.list_grad()
            total = grads[0]
            for grad in grads[1:]:
                total = total + grad.as_in_ctx(total.ctx)
            total = self.workers.sum(total)
            for grad in grads:
                grad[:] = total.as_in_ctx(grad.ctx)
        # the first update also broadcasts worker 0's parameters through the kvstore
        self.trainer.update(batch_size)

    def save_states(self, path):
        """The wrapped Trainer's optimizer state, as ``Trainer.save_states``."""
        self.trainer.save_states(path)

    def load_states(self, path):
        """Restore the optimizer state written by :meth:`save_states`."""
        self.trainer.load_states(path)

    def __repr__(self):
        return f'WorkerSumTrainer({self.workers!r})'


def build_parallel_trainer(net, lr, momentum=0.0, wd=0.0, num_updates=None, kvstore='device',
                           workers=None):
    """:func:`gluon_softmax.concise.build_trainer` for a net on several devices or workers.

    ``kvstore`` None is refused for a net on several devices. With the
    ``workers`` of a distributed job the gradients are summed over all of them
    (:class:`WorkerSumTrainer`) before each update.
    """
    num_devices = len(next(iter(net.collect_params().values())).list_ctx())
    if kvstore is None and num_devices > 1:
        # measured: without a kvstore every device steps on its own gradients and the
        # copies of the parameters silently drift apart
        raise ParallelError(f'a net on {num_devices} devices needs a kvstore to sum their '
                            "gradients ('device' or 'local'), not None")
    if workers is None or not workers.distributed:
        return concise.build_trainer(net, lr, momentum, wd, num_updates, kvstore)
    # each worker updates its own copy from the summed gradients: the servers only add,
    # and the optimizer state stays local, where a checkpoint can save it
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            concise.sgd_options(lr, momentum, wd, num_updates),
                            kvstore=workers.kv, update_on_kvstore=False)
    return WorkerSumTrainer(trainer, net.collect_params().values(), workers)
