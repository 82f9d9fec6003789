"""Softmax regression the concise way: ``nn.Dense``, ``SoftmaxCrossEntropyLoss``, ``Trainer``."""
from mxnet import gluon, init
from mxnet.gluon import nn


def build_net(num_outputs=10, num_inputs=784, sigma=0.01, ctx=None, hybridize=True):
    """A ``Sequential`` holding one ``Dense(num_outputs)``, weights ~ N(0, sigma^2), on ``ctx``.

    The output is logits: the softmax lives inside the loss, where it can be
    computed stably. ``hybridize`` compiles the net into one cached graph.
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


def build_trainer(net, lr, kvstore='device'):
    """Minibatch SGD over all of ``net``'s parameters."""
    return gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr}, kvstore=kvstore)
