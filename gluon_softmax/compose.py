"""What the programs share as they compose the layers: a recipe's model on any devices.

Here, not in run management or scale-out: it wires the two (a :class:`Recipe`'s
:class:`~gluon_softmax.run.model.Model`, on devices and workers of the scale-out layer),
and neither layer imports the other.
"""
from gluon_softmax import concise, scratch
from gluon_softmax.idx import IMAGE_SIDE
from gluon_softmax.run.model import ConciseModel, ScratchModel
from gluon_softmax.scale.parallel import ctx_list
from gluon_softmax.scale.replicas import replicate_scratch
from gluon_softmax.scale.trainer import build_parallel_trainer
from gluon_softmax.scale.workers import Workers


def build_model(recipe, ctxs, steps_per_epoch, kvstore='device', workers=None):
    """The :class:`Model` a recipe asks for, with parameters on every device of ``ctxs``.

    One device and one process get the chapter's own pieces unchanged; several
    devices or the ``workers`` of a distributed job get them wrapped by the
    scale-out layer (gradients summed by the Trainer's kvstore, or by the
    replicas' SGD for the scratch model). ``steps_per_epoch`` sizes the cosine
    schedule.
    """
    ctxs = ctx_list(ctxs)
    workers = workers or Workers()
    side = recipe.resize or IMAGE_SIDE
    if recipe.impl == 'scratch':
        net = scratch.SoftmaxRegressionScratch(num_inputs=side * side, ctx=ctxs[0])
        if len(ctxs) == 1 and not workers.distributed:
            return ScratchModel(net, scratch.softmax_cross_entropy, scratch.SGD(
                net.parameters(), recipe.lr))
        net, updater = replicate_scratch(net, recipe.lr, ctxs, workers)
        return ScratchModel(net, scratch.softmax_cross_entropy, updater)
    net = concise.build_net(num_inputs=side * side, ctx=ctxs)
    num_updates = recipe.epochs * steps_per_epoch if recipe.lr_schedule == 'cosine' else None
    trainer = build_parallel_trainer(net, recipe.lr, momentum=recipe.momentum, wd=recipe.wd,
                                     num_updates=num_updates, kvstore=kvstore, workers=workers)
    return ConciseModel(net, concise.build_loss(), trainer)
