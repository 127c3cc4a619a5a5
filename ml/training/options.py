"""The training options, shared by ``python -m ml.train`` and ``manage.py train_model``."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ml.data import AUGMENTATIONS, TUMOUR_TYPES
from ml.training.config import TrainConfig, bundle_recipe


def add_training_arguments(parser, *, data_default: str | None, output_default: str) -> None:
    """The training options, shared by ``python -m ml.train`` and ``manage.py train_model``.

    Options that ``--like`` can fill default to None here; ``config_from_options`` applies, in order,
    what was given, then the bundle's value, then ``TrainConfig``'s default (named in each help text).
    """
    # The choices live beside the Keras code that defines them; the parser is built only to train.
    from ml.encoders import ENCODERS  # noqa: PLC0415 (imports Keras; ml.train stays light until it runs)
    from ml.losses import LOSSES  # noqa: PLC0415 (imports Keras; ml.train stays light until it runs)
    from ml.models import ARCHITECTURES  # noqa: PLC0415 (imports Keras; ml.train stays light until it runs)

    d = {f.name: f.default for f in fields(TrainConfig)}
    parser.add_argument(
        "--like",
        metavar="JSON",
        help="train a model of this bundle's shape, from scratch unless --init-from: architecture, "
        "encoder, encoder weights, input size, base filters, depth, dropout, deep supervision, "
        "attention blocks, augmentation, loss and batch size come from its JSON (e.g. "
        "models/unet.json); any of these options given as well wins",
    )
    parser.add_argument(
        "--architecture", choices=ARCHITECTURES, help="decoder architecture (required without --like)"
    )
    parser.add_argument("--encoder", choices=ENCODERS, help=f"encoder (default {d['encoder']})")
    if data_default is None:
        parser.add_argument(
            "--data", required=True, help="dataset folder in the shared layout (cases.csv, images/, masks/)"
        )
    else:
        parser.add_argument(
            "--data",
            default=data_default,
            help="dataset folder in the shared layout (default: TUMORSITE_DATA)",
        )
    parser.add_argument(
        "--image-size",
        type=int,
        help=f"square model input in px, a multiple of 16/32 (default {d['image_size']})",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=d["epochs"],
        help=f"maximum epochs; early stopping may end sooner (default {d['epochs']})",
    )
    parser.add_argument("--batch-size", type=int, help=f"batch size (default {d['batch_size']})")
    parser.add_argument(
        "--base-filters", type=int, help=f"filters of the first stage (default {d['base_filters']})"
    )
    parser.add_argument(
        "--depth",
        type=int,
        help=f"downsamplings of the plain encoder (default {d['depth']}; at 256 px, 5 lets the "
        "bottleneck see the whole slice)",
    )
    parser.add_argument(
        "--encoder-weights",
        help="'none' (random init, the default), 'imagenet' (downloaded by Keras) or a weights file path",
    )
    parser.add_argument("--name", help="bundle name (default: <architecture>_<encoder>_<size>)")
    parser.add_argument(
        "--output-dir",
        default=output_default,
        help=f"where <name>.keras and <name>.json go (default {output_default}; a bundle of the "
        "same name there is replaced when the run ends)",
    )
    parser.add_argument("--run-dir", help="checkpoints, CSV log and curves (default: runs/<name>)")
    add_schedule_arguments(parser, improving="validation Dice")
    parser.add_argument(
        "--warmup-epochs",
        type=float,
        default=d["warmup_epochs"],
        help="raise the learning rate linearly from near 0 over this many epochs (fractions "
        "allowed), e.g. 1 for a warm start (--init-from); default 0, no warm-up",
    )
    add_precision_argument(parser)
    parser.add_argument(
        "--seed",
        type=int,
        default=d["seed"],
        help=f"split seed, and the initialisation's unless --init-seed (default {d['seed']})",
    )
    add_init_seed_argument(parser)
    parser.add_argument(
        "--init-from",
        help="a .keras model whose same-named, same-shaped layers seed this one "
        "(e.g. a trained U-Net for an Attention U-Net)",
    )
    parser.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: all cores)")
    parser.add_argument(
        "--fold",
        type=int,
        help="cross-validation: deal the development patients (train + validation groups; the test "
        "groups are never used) into --folds folds by patient group, validate on this one (0-based) "
        "and train on the rest",
    )
    parser.add_argument(
        "--folds", type=int, help=f"how many cross-validation folds (default {d['folds']}; with --fold)"
    )
    parser.add_argument("--limit", type=int, help="use at most N train and N val slices (smoke runs)")
    parser.add_argument(
        "--augmentation",
        choices=list(AUGMENTATIONS),
        help="training augmentation: none, standard (the default: flip, ±10° rotation, ±10%% scale, "
        "brightness and contrast) or strong (±20°, ±20%%, larger intensity changes)",
    )
    parser.add_argument(
        "--dropout", type=float, help="spatial dropout after the bottleneck block (default 0)"
    )
    parser.add_argument(
        "--deep-supervision",
        action=argparse.BooleanOptionalAction,
        help="U-Net++ only: a mask head on every top-row node, each trained with the loss; "
        "inference averages them (Zhou et al. 2018); default off",
    )
    parser.add_argument(
        "--attention-blocks",
        type=int,
        help="transformer blocks (self-attention over the bottleneck's positions) after the "
        "bottleneck; each starts as the identity, so a warm start keeps its source's "
        "output (default 0)",
    )
    parser.add_argument(
        "--loss",
        choices=list(LOSSES),
        help="bce_dice (BCE + soft Dice, the default), dice, focal, or lovasz (Lovász hinge, "
        "per image: for fine-tuning a bce_dice model at a low learning rate)",
    )
    parser.add_argument(
        "--keep-epochs",
        action="store_true",
        help="keep every epoch's model in <run-dir>/epochs/ (for python -m ml.average)",
    )
    parser.add_argument(
        "--distill-from",
        nargs="+",
        default=[],
        metavar="KERAS",
        help="knowledge distillation: train on a mix of the expert masks and these bundles' "
        "mean probabilities, e.g. the three shipped models",
    )
    add_type_weight_argument(parser, example="glioma=2", note=" (--like takes the bundle's weights)")
    parser.add_argument(
        "--type-head",
        type=float,
        metavar="WEIGHT",
        help="also learn the tumour type from the bottleneck (a second head on the shared encoder), its "
        "cross-entropy weighted by WEIGHT in the loss (e.g. 0.3; plain encoder, one mask head); the "
        "bundle keeps the segmenter only (default 0: no head; --like takes the bundle's)",
    )
    parser.add_argument(
        "--hard-mining",
        type=float,
        metavar="STRENGTH",
        help="hard-example mining: after each epoch, draw each training slice with weight 1 + STRENGTH x "
        "(1 - the model's Dice on it), times its --type-weight (e.g. 2: a missed slice 3 times as often "
        "as a perfect one); costs a forward pass over the training slices per epoch (default 0: none; "
        "--like takes the bundle's)",
    )
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=d["distill_weight"],
        help="the teachers' share of each training target with --distill-from "
        f"(default {d['distill_weight']})",
    )


def add_schedule_arguments(parser, *, improving: str) -> None:
    """``--max-minutes``, ``--patience`` (epochs without a gain of ``improving``), ``--lr-start`` and
    ``--lr-end``, with ``TrainConfig``'s defaults."""
    d = {f.name: f.default for f in fields(TrainConfig)}
    parser.add_argument(
        "--max-minutes", type=float, help="stop after the epoch that would exceed this budget"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=d["patience"],
        help=f"early stopping: epochs without a {improving} gain before stopping (default {d['patience']})",
    )
    parser.add_argument(
        "--lr-start",
        type=float,
        default=d["lr_start"],
        help=f"initial learning rate (default {d['lr_start']:g}; lower it to fine-tune a warm start)",
    )
    parser.add_argument(
        "--lr-end", type=float, default=d["lr_end"], help=f"final learning rate (default {d['lr_end']:g})"
    )


