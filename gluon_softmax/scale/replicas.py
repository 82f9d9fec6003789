"""The from-scratch model on several devices: a copy of W and b per device, and its SGD."""
import copy

from gluon_softmax.scale.parallel import sum_on
from gluon_softmax.scale.workers import Workers


class ScratchReplicas:
    """A :class:`~gluon_softmax.scratch.SoftmaxRegressionScratch` with a copy on every device.

    Calling it multiplies a batch by the copy on the batch's own device; the
    first copy (``W``, ``b``) is the one saved and reported.
    """

    def __init__(self, model, ctxs):
        self.replicas = [model]
        for ctx in ctxs[1:]:
            replica = copy.copy(model)
            replica.W, replica.b = model.W.copyto(ctx), model.b.copyto(ctx)
            for param in replica.parameters():
                param.attach_grad()
            self.replicas.append(replica)
        self.W, self.b = model.W, model.b

    def __call__(self, X):
        for replica in self.replicas:
            if replica.W.ctx == X.ctx:
                return replica(X)
        raise ValueError(f'input on {X.ctx}, but the model is on '
                         f'{", ".join(str(r.W.ctx) for r in self.replicas)}')

    def parameters(self):
        """The first copy's ``[W, b]``."""
        return self.replicas[0].parameters()

    def parameter_copies(self):
        """Per parameter, its copies on every device: ``[[W, W', ...], [b, b', ...]]``."""
        return [list(copies) for copies in zip(*(r.parameters() for r in self.replicas))]

    def save_parameters(self, path):
        """Write the first copy's ``W`` and ``b``."""
        self.replicas[0].save_parameters(path)

    def load_parameters(self, path):
        """Read ``W`` and ``b`` into every copy."""
        for replica in self.replicas:
            replica.load_parameters(path)

    def __repr__(self):
        return f'ScratchReplicas({self.replicas[0]!r}, copies={len(self.replicas)})'


class ReplicaSGD:
    """Minibatch SGD for :class:`ScratchReplicas`: one step on the gradients summed over copies.

    Given the ``workers`` of a distributed job, the sums are also added over
    the workers. The first copy is updated, then copied to the others: the same
    update as on one device.
    """

    def __init__(self, replicas, lr, workers=None):
        self.params, self.lr = replicas.parameter_copies(), lr
        self.workers = workers or Workers()

    def step(self, batch_size):
        """Update every parameter from the summed gradients of its copies."""
        for copies in self.params:
            param = copies[0]
            grad = sum_on(param.ctx, [copy_.grad for copy_ in copies])
            grad = self.workers.sum(grad)
            param[:] = param - self.lr * grad / batch_size
            for copy_ in copies[1:]:
                copy_[:] = param.as_in_ctx(copy_.ctx)

    def __repr__(self):
        return f'ReplicaSGD(lr={self.lr}, params={len(self.params)}, {self.workers!r})'


def replicate_scratch(model, lr, ctxs, workers=None):
    """``(net, updater)`` for the scratch ``model`` trained on ``ctxs`` and ``workers``."""
    replicas = ScratchReplicas(model, ctxs)
    return replicas, ReplicaSGD(replicas, lr, workers)
