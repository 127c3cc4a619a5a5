"""A training run end to end: split, fit, pick the threshold on validation, write the bundle.

Resumable: every epoch writes ``<run_dir>/last.keras`` and ``state.json``; running the same
configuration again continues from there. The best epoch (by validation Dice) is kept in
``best.weights.h5``; the CSV log and a training-curve PNG sit beside it. With ``keep_epochs`` every
epoch's model is also kept as ``<run_dir>/epochs/epoch_NN.keras``, for ``ml.average``.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from ml.calibrate import apply_choice, calibrate, cleanup_text, tta_text
from ml.data import (
    TUMOUR_TYPES,
    DrawWeights,
    Slices,
    augmentation_preset,
    data_fingerprint,
    development_fold,
    load_slices,
    make_dataset,
    read_records,
    split_by_patient,
    to_arrays,
    type_draw_weights,
)
from ml.inference import Segmenter, save_bundle, set_precision
from ml.models import with_type_head
from ml.training.callbacks import run_finished, training_callbacks
from ml.training.config import TrainConfig
from ml.training.distillation import distillation_meta, teacher_targets
from ml.training.mining import hard_example_mining
from ml.training.plots import plot_curves
from ml.training.provenance import encoder_weights_note, library_versions, like_meta, source_provenance
from ml.training.transfer import transfer_weights


def init_seed(cfg) -> int:
    """The seed of a run's initial weights, augmentation and draw order: ``init_seed``, else ``seed``."""
    return cfg.seed if cfg.init_seed is None else cfg.init_seed


def start_run(cfg, log):
    """Set the precision and seed, make the run folder and load the split's slices.

    Returns ``(precision, run_dir, split ids, training slices, validation slices)``; ``cfg.limit``
    caps both sides (smoke runs). A config's ``fold`` (of ``folds``), when set, makes the split that
    cross-validation fold's (``development_fold``). Raises ``ValueError`` when a side is empty.
    """
    import keras  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    precision = set_precision(cfg.precision)
    keras.utils.set_random_seed(init_seed(cfg))
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    records = read_records(cfg.data_dir)
    split = split_by_patient(
        records, seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction
    )
    fold = cfg.fold
    if fold is not None:
        split = development_fold(records, split, fold, k=cfg.folds, seed=cfg.seed)
    train_ids, val_ids = split["train"], split["val"]
    if not train_ids or not val_ids:
        raise ValueError(
            f"{cfg.data_dir} has too few patient groups for a train/validation split "
            f"({len(train_ids)} train and {len(val_ids)} validation slices): add data from more patients."
        )
    if cfg.limit:
        train_ids, val_ids = train_ids[: cfg.limit], val_ids[: cfg.limit]
    log(
        (f"fold {fold} of {cfg.folds} over the development patients; " if fold is not None else "")
        + f"split by patient group (seed {cfg.seed}): train {len(split['train'])}, val {len(split['val'])}, "
        f"test {len(split['test'])} slices"
        + (f"; using {len(train_ids)}/{len(val_ids)}" if cfg.limit else "")
    )
    return precision, run_dir, split, load_slices(cfg.data_dir, train_ids), load_slices(cfg.data_dir, val_ids)


def start_or_resume(cfg, run_dir: Path, build, compile_model, log, *, monitor: str = "val_dice"):
    """(model, state): the run's last checkpoint when it has one, else ``build()`` (warm-started from
    ``cfg.init_from`` where layer names and shapes agree) compiled by ``compile_model``."""
    import keras  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("epochs_done") and (run_dir / "last.keras").exists():
        log(f"resuming {cfg.name} after epoch {state['epochs_done']} from {run_dir / 'last.keras'}")
        return keras.models.load_model(run_dir / "last.keras"), state
    state = {
        "config": asdict(cfg),
        "epochs_done": 0,
        f"best_{monitor}": -1.0,
        "best_epoch": 0,
        "train_seconds": 0.0,
    }
    model = build()
    if cfg.init_from:
        copied = transfer_weights(keras.models.load_model(cfg.init_from, compile=False), model)
        if not copied:
            raise ValueError(
                f"{cfg.init_from} shares no layer (same name and shapes) with this model: warm-start "
                "from a model with the same encoder, base filters and depth."
            )
        state["init_from"] = {
            "path": str(cfg.init_from),
            "layers_copied": len(copied),
            "layers_with_weights": sum(1 for layer in model.layers if layer.weights),
            "source": source_provenance(cfg.init_from),
        }
        check_pretrained_on_the_same_patients(cfg, state["init_from"]["source"])
        log(f"initialised {len(copied)} layers from {cfg.init_from}")
    compile_model(model)
    return model, state


