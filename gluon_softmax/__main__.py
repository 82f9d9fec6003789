"""``python -m gluon_softmax`` runs the training CLI."""
import sys

from gluon_softmax.train import main

sys.exit(main())
