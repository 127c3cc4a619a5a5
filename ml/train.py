"""Training a segmenter end to end: split, fit, pick the threshold on validation, write the bundle.

Resumable: every epoch writes ``<run_dir>/last.keras`` and ``state.json``; running the same
configuration again continues from there. The best epoch (by validation Dice) is kept in
``best.weights.h5``; the CSV log and a training-curve PNG sit beside it. With ``keep_epochs`` every
epoch's model is also kept as ``<run_dir>/epochs/epoch_NN.keras``, for ``ml.average``.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ml.calibrate import apply_choice, calibrate, cleanup_text, tta_text
from ml.data import (
    augmentation_preset,
    data_fingerprint,
    kfold_by_patient,
    load_slices,
    make_dataset,
    read_records,
    split_by_patient,
    to_arrays,
)

RANDOM_INIT_NOTE = (
    "Encoder trained from random initialisation: ImageNet weights could not be downloaded on the "
    "machine that trained this model."
)


@dataclass
class TrainConfig:
    architecture: str
    data_dir: str
    encoder: str = "plain"
    image_size: int = 128
    epochs: int = 40
    batch_size: int = 16
    encoder_weights: str | None = None
    name: str | None = None
    output_dir: str = "models"
    run_dir: str | None = None
    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.0
    deep_supervision: bool = False
    attention_blocks: int = 0  # transformer blocks after the bottleneck (ml.blocks.bottleneck_attention)
    loss: str = "bce_dice"
    lr_start: float = 1e-3
    lr_end: float = 1e-4
    warmup_epochs: float = 0.0  # linear learning-rate warm-up over this many epochs' steps (0: none)
    patience: int = 12
    precision: str = "auto"
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    max_minutes: float | None = None
    limit: int | None = None  # use at most this many train and val slices (smoke tests)
    init_from: str | None = None  # a .keras model whose same-named, same-shaped layers seed this one
    augmentation: str = "standard"  # a preset of ml.data.AUGMENTATIONS: none, standard or strong
    keep_epochs: bool = False  # keep every epoch's model in <run_dir>/epochs/ (for weight averaging)
    distill_from: list[str] = field(default_factory=list)  # teacher .keras bundles (knowledge distillation)
    distill_weight: float = 0.5  # the teachers' share of each training target when distilling
    like: str | None = None  # the bundle JSON whose shape and data handling this run copied (--like)
    fold: int | None = None  # cross-validation: validate on this fold of the development patients
    folds: int = 5  # how many folds the development patients (train + val, never test) are dealt into

    def __post_init__(self):
        if self.name is None:
            self.name = f"{self.architecture}_{self.encoder}_{self.image_size}"
        if self.run_dir is None:
            self.run_dir = str(Path("runs") / self.name)
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be at least 1.")
        self.model_spec()  # fails early on what the model cannot be (architecture, encoder, heads, blocks)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if not 0.0 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                f"warmup_epochs must be >= 0 and fewer than epochs ({self.epochs}), got {self.warmup_epochs}."
            )
        augmentation_preset(self.augmentation)  # fails early on an unknown name
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}.")
        if self.fold is not None and not 0 <= self.fold < self.folds:
            raise ValueError(f"fold must be in 0..{self.folds - 1}, got {self.fold}.")
        if self.distill_from:
            if not 0.0 < self.distill_weight <= 1.0:
                raise ValueError(f"distill_weight must be in (0, 1], got {self.distill_weight}.")
            if self.loss == "lovasz":
                raise ValueError(
                    "the Lovász hinge needs binary targets: distil with bce_dice, dice or focal."
                )
            if self.deep_supervision:
                raise ValueError("distillation into a deep-supervision model is not supported.")
            missing = [p for p in self.distill_from if not Path(p).is_file()]
            if missing:
                raise ValueError(f"no teacher model at {', '.join(missing)}.")

    def model_spec(self):
        """The ``ml.models.ModelSpec`` of the model this run trains."""
        from ml.models import ModelSpec

        return ModelSpec(
            architecture=self.architecture,
            encoder=self.encoder,
            input_size=self.image_size,
            base_filters=self.base_filters,
            depth=self.depth,
            dropout=self.dropout,
            deep_supervision=self.deep_supervision,
            attention_blocks=self.attention_blocks,
        )


def _lr_for_epoch(cfg: TrainConfig, epoch: int, progress_by_time: float = 0.0) -> float:
    """Exponential decay from lr_start to lr_end.

    Progress is the larger of the epoch fraction and, under a time budget, the fraction of the budget
    used, so a run cut short by ``max_minutes`` still ends at the low learning rate.
    """
    by_epoch = epoch / (cfg.epochs - 1) if cfg.epochs > 1 else 1.0
    progress = min(1.0, max(by_epoch, progress_by_time))
    return cfg.lr_start * (cfg.lr_end / cfg.lr_start) ** progress


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The fraction of the scheduled learning rate used at training step ``step`` (0-based): it rises
    linearly, (step + 1) / warmup_steps, and is 1 from step ``warmup_steps`` on (gradual warm-up,
    Goyal et al. 2017, arXiv:1706.02677)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def _head_twin(name: str, by_name: dict):
    """The source layer that seeds a segmentation head of another kind: each deep-supervision head
    (``mask_x0J``) of a U-Net++ starts as a single-head model's ``mask``, and a single head as the last
    deep-supervision head. All sit on level-0 nodes of the same width, so the shapes agree."""
    if re.fullmatch(r"mask_x0\d+", name) and "mask" in by_name:
        return by_name["mask"]
    if name == "mask":
        heads = sorted((n for n in by_name if re.fullmatch(r"mask_x0\d+", n)), key=lambda n: int(n[6:]))
        return by_name[heads[-1]] if heads else None
    return None


def teacher_targets(
    teacher_paths,
    images: np.ndarray,
    masks: np.ndarray,
    weight: float,
    *,
    precision: str | None = None,
    log=print,
) -> np.ndarray:
    """Soft training targets for knowledge distillation (Hinton, Vinyals & Dean 2015, arXiv:1503.02531):
    ``(1 - weight) * mask + weight * teacher``, where teacher is the mean tumour probability of the
    ``teacher_paths`` bundles on each prepared ``(N, S, S, 1)`` image, each with flip TTA, at the
    model input size (no zoom, threshold or clean-up). The teachers must take ``S``-pixel inputs.

    Why: the student learns where the teachers (an ensemble, typically) are unsure, e.g. at a faint
    tumour border, instead of only the expert's hard outline, which it otherwise overfits.
    """
    from ml.inference import load_segmenter, loaded_for_now

    size = images.shape[1]
    probs = np.zeros(images.shape, np.float32)
    with loaded_for_now():  # free the teachers afterwards, but not models the process already held
        for path in teacher_paths:
            teacher = load_segmenter(path, precision=precision)
            if teacher.input_size != size:
                raise ValueError(
                    f"teacher {path} takes {teacher.input_size} px inputs; this run trains at {size} px."
                )
            started = time.time()
            probs += teacher.predict_small(images, tta=True) / len(teacher_paths)
            log(f"teacher {teacher.name}: {len(images)} training slices in {time.time() - started:.0f} s")
    return ((1.0 - weight) * masks + weight * probs).astype(np.float32)


def transfer_weights(source, target) -> list[str]:
    """Copy weights layer by layer where the name and every weight shape agree; returns the names.

    A trained U-Net seeds an Attention U-Net this way: encoder, bottleneck and decoder blocks share
    names and shapes, and only the attention gates start from scratch. Segmentation heads also pair
    across deep supervision (``_head_twin``): a random head on trained features predicts with
    confidence and wrongly, and its gradients wreck the copied layers (a deep-supervision U-Net++
    warm-started with random heads fell to validation Dice 0.03, docs/model-history.md).
    """
    by_name = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in target.layers:
        twin = by_name.get(layer.name) or _head_twin(layer.name, by_name)
        if twin is None or not layer.weights:
            continue
        src, dst = twin.get_weights(), layer.get_weights()
        if len(src) == len(dst) and all(a.shape == b.shape for a, b in zip(src, dst)):
            layer.set_weights(src)
            copied.append(layer.name)
    return copied


def source_provenance(model_path) -> dict | None:
    """What a warm start's source model was and how it was trained, from its ``.json`` beside it.

    Kept in the new model's metadata so a chain of warm starts stays traceable to random init.
    """
    meta_path = Path(model_path).with_suffix(".json")
    state_path = Path(model_path).parent / "state.json"
    if not meta_path.exists() and state_path.exists():  # a run's checkpoint, e.g. runs/<name>/last.keras
        state = json.loads(state_path.read_text())
        config = state.get("config", {})
        return {
            "name": config.get("name"),
            "checkpoint": Path(model_path).name,
            "encoder_weights": config.get("encoder_weights"),
            "val_dice_mean": state.get("best_val_dice"),  # in-training metric: threshold 0.5, no TTA
            "training": {
                key: state[key] for key in ("epochs_done", "best_epoch", "train_seconds") if key in state
            },
            "initialised_from": state.get("init_from"),
        }
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    training = meta.get("training", {})
    keep = ("epochs_done", "best_epoch", "train_seconds", "precision", "finished_at")
    return {
        "name": meta.get("name"),
        "encoder_weights": meta.get("encoder_weights"),
        "val_dice_mean": meta.get("metrics", {}).get("val", {}).get("dice_mean"),
        "training": {key: training[key] for key in keep if key in training},
        "initialised_from": meta.get("initialised_from"),
    }


def _library_versions() -> dict:
    import keras
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def _callbacks(cfg, run_dir: Path, state: dict, log, *, monitor: str = "val_dice"):
    """LR schedule, CSV log, and per epoch: checkpoint, best weights by ``monitor``, early stopping and the
    time budget. ``cfg`` needs epochs, lr_start, lr_end, patience, max_minutes and depth (a ``TrainConfig``
    or ``ml.type_classification.ClassifierConfig``)."""
    import keras

    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    session_start = time.time()
    used_before = state.get("train_seconds", 0.0)

    def _time_progress() -> float:
        if not budget_s:
            return 0.0
        # The first epochs' pace predicts the rest: aim to reach lr_end one epoch before the budget ends.
        done = state.get("epochs_done", 0)
        elapsed = used_before + time.time() - session_start
        per_epoch = elapsed / done if done else budget_s
        return min(1.0, elapsed / max(budget_s - per_epoch, 1.0))

    class EpochState(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if monitor == "val_dice":  # a deep-supervision model names its last head's Dice
                score = float(logs.get("val_dice", logs.get("val_mask_x0" + str(cfg.depth) + "_dice", 0.0)))
            else:
                score = float(logs.get(monitor, 0.0))
            best_key = f"best_{monitor}"
            state["epochs_done"] = epoch + 1
            if score > state.get(best_key, -1.0):
                state[best_key], state["best_epoch"] = score, epoch + 1
                self.model.save_weights(run_dir / "best.weights.h5")
                state["stale"] = 0
            else:
                state["stale"] = state.get("stale", 0) + 1
            self.model.save(run_dir / "last.keras")
            if getattr(cfg, "keep_epochs", False):
                (run_dir / "epochs").mkdir(exist_ok=True)
                shutil.copyfile(run_dir / "last.keras", run_dir / "epochs" / f"epoch_{epoch + 1:02d}.keras")
            log(
                f"epoch {epoch + 1}/{cfg.epochs}: {monitor}={score:.4f} best={state[best_key]:.4f} "
                f"(epoch {state['best_epoch']})"
            )
            if state["stale"] >= cfg.patience:
                log(f"early stopping: no {monitor} gain for {cfg.patience} epochs")
                self.model.stop_training = True
            elapsed = used_before + time.time() - session_start
            state["train_seconds"] = elapsed
            (run_dir / "state.json").write_text(json.dumps(state, indent=2))
            if budget_s and elapsed + elapsed / state["epochs_done"] > budget_s:
                log(f"time budget of {cfg.max_minutes} min reached: stopping after epoch {epoch + 1}")
                state["stopped_by_time_budget"] = True
                self.model.stop_training = True

    class WarmUp(keras.callbacks.Callback):
        """Scales the epoch's scheduled rate by ``warmup_factor`` for the first steps of the run, so a
        fresh optimiser does not take full-rate steps before its moment estimates settle. (Tried on a warm
        start whose first epoch dropped validation Dice 0.716 -> 0.461: with a one-epoch warm-up it still
        dropped, to 0.480; docs/model-history.md.)"""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.scheduled = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_train_batch_begin(self, batch, logs=None):
            steps = self.params.get("steps") or 1
            step = self.epoch * steps + batch
            warmup_steps = round(cfg.warmup_epochs * steps)
            if step <= warmup_steps:  # the step after the last warm-up step restores the scheduled rate
                self.model.optimizer.learning_rate = self.scheduled * warmup_factor(step, warmup_steps)

    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch: _lr_for_epoch(cfg, epoch, _time_progress()))
    ]
    if getattr(cfg, "warmup_epochs", 0) > 0:
        callbacks.append(WarmUp())  # after the scheduler, whose rate it scales
    return callbacks + [keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True), EpochState()]


def plot_curves(
    csv_path: Path, png_path: Path, *, title: str = "per-image Dice / IoU at 0.5 (model input size)"
) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "val_loss"):
        if key in rows[0]:
            ax1.plot(epochs, [float(r[key]) for r in rows], label=key)
    # dice, val_dice, ...; a deep-supervision model's are its last head's (mask_x0N_dice)
    for key in [k for k in rows[0] if k.rsplit("_", 1)[-1] in ("dice", "iou", "accuracy")]:
        ax2.plot(epochs, [float(r[key]) for r in rows], label=key)
    ax1.set_xlabel("epoch"), ax2.set_xlabel("epoch"), ax1.legend(), ax2.legend()
    ax1.set_title("loss"), ax2.set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def start_run(cfg, log):
    """Set the precision and seed, make the run folder and load the split's slices.

    Returns ``(precision, run_dir, split ids, training slices, validation slices)``; ``cfg.limit``
    caps both sides (smoke runs). Raises ``ValueError`` when a side is empty.
    """
    import keras

    from ml.inference import set_precision

    precision = set_precision(cfg.precision)
    keras.utils.set_random_seed(cfg.seed)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    records = read_records(cfg.data_dir)
    split = split_by_patient(
        records, seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction
    )
    if cfg.fold is not None:
        split = development_fold(records, split, cfg.fold, k=cfg.folds, seed=cfg.seed)
    train_ids, val_ids = split["train"], split["val"]
    if not train_ids or not val_ids:
        raise ValueError(
            f"{cfg.data_dir} has too few patient groups for a train/validation split "
            f"({len(train_ids)} train and {len(val_ids)} validation slices): add data from more patients."
        )
    if cfg.limit:
        train_ids, val_ids = train_ids[: cfg.limit], val_ids[: cfg.limit]
    log(
        (f"fold {cfg.fold} of {cfg.folds} over the development patients; " if cfg.fold is not None else "")
        + f"split by patient group (seed {cfg.seed}): train {len(split['train'])}, val {len(split['val'])}, "
        f"test {len(split['test'])} slices"
        + (f"; using {len(train_ids)}/{len(val_ids)}" if cfg.limit else "")
    )
    return precision, run_dir, split, load_slices(cfg.data_dir, train_ids), load_slices(cfg.data_dir, val_ids)


def development_fold(records, split: dict, fold: int, *, k: int, seed: int) -> dict:
    """The split for cross-validation fold ``fold``: the development patients (the split's train and
    validation groups; the test groups stay untouched) dealt into ``k`` folds by patient group,
    stratified by type (``ml.data.kfold_by_patient``); ``fold`` validates, the others train."""
    held = set(split["test"])
    development = [r for r in records if r.id not in held]
    folds = kfold_by_patient(development, k, seed=seed)
    return {
        "train": [i for f, ids in enumerate(folds) if f != fold for i in ids],
        "val": folds[fold],
        "test": split["test"],
    }


def start_or_resume(cfg, run_dir: Path, build, compile_model, log, *, monitor: str = "val_dice"):
    """(model, state): the run's last checkpoint when it has one, else ``build()`` (warm-started from
    ``cfg.init_from`` where layer names and shapes agree) compiled by ``compile_model``."""
    import keras

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
        log(f"initialised {len(copied)} layers from {cfg.init_from}")
    compile_model(model)
    return model, state


def train(cfg: TrainConfig, *, log=print, verbose: int = 2) -> dict:
    """Train per ``cfg``; returns the metadata written to ``<output_dir>/<name>.json``."""
    import keras

    from ml import losses
    from ml.inference import Segmenter, save_bundle

    precision, run_dir, split, train_slices, val_slices = start_run(cfg, log)
    train_ids, val_ids = [r.id for r in train_slices.records], [r.id for r in val_slices.records]
    x_train, y_train = to_arrays(train_slices, cfg.image_size)
    x_val, y_val = to_arrays(val_slices, cfg.image_size)

    spec = cfg.model_spec()
    heads = cfg.depth if cfg.deep_supervision else 1

    def compile_model(model):
        model.compile(
            optimizer=keras.optimizers.Adam(cfg.lr_start),
            loss=losses.get_loss(cfg.loss),
            metrics=[losses.dice, losses.iou] if heads == 1 else None,
        )

    model, state = start_or_resume(cfg, run_dir, lambda: spec.build(cfg.encoder_weights), compile_model, log)
    log(f"{cfg.name}: {model.count_params():,} parameters, {precision}, input {cfg.image_size}px")

    if state["epochs_done"] < cfg.epochs and not state.get("stale", 0) >= cfg.patience:
        augmentation = augmentation_preset(cfg.augmentation)
        targets = y_train
        if cfg.distill_from:
            targets = teacher_targets(
                cfg.distill_from, x_train, y_train, cfg.distill_weight, precision=precision, log=log
            )
        train_ds = make_dataset(
            x_train,
            targets,
            batch_size=cfg.batch_size,
            shuffle=True,
            augmentation=augmentation,
            seed=cfg.seed,
            repeat_outputs=heads,
            soft_targets=bool(cfg.distill_from),
        )
        val_ds = make_dataset(x_val, y_val, batch_size=cfg.batch_size, repeat_outputs=heads)
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
            callbacks=_callbacks(cfg, run_dir, state, log),
            verbose=verbose,
            shuffle=False,
        )  # the dataset reshuffles itself each epoch (seeded)
    (run_dir / "state.json").write_text(json.dumps(state, indent=2))
    model.load_weights(run_dir / "best.weights.h5")

    # TTA, threshold and clean-up chosen on the validation split, at the masks' native resolution.
    choice = calibrate(Segmenter(model, {"name": cfg.name}), val_slices)
    val_metrics = choice["val_metrics"]
    log(
        f"validation at native resolution: Dice {val_metrics['dice_mean']:.4f}, IoU {val_metrics['iou_mean']:.4f}, "
        f"by type {json.dumps({k: round(v, 4) for k, v in val_metrics['dice_by_type'].items()})}; "
        f"threshold {choice['threshold']}, {tta_text(choice)}, {cleanup_text(choice['postprocess'])}"
    )

    weights_source = "none" if cfg.encoder_weights in (None, "none") else str(cfg.encoder_weights)
    metadata = {
        "spec": spec.get_config(),
        "architecture": cfg.architecture,
        "encoder": cfg.encoder,
        "encoder_weights": weights_source,
        "encoder_weights_note": (
            RANDOM_INIT_NOTE
            if weights_source == "none" and cfg.encoder != "plain"
            else (
                "Plain encoder: no pretrained weights (random initialisation)."
                if cfg.encoder == "plain"
                else f"Encoder initialised from {weights_source}."
            )
        )
        + (
            f" This run continued from the weights of {cfg.init_from}: initialised_from says how those were "
            "trained."
            if cfg.init_from
            else ""
        ),
        "input_size": cfg.image_size,
        "initialised_from": state.get("init_from"),
        "parameters": int(model.count_params()),
        "tta_scales": [1.0],  # replaced by the choice's zoom, when it made one
        "training": {
            "data_dir_fingerprint": data_fingerprint(cfg.data_dir),
            "split": {
                "by": "patient_group",
                "stratified_by": "tumour_type",
                "seed": cfg.seed,
                "val_fraction": cfg.val_fraction,
                "test_fraction": cfg.test_fraction,
                "fold": cfg.fold,
                "folds": cfg.folds if cfg.fold is not None else None,
                "n_train": len(train_ids),
                "n_val": len(val_ids),
                "n_test": len(split["test"]),
                "sizes": {side: len(ids) for side, ids in split.items()},
            },
            "epochs_planned": cfg.epochs,
            "epochs_done": state["epochs_done"],
            "best_epoch": state["best_epoch"],
            "stopped_by_time_budget": bool(state.get("stopped_by_time_budget")),
            "early_stopping": {"monitor": "val_dice", "patience": cfg.patience},
            "batch_size": cfg.batch_size,
            "loss": cfg.loss,
            "optimizer": "adam",
            "like": _like_meta(cfg),
            "distillation": _distillation_meta(cfg),
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
            "train_seconds": round(state["train_seconds"], 1),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "library_versions": _library_versions(),
            "machine": platform.machine(),
        },
    }
    metadata = apply_choice(metadata, choice)  # threshold, TTA, clean-up and validation metrics
    path = save_bundle(model, cfg.output_dir, cfg.name, metadata)
    if (run_dir / "log.csv").exists():
        plot_curves(run_dir / "log.csv", run_dir / "curves.png")
    log(f"wrote {path} and {path.with_suffix('.json')}; run files in {run_dir}")
    keras.backend.clear_session()  # free the graph before another run in the same process
    return {"name": cfg.name, "path": str(path), **metadata}


def _like_meta(cfg: TrainConfig) -> dict | None:
    """The bundle whose shape and data handling the run copied (``--like``): the fields it recorded, those
    of them this run set otherwise (an option given as well), and its SHA-256 when its weights are beside
    it (None without ``--like``)."""
    if not cfg.like:
        return None
    from ml.inference import file_sha256

    recipe = bundle_recipe(cfg.like)
    keras_path = Path(cfg.like).with_suffix(".keras")
    return {
        "path": str(cfg.like),
        "fields": sorted(recipe),
        "overridden": sorted(key for key, value in recipe.items() if getattr(cfg, key) != value),
        "sha256": file_sha256(keras_path) if keras_path.is_file() else None,
    }


def _distillation_meta(cfg: TrainConfig) -> dict | None:
    """What the soft targets were made of, with each teacher's SHA-256 (None without distillation)."""
    if not cfg.distill_from:
        return None
    from ml.inference import file_sha256

    return {
        "weight": cfg.distill_weight,
        "target": "(1 - weight) * expert mask + weight * mean teacher probability (flip TTA, model input size)",
        "teachers": [{"path": str(p), "sha256": file_sha256(p)} for p in cfg.distill_from],
    }


