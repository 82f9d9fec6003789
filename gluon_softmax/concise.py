"""Softmax regression the concise way: ``nn.Dense``, ``SoftmaxCrossEntropyLoss``, ``Trainer``."""
import mxnet as mx
from mxnet import gluon, init
from mxnet.gluon import nn


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


def sgd_options(lr, momentum=0.0, wd=0.0, num_updates=None):
    """MXNet SGD's optimizer parameters: learning rate, momentum, weight decay, cosine schedule.

    ``num_updates`` (the total number of steps) turns on a cosine schedule from
    ``lr`` down to 0; zeros leave the book's plain SGD.
    """
    options = {'learning_rate': lr}
    if momentum:
        options['momentum'] = momentum
    if wd:
        options['wd'] = wd
    if num_updates:
        options['lr_scheduler'] = mx.lr_scheduler.CosineScheduler(
            max_update=num_updates, base_lr=lr, final_lr=0.0)
    return options


def build_trainer(net, lr, momentum=0.0, wd=0.0, num_updates=None, kvstore='device'):
    """Minibatch SGD over all of ``net``'s parameters; the book's recipe with the defaults.

    ``kvstore`` is Gluon's: how the gradients of a net on several devices are summed.
    """
    return gluon.Trainer(net.collect_params(), 'sgd',
                         sgd_options(lr, momentum, wd, num_updates), kvstore=kvstore)
