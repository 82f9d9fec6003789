"""The model protocol: what reports and checkpoints need from any model.

:func:`as_model` gives any net the small protocol run management uses:
``parameters()``, ``weight_matrix()``, ``ctx``. A recipe's model is built by
:func:`gluon_softmax.compose.build_model`.
"""
from mxnet import gluon


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


