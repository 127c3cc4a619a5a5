"""``python -m ml.train``: train a segmenter on data in the shared layout, without Django.

The training itself lives in ``ml.training`` (config, options, schedule, callbacks, distillation,
transfer, provenance, plots, loop); the names below are re-exported for the code that imports them
from here.
"""

from __future__ import annotations

import argparse

from ml.training.config import LIKE_FIELDS, TrainConfig, bundle_recipe
from ml.training.distillation import teacher_targets
from ml.training.loop import development_fold, set_threads, start_or_resume, start_run, train
from ml.training.options import add_training_arguments, config_from_command_line, config_from_options
from ml.training.plots import plot_curves
from ml.training.provenance import source_provenance
from ml.training.schedule import warmup_factor
from ml.training.transfer import transfer_weights

__all__ = [
    "LIKE_FIELDS",
    "TrainConfig",
    "add_training_arguments",
    "bundle_recipe",
    "config_from_options",
    "development_fold",
    "main",
    "plot_curves",
    "set_threads",
    "source_provenance",
    "start_or_resume",
    "start_run",
    "teacher_targets",
    "train",
    "transfer_weights",
    "warmup_factor",
]


def main(argv=None) -> None:
    """``python -m ml.train``: the same training as ``manage.py train_model``, without Django."""
    parser = argparse.ArgumentParser(description="Train a TumorSite segmenter on data in the shared layout.")
    add_training_arguments(parser, data_default=None, output_default="models")
    cfg, args = config_from_command_line(parser, argv)
    if args.threads:
        set_threads(args.threads)
    train(cfg, log=lambda msg: print(msg, flush=True))


if __name__ == "__main__":
    main()