def set_threads(n: int) -> None:
    """Limit TensorFlow to ``n`` intra-op threads (and one inter-op thread); call before any op runs."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)


# What --like takes from a bundle: the model's shape and how its data was fed, not the schedule that
# trained it (a shipped bundle's schedule is that of its last warm start; initialised_from has the chain).
LIKE_FIELDS = (
    "architecture",
    "encoder",
    "encoder_weights",
    "image_size",
    "base_filters",
    "depth",
    "dropout",
    "deep_supervision",
    "attention_blocks",
    "augmentation",
    "loss",
    "batch_size",
)


def bundle_recipe(path: str | Path) -> dict:
    """The ``TrainConfig`` fields of ``LIKE_FIELDS`` that the bundle at ``path`` (its ``.json``, or the
    ``.keras`` beside it) was trained with. A field an older bundle did not record is left out, so the
    default applies. Raises ``FileNotFoundError`` or ``ValueError`` with what to pass instead."""
    path = Path(path)
    if path.suffix == ".keras":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(
            f"no bundle JSON at {path}: pass --like with a bundle's .json, e.g. models/attention_unet.json."
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): pass a bundle's .json to --like.") from exc
    spec, training = meta.get("spec"), meta.get("training") or {}
    if not isinstance(spec, dict) or "architecture" not in spec:
        raise ValueError(f"{path} has no model spec: pass the .json that train_model wrote for a bundle.")
    recipe = {"image_size": spec.get("input_size", meta.get("input_size"))}
    for key in (
        "architecture",
        "encoder",
        "base_filters",
        "depth",
        "dropout",
        "deep_supervision",
        "attention_blocks",
    ):
        recipe[key] = spec.get(key)
    recipe["encoder_weights"] = meta.get("encoder_weights")
    if "augmentation" in training:  # None: trained without augmentation
        augmentation = training["augmentation"]
        recipe["augmentation"] = "none" if augmentation is None else augmentation.get("preset")
    recipe["loss"], recipe["batch_size"] = training.get("loss"), training.get("batch_size")
    return {key: recipe[key] for key in LIKE_FIELDS if recipe.get(key) is not None}


def add_training_arguments(parser, *, data_default: str | None, output_default: str) -> None:
    """The training options, shared by ``python -m ml.train`` and ``manage.py train_model``.

    Options that ``--like`` can fill default to None here; ``config_from_options`` applies, in order,
    what was given, then the bundle's value, then ``TrainConfig``'s default (named in each help text).
    """
    import argparse

    from ml.data import AUGMENTATIONS
    from ml.encoders import ENCODERS
    from ml.losses import LOSSES
    from ml.models import ARCHITECTURES

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
    parser.add_argument(
        "--max-minutes", type=float, help="stop after the epoch that would exceed this budget"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=d["patience"],
        help=f"early stopping: epochs without a validation Dice gain before stopping (default {d['patience']})",
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
    parser.add_argument(
        "--warmup-epochs",
        type=float,
        default=d["warmup_epochs"],
        help="raise the learning rate linearly from near 0 over this many epochs (fractions "
        "allowed), e.g. 1 for a warm start (--init-from); default 0, no warm-up",
    )
    parser.add_argument(
        "--precision",
        default=d["precision"],
        choices=["auto", "fp32", "bf16"],
        help="auto: bf16 where the CPU has AMX/AVX512-BF16 or on a GPU, else fp32",
    )
    parser.add_argument(
        "--seed", type=int, default=d["seed"], help=f"split and initialisation seed (default {d['seed']})"
    )
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
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=d["distill_weight"],
        help=f"the teachers' share of each training target with --distill-from (default {d['distill_weight']})",
    )


def config_from_options(options: dict, data_dir: str | Path) -> TrainConfig:
    """A ``TrainConfig`` from the options of ``add_training_arguments`` (an argparse namespace's
    ``vars`` or a management command's options): each field is the option given, else, with
    ``--like``, the bundle's value, else the dataclass default. Raises ``ValueError`` (or
    ``FileNotFoundError`` for a missing bundle) with what to pass."""
    values = bundle_recipe(options["like"]) if options.get("like") else {}
    for f in fields(TrainConfig):
        if f.name not in ("data_dir", "like") and options.get(f.name) is not None:
            values[f.name] = options[f.name]
    if "architecture" not in values:
        raise ValueError(
            "pass --architecture, or --like with a bundle's JSON (e.g. models/unet.json) "
            "to train a model of its shape."
        )
    return TrainConfig(data_dir=str(data_dir), like=options.get("like"), **values)


def main(argv=None) -> None:
    """``python -m ml.train``: the same training as ``manage.py train_model``, without Django."""
    import argparse

    parser = argparse.ArgumentParser(description="Train a TumorSite segmenter on data in the shared layout.")
    add_training_arguments(parser, data_default=None, output_default="models")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_options(vars(args), args.data)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if args.threads:
        set_threads(args.threads)
    train(cfg, log=lambda msg: print(msg, flush=True))


if __name__ == "__main__":
    main()
