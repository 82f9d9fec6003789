"""Softmax regression the concise way: ``nn.Dense``, ``SoftmaxCrossEntropyLoss``, ``Trainer``."""
import mxnet as mx
from mxnet import gluon, init
from mxnet.gluon import nn

from gluon_softmax.parallel import ParallelError, WorkerSumTrainer


def build_net(num_outputs=10, num_inputs=784, sigma=0.01, ctx=None, hybridize=True):
    """A ``Sequential`` holding one ``Dense(num_outputs)``, weights ~ N(0, sigma^2), on ``ctx``.

    The output is logits: the softmax lives inside the loss, where it can be
    computed stably. ``hybridize`` compiles the net into one cached graph.
    ``ctx`` may be a list of devices: each gets a copy of the same initial weights.
    """
    net = nn.HybridSequential()
    # Dense flattens (batch, 1, 28, 28) to (batch, 784) itself; giving in_units creates
    # the weights now instead of at the first batch, so they can be saved or copied at once
    net.add(nn.Dense(num_outputs, in_units=num_inputs))
    net.initialize(init.Normal(sigma=sigma), ctx=ctx)
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def build_loss(hybridize=True):
    """Per-example softmax cross-entropy on logits (LogSumExp inside, so it never overflows)."""
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if hybridize:
        loss.hybridize(static_alloc=True, static_shape=True)
    return loss


def build_trainer(net, lr, momentum=0.0, wd=0.0, num_updates=None, kvstore='device',
                  workers=None):
    """Minibatch SGD over all of ``net``'s parameters; the book's recipe with the defaults.

    ``momentum`` and weight decay ``wd`` go to MXNet's SGD; ``num_updates`` (the
    total number of steps) turns on a cosine schedule from ``lr`` down to 0.
    ``kvstore`` (``'device'`` or ``'local'``) sums the gradients of a net on
    several devices; ``None`` is refused there. With the ``workers`` of a
    distributed job the Trainer gets the job's kvstore, and the gradients are
    summed over all workers before each update.
    """
    num_devices = len(next(iter(net.collect_params().values())).list_ctx())
    if kvstore is None and num_devices > 1:
        # measured: without a kvstore every device steps on its own gradients and the
        # copies of the parameters silently drift apart
        raise ParallelError(f'a net on {num_devices} devices needs a kvstore to sum their '
                            "gradients ('device' or 'local'), not None")
    optimizer_params = {'learning_rate': lr}
    if momentum:
        optimizer_params['momentum'] = momentum
    if wd:
        optimizer_params['wd'] = wd
    if num_updates:
        optimizer_params['lr_scheduler'] = mx.lr_scheduler.CosineScheduler(
            max_update=num_updates, base_lr=lr, final_lr=0.0)
    if workers is None or not workers.distributed:
        return gluon.Trainer(net.collect_params(), 'sgd', optimizer_params, kvstore=kvstore)
    # each worker updates its own copy from the summed gradients: the servers only add,
    # and the optimizer state stays local, where a checkpoint can save it
    trainer = gluon.Trainer(net.collect_params(), 'sgd', optimizer_params, kvstore=workers.kv,
                            update_on_kvstore=False)
    return WorkerSumTrainer(trainer, net.collect_params().values(), workers)
