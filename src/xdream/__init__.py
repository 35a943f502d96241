"""xdream: find the images a visual neuron prefers, without gradients.

Three roles with small interfaces: a :class:`~xdream.generators.Generator` turns codes into
images, a :class:`~xdream.scorers.Scorer` turns images into one score each, and an
:class:`~xdream.optimizers.Optimizer` proposes the next codes from the scores
(:func:`xdream.optimizers.make`, :func:`xdream.generators.make`, :func:`xdream.scorers.make_unit`).
:class:`~xdream.experiment.Experiment` runs the loop and writes records that survive a crash.
"""

__version__ = "0.1.0"
