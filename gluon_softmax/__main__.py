"""``python -m gluon_softmax`` runs the training CLI."""
from gluon_softmax.train import program

program()
