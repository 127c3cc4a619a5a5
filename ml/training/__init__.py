"""Training a segmenter, one concern per module; ``python -m ml.train`` is the command line.

- ``config``: ``TrainConfig`` (what to train, validated eagerly) and ``bundle_recipe`` (``--like``);
- ``options``: the command-line options shared by ``ml.train`` and ``manage.py train_model``;
- ``schedule``: the learning-rate decay and the gradual warm-up (Goyal et al. 2017);
- ``callbacks``: checkpoints, best epoch, early stopping and the time budget, per epoch;
- ``distillation``: soft targets from teacher models (Hinton et al. 2015);
- ``transfer``: warm starts, layer by layer;
- ``provenance``: what a bundle records about how it was made;
- ``plots``: the training-curve PNG;
- ``loop``: the run itself: split, fit, calibrate, write the bundle.

Modules here import TensorFlow only inside the functions that need it, so that reading a config or a
bundle's recipe does not load it.
"""