def check_pretrained_on_the_same_patients(cfg, source: dict | None) -> None:
    """``ValueError`` when a warm start's source was pretrained without masks (``ml.pretrain``) on another
    split or fold than this run's: its images would hold this run's validation patients."""
    pretrained = (source or {}).get("self_supervised")
    if not pretrained:
        return
    theirs, ours = (pretrained.get("seed"), pretrained.get("fold")), (cfg.seed, cfg.fold)
    if theirs != ours:
        raise ValueError(
            f"{cfg.init_from} was pretrained on the training patients of split seed {theirs[0]}, fold "
            f"{theirs[1]}; this run is seed {ours[0]}, fold {ours[1]}, whose validation patients it may "
            "have read: pretrain on this run's fold (python -m ml.pretrain --fold ...) or start from another."
        )


def train(cfg: TrainConfig, *, log=print, verbose: int = 2) -> dict:
    """Train per ``cfg``; returns the metadata written to ``<output_dir>/<name>.json``."""
    import keras  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    from ml import losses  # noqa: PLC0415 (ml.losses imports Keras)

    precision, run_dir, split, train_slices, val_slices = start_run(cfg, log)
    train_ids, val_ids = [r.id for r in train_slices.records], [r.id for r in val_slices.records]
    x_train, y_train = to_arrays(train_slices, cfg.image_size)
    x_val, y_val = to_arrays(val_slices, cfg.image_size)

    spec = cfg.model_spec()
    heads = cfg.depth if cfg.deep_supervision else 1
    types = (one_hot_types(train_slices), one_hot_types(val_slices)) if cfg.type_head else (None, None)

    def build():
        segmenter = spec.build(cfg.encoder_weights)
        return with_type_head(segmenter) if cfg.type_head else segmenter

    def compile_model(model):
        if cfg.type_head:  # the mask's loss and Dice as ever, the type's cross-entropy weighted beside it
            model.compile(
                optimizer=keras.optimizers.Adam(cfg.lr_start),
                loss={"mask": losses.get_loss(cfg.loss), "tumour_type": "categorical_crossentropy"},
                loss_weights={"mask": 1.0, "tumour_type": cfg.type_head},
                metrics={"mask": [losses.dice, losses.iou], "tumour_type": ["accuracy"]},
            )
            return
        model.compile(
            optimizer=keras.optimizers.Adam(cfg.lr_start),
            loss=losses.get_loss(cfg.loss),
            metrics=[losses.dice, losses.iou] if heads == 1 else None,
        )

    model, state = start_or_resume(cfg, run_dir, build, compile_model, log)
    log(f"{cfg.name}: {model.count_params():,} parameters, {precision}, input {cfg.image_size}px")

    if not run_finished(cfg, state):
        augmentation = augmentation_preset(cfg.augmentation)
        targets = y_train
        if cfg.distill_from:
            targets = teacher_targets(
                cfg.distill_from, x_train, y_train, cfg.distill_weight, precision=precision, log=log
            )
        draw_weights = type_draw_weights(train_slices.records, cfg.type_weights)
        mining = ()
        if cfg.hard_mining:
            draw_weights = DrawWeights(draw_weights or [1.0] * len(x_train))
            mining = (
                hard_example_mining(
                    x_train,
                    y_train,
                    draw_weights,
                    cfg.hard_mining,
                    batch_size=cfg.batch_size,
                    log=log,
                    mine_at_start=bool(state["epochs_done"] or cfg.init_from),
                ),
            )
        train_ds = make_dataset(
            x_train,
            targets,
            batch_size=cfg.batch_size,
            shuffle=True,
            augmentation=augmentation,
            seed=init_seed(cfg),
            repeat_outputs=heads,
            soft_targets=bool(cfg.distill_from),
            draw_weights=draw_weights,
            types=types[0],
        )
        val_ds = make_dataset(x_val, y_val, batch_size=cfg.batch_size, repeat_outputs=heads, types=types[1])
        if heads > 1:  # name the last head's Dice val_dice for the epoch bookkeeping
            model.compile(
                optimizer=model.optimizer,
                loss=losses.get_loss(cfg.loss),
                metrics={f"mask_x0{heads}": [losses.dice]},
            )
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            initial_epoch=state["epochs_done"],
            callbacks=training_callbacks(cfg, run_dir, state, log, before_log=mining),
            verbose=verbose,
            shuffle=False,
        )  # the dataset reshuffles itself each epoch (seeded)
    (run_dir / "state.json").write_text(json.dumps(state, indent=2))
    model.load_weights(run_dir / "best.weights.h5")
    joint = model
    if cfg.type_head:  # the bundle is the segmenter alone: its layers, by name, from the joint model
        model = transfer_segmenter(model, spec.build())

    # TTA, threshold and clean-up chosen on the validation split, at the masks' native resolution.
    choice = calibrate(Segmenter(model, {"name": cfg.name}), val_slices)
    val_metrics = choice["val_metrics"]
    log(
        f"validation at native resolution: Dice {val_metrics['dice_mean']:.4f}, "
        f"IoU {val_metrics['iou_mean']:.4f}, "
        f"by type {json.dumps({k: round(v, 4) for k, v in val_metrics['dice_by_type'].items()})}; "
        f"threshold {choice['threshold']}, {tta_text(choice)}, {cleanup_text(choice['postprocess'])}"
    )

    metadata = {
        "spec": spec.get_config(),
        "architecture": cfg.architecture,
        "encoder": cfg.encoder,
        "encoder_weights": "none" if cfg.encoder_weights in (None, "none") else str(cfg.encoder_weights),
        "encoder_weights_note": encoder_weights_note(cfg),
        "input_size": cfg.image_size,
        "initialised_from": state.get("init_from"),
        "parameters": int(model.count_params()),
        "tta_scales": [1.0],  # replaced by the choice's zoom, when it made one
        "training": {
            **run_record(cfg, state, split, n_train=len(train_ids), n_val=len(val_ids), monitor="val_dice"),
            "type_weights": cfg.type_weights,
            "type_head": cfg.type_head,
            "hard_mining": cfg.hard_mining,
            "loss": cfg.loss,
            "optimizer": "adam",
            "distillation": distillation_meta(cfg),
            "lr": {
                "start": cfg.lr_start,
                "end": cfg.lr_end,
                "schedule": "exponential per epoch",
                "warmup_epochs": cfg.warmup_epochs,
            },
            "augmentation": (
                None
                if augmentation_preset(cfg.augmentation) is None
                else {"preset": cfg.augmentation, **asdict(augmentation_preset(cfg.augmentation))}
            ),
            "precision": precision,
        },
    }
    metadata = apply_choice(metadata, choice)  # threshold, TTA, clean-up and validation metrics
    path = save_bundle(model, cfg.output_dir, cfg.name, metadata)
    if cfg.type_head:  # and the type branch, as a classifier to compare with one trained alone
        from ml.type_classification import type_head_bundle  # noqa: PLC0415 (ml.type_classification imports this module)

        type_head_bundle(
            joint,
            {"name": cfg.name, **metadata},
            val_slices,
            Path(cfg.output_dir) / "type_classifier",
            log=log,
        )
    if (run_dir / "log.csv").exists():
        plot_curves(run_dir / "log.csv", run_dir / "curves.png")
    log(f"wrote {path} and {path.with_suffix('.json')}; run files in {run_dir}")
    keras.backend.clear_session()  # free the graph before another run in the same process
    return {"name": cfg.name, "path": str(path), **metadata}


