"""Building a recipe's model, and what reports and checkpoints need from any model.

:func:`build_model` is the one place a :class:`~gluon_softmax.settings.Recipe`
becomes a net, its loss and its updater (on one device, several devices or the
workers of a job). :func:`as_model` gives any net the small protocol the
outer layers use: ``parameters()``, ``weight_matrix()``, ``ctx``.
"""
from mxnet import gluon

from gluon_softmax import concise, parallel, scratch
from gluon_softmax.data import set_seed  # noqa: F401  the chapter's, still models.set_seed
from gluon_softmax.idx import IMAGE_SIDE


class Model:
    """A net with its loss and updater, seen through the protocol reports and checkpoints use."""

    impl = None

    def __init__(self, net, loss=None, updater=None):
        self.net, self.loss, self.updater = net, loss, updater

    def parameters(self):
        """The trainable arrays (on the first device), in a fixed order."""
        raise NotImplementedError

    def weight_matrix(self):
        """The ``(num_inputs, num_outputs)`` weight matrix, as NumPy."""
        raise NotImplementedError

    @property
    def ctx(self):
        """The device holding the (first copy of the) parameters."""
        return self.parameters()[0].ctx

    def save_states(self, path):
        """Write the updater's state (momentum buffers, step count); False if it has none."""
        return False

    def load_states(self, path):
        """Read what :meth:`save_states` wrote."""

    def __repr__(self):
        return f'{type(self).__name__}({self.net!r}, updater={self.updater!r})'


class ConciseModel(Model):
    """A Gluon block (``nn.Dense`` stores its weight as ``(num_outputs, num_inputs)``)."""

    impl = 'concise'

    def parameters(self):
        return [p.data(p.list_ctx()[0]) for p in self.net.collect_params().values()]

    def weight_matrix(self):
        return self.parameters()[0].asnumpy().T

    def save_states(self, path):
        if self.updater is None:
            raise ValueError('a checkpoint needs the model build_model made: its updater holds '
                             'the optimizer state')
        self.updater.save_states(path)
        return True

    def load_states(self, path):
        self.updater.load_states(path)


class ScratchModel(Model):
    """The from-scratch model (or its replicas on several devices): ``W`` is ``(784, 10)``."""

    impl = 'scratch'

    def parameters(self):
        return self.net.parameters()

    def weight_matrix(self):
        return self.net.W.asnumpy()


MODELS = {cls.impl: cls for cls in (ConciseModel, ScratchModel)}


def as_model(net):
    """``net`` seen through the :class:`Model` protocol (a :class:`Model` is returned as it is)."""
    if isinstance(net, Model):
        return net
    return ConciseModel(net) if isinstance(net, gluon.Block) else ScratchModel(net)


def build_model(recipe, ctxs, steps_per_epoch, kvstore='device', workers=None):
    """The :class:`Model` a recipe asks for, with parameters on every device of ``ctxs``.

    One device and one process get the chapter's own pieces unchanged; several
    devices or the ``workers`` of a distributed job get them wrapped by the
    scale-out layer (gradients summed by the Trainer's kvstore, or by the
    replicas' SGD for the scratch model). ``steps_per_epoch`` sizes the cosine
    schedule.
    """
    ctxs = parallel.ctx_list(ctxs)
    workers = workers or parallel.Workers()
    side = recipe.resize or IMAGE_SIDE
    if recipe.impl == 'scratch':
        net = scratch.SoftmaxRegressionScratch(num_inputs=side * side, ctx=ctxs[0])
        if len(ctxs) == 1 and not workers.distributed:
            return ScratchModel(net, scratch.softmax_cross_entropy, scratch.SGD(
                net.parameters(), recipe.lr))
        net, updater = parallel.replicate_scratch(net, recipe.lr, ctxs, workers)
        return ScratchModel(net, scratch.softmax_cross_entropy, updater)
    net = concise.build_net(num_inputs=side * side, ctx=ctxs)
    num_updates = recipe.epochs * steps_per_epoch if recipe.lr_schedule == 'cosine' else None
    trainer = parallel.build_trainer(net, recipe.lr, momentum=recipe.momentum, wd=recipe.wd,
                                     num_updates=num_updates, kvstore=kvstore, workers=workers)
    return ConciseModel(net, concise.build_loss(), trainer)