def add_precision_argument(parser) -> None:
    """``--precision``: auto, fp32 or bf16."""
    parser.add_argument(
        "--precision",
        default=TrainConfig.precision,
        choices=["auto", "fp32", "bf16"],
        help="auto: bf16 where the CPU has AMX/AVX512-BF16 or on a GPU, else fp32",
    )


def config_from_command_line(parser, argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """``parser``'s arguments and the ``TrainConfig`` they make (``config_from_options``); a bad
    combination ends the command with the parser's usage and what to pass."""
    args = parser.parse_args(argv)
    try:
        return config_from_options(vars(args), args.data), args
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
        raise  # parser.error exits; this line only tells the type checker so


def add_init_seed_argument(parser) -> None:
    """``--init-seed``: another initialisation on the same split, to measure how much runs differ."""
    parser.add_argument(
        "--init-seed",
        type=int,
        help="seed of the initial weights, the augmentation and the draw order, the split staying that "
        "of --seed: a second run of a recipe on the same patients (default: --seed)",
    )


def add_type_weight_argument(parser, *, example: str, note: str = "") -> None:
    """``--type-weight TYPE=WEIGHT`` (repeatable), into ``type_weights`` as (type, weight) pairs."""
    parser.add_argument(
        "--type-weight",
        dest="type_weights",
        type=type_weight,
        action="append",
        metavar="TYPE=WEIGHT",
        help="draw the training slices of this tumour type this many times as often (repeat for "
        f"several types, e.g. --type-weight {example}): each epoch draws as many slices as there are, "
        f"with replacement; default: every slice once per epoch{note}",
    )


def type_weight(text: str) -> tuple[str, float]:
    """``--type-weight``'s ``TYPE=WEIGHT``, e.g. ``glioma=2``."""
    tumour_type, sep, weight = text.partition("=")
    try:
        value = float(weight)
    except ValueError:
        value = float("nan")
    if not sep or tumour_type not in TUMOUR_TYPES or not value > 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give TYPE=WEIGHT, a type of {', '.join(TUMOUR_TYPES)} and a weight > 0 "
            "(e.g. glioma=2)"
        )
    return tumour_type, value


def config_from_options(options: dict, data_dir: str | Path) -> TrainConfig:
    """A ``TrainConfig`` from the options of ``add_training_arguments`` (an argparse namespace's
    ``vars`` or a management command's options): each field is the option given, else, with
    ``--like``, the bundle's value, else the dataclass default. Raises ``ValueError`` (or
    ``FileNotFoundError`` for a missing bundle) with what to pass."""
    values = bundle_recipe(options["like"]) if options.get("like") else {}
    options = dict(options)
    if options.get("type_weights") is not None:  # --type-weight's (type, weight) pairs
        options["type_weights"] = dict(options["type_weights"])
    for f in fields(TrainConfig):
        if f.name not in ("data_dir", "like") and options.get(f.name) is not None:
            values[f.name] = options[f.name]
    if "architecture" not in values:
        raise ValueError(
            "pass --architecture, or --like with a bundle's JSON (e.g. models/unet.json) "
            "to train a model of its shape."
        )
    return TrainConfig(data_dir=str(data_dir), like=options.get("like"), **values)
