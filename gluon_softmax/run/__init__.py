"""Run management: what turns the chapter's ``training.train`` into a program's run.

The recipe (``settings``), the run directory (``rundir``), atomic writes (``files``),
checkpoints, signals, standard streams, the divergence watch, progress, the epoch
runner, the model protocol (``model``) and the report pages. It uses the chapter and
never the scale-out layer (``gluon_softmax.scale``): the programs wire the two.
"""
