"""``python -m ml.pretrain``: self-supervised pretraining of a segmenter's network, on the images alone.

The network of a recipe (``--like models/unet.json``) learns to restore each training slice from a distorted
copy (``ml.training.genesis``, after Zhou et al.'s Models Genesis, MICCAI 2019). No mask is read. The result
is not a segmenter: it is a starting point for one, ``python -m ml.train --like ... --init-from
<output-dir>/<name>.keras`` with the same ``--fold``, which copies every layer. It is written to
``runs/pretrain`` by default, away from the models folder that is served.

With ``--fold K`` only the training patients of that cross-validation fold are read (the fold's own
patients validate the restoration), so the segmenter fine-tuned on the fold has seen none of its
validation patients, not even unlabelled; ``ml.train`` refuses a start pretrained on another fold.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from ml.data import to_arrays
from ml.inference import save_bundle
from ml.training.callbacks import run_finished, training_callbacks
from ml.training.config import TrainConfig
from ml.training.genesis import GENESIS, Distortions, distort_batch, restoration_batches
from ml.training.loop import init_seed, run_record, set_threads, start_or_resume, start_run
from ml.training.options import (
    add_init_seed_argument,
    add_precision_argument,
    add_schedule_arguments,
    config_from_command_line,
)

METHOD = (
    "Models Genesis (Zhou et al. 2019), in 2D: restore the slice from a copy with its intensities bent, "
    "its pixels shuffled in small windows and boxes painted over with noise"
)
# The validation slices' distortions are drawn once, from the seed and this, so every epoch (and a
# resumed run) is scored on the same task.
VALIDATION_STREAM = 1_000_003


def pretrain(cfg: TrainConfig, *, log=print, verbose: int = 2, rates: Distortions = GENESIS) -> dict:
    """Pretrain ``cfg``'s network to restore slices; returns the metadata written beside
    ``<output_dir>/<name>.keras``. Resumable as ``ml.training.loop.train`` (``<run_dir>/state.json``); the
    best epoch is the one with the highest validation PSNR. ``ValueError`` for a model of several heads."""
    import keras  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    from ml import losses  # noqa: PLC0415 (ml.losses imports Keras)

    if cfg.deep_supervision:
        raise ValueError(
            "pretraining restores the slice through one output: pretrain without deep supervision "
            "(--no-deep-supervision); the heads of a U-Net++ with it start from its one head (--init-from)."
        )
    precision, run_dir, split, train_slices, val_slices = start_run(cfg, log)
    x_train, _ = to_arrays(train_slices, cfg.image_size)  # the masks are never used
    x_val, _ = to_arrays(val_slices, cfg.image_size)
    val_inputs = distort_batch(x_val, np.random.default_rng([cfg.seed, VALIDATION_STREAM]), rates)
    spec = cfg.model_spec()

    def compile_model(model):
        model.compile(optimizer=keras.optimizers.Adam(cfg.lr_start), loss="mse", metrics=[losses.psnr])

    model, state = start_or_resume(
        cfg, run_dir, lambda: spec.build(cfg.encoder_weights), compile_model, log, monitor="val_psnr"
    )
    log(f"{cfg.name}: {model.count_params():,} parameters, {precision}, input {cfg.image_size}px, restoring")
    if not run_finished(cfg, state):
        batches = restoration_batches(
            x_train,
            batch_size=cfg.batch_size,
            seed=init_seed(cfg),
            first_epoch=state["epochs_done"],
            rates=rates,
        )
        model.fit(
            batches,
            validation_data=(val_inputs, x_val),
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            initial_epoch=state["epochs_done"],
            callbacks=training_callbacks(cfg, run_dir, state, log, monitor="val_psnr"),
            verbose=verbose,
        )
    (run_dir / "state.json").write_text(json.dumps(state, indent=2))
    model.load_weights(run_dir / "best.weights.h5")
    distorted_psnr = float(np.mean(np.asarray(losses.psnr(x_val, val_inputs))))
    metadata = {
        "kind": "self-supervised pretraining: a starting point for ml.train --init-from, not a segmenter",
        "spec": spec.get_config(),
        "architecture": cfg.architecture,
        "encoder": cfg.encoder,
        "encoder_weights": "none" if cfg.encoder_weights in (None, "none") else str(cfg.encoder_weights),
        "input_size": cfg.image_size,
        "initialised_from": state.get("init_from"),
        "self_supervised": {
            "method": METHOD,
            "distortions": rates.as_dict(),
            "loss": "mse",
            "fold": cfg.fold,
            "folds": cfg.folds if cfg.fold is not None else None,
            "seed": cfg.seed,
            "val_psnr_db": round(state["best_val_psnr"], 3),
            "val_psnr_db_of_the_distorted_input": round(distorted_psnr, 3),
        },
        "training": {
            **run_record(
                cfg, state, split, n_train=len(train_slices), n_val=len(val_slices), monitor="val_psnr"
            ),
            "lr": {"start": cfg.lr_start, "end": cfg.lr_end, "schedule": "exponential per epoch"},
            "precision": precision,
        },
    }
    # float32 and without the optimizer's state, as a segmenter's bundle: a third of the size
    save_bundle(model, cfg.output_dir, cfg.name, metadata)
    out = Path(cfg.output_dir)
    log(
        f"validation PSNR {state['best_val_psnr']:.2f} dB (the distorted input's {distorted_psnr:.2f} dB), "
        f"epoch {state['best_epoch']}; wrote {out / cfg.name}.keras and .json: fine-tune it with "
        f"python -m ml.train --like ... --init-from {out / cfg.name}.keras"
        + (f" --fold {cfg.fold}" if cfg.fold is not None else "")
    )
    keras.backend.clear_session()
    return {"name": cfg.name, **metadata}


def build_parser() -> argparse.ArgumentParser:
    d = {f.name: f.default for f in fields(TrainConfig)}
    parser = argparse.ArgumentParser(
        description="Pretrain a segmenter's network without masks: it learns to restore each training "
        "slice from a distorted copy (Models Genesis, Zhou et al. 2019). The result seeds "
        "python -m ml.train --init-from; it is not a segmenter and is never served."
    )
    parser.add_argument(
        "--like",
        metavar="JSON",
        required=True,
        help="the recipe whose network to pretrain, e.g. models/unet.json (its architecture, encoder, input "
        "size, filters, depth and batch size)",
    )
    parser.add_argument(
        "--data", required=True, help="dataset folder in the shared layout (cases.csv, images/, masks/)"
    )
    parser.add_argument(
        "--fold",
        type=int,
        help="read only the training patients of this cross-validation fold (0-based, as ml.train's "
        "--fold); its own patients validate the restoration",
    )
    parser.add_argument(
        "--folds", type=int, help=f"how many cross-validation folds (default {d['folds']}; with --fold)"
    )
    parser.add_argument(
        "--seed", type=int, default=d["seed"], help=f"split seed, as ml.train's (default {d['seed']})"
    )
    add_init_seed_argument(parser)
    parser.add_argument(
        "--init-from",
        help="continue from an earlier pretraining of the same fold (its .keras, e.g. one committed in "
        "models/cv/pretrain/), as a new run; another fold's is refused",
    )
    parser.add_argument("--name", required=True, help="name of the pretrained model's files")
    parser.add_argument(
        "--output-dir",
        default="runs/pretrain",
        help="where <name>.keras and <name>.json go (default runs/pretrain; not the models folder, "
        "which is served)",
    )
    parser.add_argument("--run-dir", help="checkpoints and CSV log (default: runs/<name>)")
    parser.add_argument(
        "--epochs", type=int, default=d["epochs"], help=f"maximum epochs (default {d['epochs']})"
    )
    parser.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    add_schedule_arguments(parser, improving="validation PSNR")
    add_precision_argument(parser)
    parser.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: all cores)")
    parser.add_argument("--limit", type=int, help="use at most N train and N val slices (smoke runs)")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    cfg, args = config_from_command_line(parser, argv)
    if args.threads:
        set_threads(args.threads)
    try:
        pretrain(cfg, log=lambda msg: print(msg, flush=True))
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