def split_record(cfg, split: dict, *, n_train: int, n_val: int) -> dict:
    """A run's ``training.split``: how the patients were split (seed, fractions, fold) and how many slices
    each side had (``n_train`` and ``n_val`` as used, after ``--limit``)."""
    return {
        "by": "patient_group",
        "stratified_by": "tumour_type",
        "seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "fold": cfg.fold,
        "folds": cfg.folds if cfg.fold is not None else None,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": len(split["test"]),
        "sizes": {side: len(ids) for side, ids in split.items()},
    }


def run_record(cfg, state: dict, split: dict, *, n_train: int, n_val: int, monitor: str) -> dict:
    """What a run records in its JSON's ``training`` of its data, split, epochs, time and libraries, the
    same for a segmenter (``train``) and a pretraining (``ml.pretrain``)."""
    return {
        "data_dir_fingerprint": data_fingerprint(cfg.data_dir),
        "init_seed": init_seed(cfg),
        "split": split_record(cfg, split, n_train=n_train, n_val=n_val),
        "epochs_planned": cfg.epochs,
        "epochs_done": state["epochs_done"],
        "best_epoch": state["best_epoch"],
        "stopped_by_time_budget": bool(state.get("stopped_by_time_budget")),
        "early_stopping": {"monitor": monitor, "patience": cfg.patience},
        "batch_size": cfg.batch_size,
        "like": like_meta(cfg),
        "train_seconds": round(state["train_seconds"], 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_versions": library_versions(),
        "machine": platform.machine(),
    }


def one_hot_types(slices: Slices):
    """``(N, len(TUMOUR_TYPES))`` one-hot tumour types, for a type head; ``ValueError`` naming a slice
    without a known type."""
    import numpy as np  # noqa: PLC0415 (as the rest of the run: loaded when a run starts)

    unknown = [r.id for r in slices.records if r.tumour_type not in TUMOUR_TYPES]
    if unknown:
        raise ValueError(
            f"a type head needs every slice's tumour type; {len(unknown)} have none (e.g. {unknown[0]})."
        )
    return np.eye(len(TUMOUR_TYPES), dtype=np.float32)[
        [TUMOUR_TYPES.index(r.tumour_type) for r in slices.records]
    ]


def transfer_segmenter(joint, segmenter):
    """``segmenter`` (a fresh build of the joint model's segmenter) with every layer's weights from
    ``joint``; ``RuntimeError`` if a layer is missing, which would leave it untrained."""
    copied = transfer_weights(joint, segmenter)
    missing = [layer.name for layer in segmenter.layers if layer.weights and layer.name not in copied]
    if missing:
        raise RuntimeError(f"the joint model lacks the segmenter's layers {', '.join(missing)}")
    return segmenter


def set_threads(n: int) -> None:
    """Limit TensorFlow to ``n`` intra-op threads (and one inter-op thread); call before any op runs."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)
