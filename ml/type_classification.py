"""The tumour-type classifier: training (resumable, split by patient group) and cached inference.

Training mirrors ``ml.train``: the same patient-group split (so the test patients stay unseen), the
same augmentation presets, a checkpoint and ``state.json`` every epoch (rerunning the same command
resumes), the best epoch by validation accuracy, early stopping, a CSV log and a curve PNG in the run
folder. It writes ``<output_dir>/<name>.keras`` + ``<name>.json``; the JSON holds what the model is,
how it was trained (warm start, data fingerprint, split, time, library versions) and its validation
accuracy per tumour type.

Inference: ``load_type_classifier(path)`` loads a bundle once per process; ``probabilities(images)``
takes slices of any size and returns ``(N, 3)`` probabilities in the order of ``ml.data.TUMOUR_TYPES``,
averaged with the horizontally flipped slice (flip TTA), through a ``tf.function`` in batches.

``--tumour-region`` trains a classifier that also takes the tumour's outline (``ml.models.type_classifier``,
``tumour_input``): the expert mask in training, and in use whatever outline the caller has, such as the
segmenter's; ``probabilities(images, masks)`` takes them, and a slice with no outline is typed from the
whole slice alone (training drops the outline of one slice in ``1 / TUMOUR_DROPOUT`` for that).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ml.data import (
    AUGMENTATIONS,
    TUMOUR_TYPES,
    Slices,
    _augment,
    augmentation_preset,
    data_fingerprint,
    normalise,
    resize_batch,
    type_draw_weights,
    weighted_draws,
)
from ml.inference import openvino_forward, read_metadata, resolve_runtime, save_bundle
from ml.training.callbacks import run_finished, training_callbacks
from ml.training.config import check_folds_and_weights
from ml.training.loop import init_seed, set_threads, split_record, start_or_resume, start_run
from ml.training.options import add_init_seed_argument, add_type_weight_argument
from ml.training.plots import plot_curves
from ml.training.provenance import library_versions

DEFAULT_NAME = "type_classifier"
TUMOUR_DROPOUT = 0.1  # the share of training slices shown without their outline (--tumour-region)
_CACHE: dict[tuple, TypeClassifier] = {}
_CACHE_LOCK = threading.Lock()


@dataclass
class ClassifierConfig:
    data_dir: str
    encoder: str = "plain"
    image_size: int = 128
    epochs: int = 30
    batch_size: int = 16
    base_filters: int = 12
    depth: int = 4
    dropout: float = 0.3
    hidden: int = 64
    encoder_weights: str | None = None
    label_smoothing: float = 0.1
    name: str = DEFAULT_NAME
    output_dir: str = "models/type_classifier"
    run_dir: str | None = None
    lr_start: float = 5e-4
    lr_end: float = 1e-5
    patience: int = 8
    precision: str = "auto"
    seed: int = 42
    init_seed: int | None = None  # weights, augmentation and draw order; None: seed's
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    max_minutes: float | None = None
    limit: int | None = None
    init_from: str | None = None  # a segmenter .keras whose encoder (same names and shapes) seeds this one
    augmentation: str = "standard"
    fold: int | None = None  # cross-validation: validate on this fold of the development patients
    folds: int = 5  # as ml.train's: the development patients (never the test ones) in this many folds
    type_weights: dict[str, float] = field(default_factory=dict)  # draw weights by type, as ml.train's
    tumour_region: bool = False  # a second input, the tumour's outline, pooled over (see the module doc)

    def __post_init__(self):
        if self.run_dir is None:
            self.run_dir = str(Path("runs") / self.name)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        augmentation_preset(self.augmentation)
        check_folds_and_weights(self)

    def spec(self) -> dict:
        return {
            "encoder": self.encoder,
            "input_size": self.image_size,
            "base_filters": self.base_filters,
            "depth": self.depth,
            "dropout": self.dropout,
            "hidden": self.hidden,
            **({"tumour_input": True} if self.tumour_region else {}),
        }


def labels_of(records) -> np.ndarray:
    """Class indices in ``TUMOUR_TYPES`` order; a record without a known type raises ``ValueError``."""
    index = {t: i for i, t in enumerate(TUMOUR_TYPES)}
    missing = [r.id for r in records if r.tumour_type not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} slices have no tumour type ({', '.join(missing[:5])}...): the type "
            f"classifier needs one of {', '.join(TUMOUR_TYPES)} for every training slice."
        )
    return np.array([index[r.tumour_type] for r in records], np.int32)


def prepare(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Min-max normalised, area-resized ``(N, size, size, 1)`` float32, as the segmenters see a slice."""
    batch = np.zeros((len(images), size, size, 1), np.float32)
    for i, img in enumerate(images):
        batch[i, ..., 0] = resize_batch(normalise(img)[None], size)[0]
    return batch


def prepare_masks(masks: Sequence[np.ndarray | None], size: int) -> np.ndarray:
    """Outlines of any size as ``(N, size, size, 1)`` float32 0/1 (area-resized, then over a half); None or
    an empty outline gives zeros."""
    batch = np.zeros((len(masks), size, size, 1), np.float32)
    for i, mask in enumerate(masks):
        if mask is not None and np.any(mask):
            batch[i, ..., 0] = resize_batch(np.asarray(mask, np.float32)[None], size, masks=True)[0]
    return batch


def tumour_weights(masks: np.ndarray) -> np.ndarray:
    """The classifier's tumour input from ``(N, S, S, 1)`` 0/1 outlines: each scaled so that its mean over
    the slice is 1; an empty one stays zeros."""
    area = masks.sum(axis=(1, 2, 3), keepdims=True)
    return np.where(area > 0, masks * (masks.shape[1] * masks.shape[2]) / np.maximum(area, 1.0), 0.0).astype(
        np.float32
    )


def _tumour_weights_tf(mask, dropout: float):
    """``tumour_weights`` for one ``(S, S, 1)`` outline in a ``tf.data`` map, the outline dropped (zeros)
    with probability ``dropout``."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports this module)

    if dropout:
        mask = mask * tf.cast(tf.random.uniform(()) >= dropout, mask.dtype)
    area = tf.reduce_sum(mask)
    pixels = tf.cast(tf.shape(mask)[0] * tf.shape(mask)[1], mask.dtype)
    return tf.where(area > 0, mask * pixels / tf.maximum(area, 1.0), tf.zeros_like(mask))


def make_classification_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 16,
    shuffle: bool = False,
    augmentation=None,
    seed: int = 42,
    draw_weights: Sequence[float] | None = None,
    masks: np.ndarray | None = None,
    tumour_dropout: float = 0.0,
):
    """``tf.data`` batches of ``(image, one-hot label)``; augmentation as for the segmenters (image only);
    ``draw_weights`` as ``ml.data.make_dataset``'s (draws with replacement instead of a shuffle).

    With ``masks`` (``prepare_masks``'s 0/1 outlines) the inputs are ``(image, tumour weights)``: the outline
    takes the image's augmentation, then is dropped with probability ``tumour_dropout`` and turned into
    weights (``tumour_weights``)."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports this module)

    onehot = np.eye(len(TUMOUR_TYPES), dtype=np.float32)[labels]
    outlines = np.zeros_like(images) if masks is None else masks
    if draw_weights is not None:
        ds = weighted_draws(images, (onehot, outlines), draw_weights, seed)
        ds = ds.map(lambda x, t: (x, t[1], t[0]))
    else:
        ds = tf.data.Dataset.from_tensor_slices((images, outlines, onehot))
    if shuffle and draw_weights is None:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augmentation is not None:
        ds = ds.map(lambda x, m, y: (*_augment(x, m, augmentation), y), num_parallel_calls=tf.data.AUTOTUNE)
    if masks is None:
        ds = ds.map(lambda x, m, y: (x, y))
    else:
        ds = ds.map(
            lambda x, m, y: ((x, _tumour_weights_tf(m, tumour_dropout)), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def accuracy_by_type(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy overall and per true type, and the confusion matrix (rows: truth, columns: prediction)."""
    predicted = np.argmax(probabilities, axis=1)
    confusion = np.zeros((len(TUMOUR_TYPES), len(TUMOUR_TYPES)), int)
    for t, p in zip(labels, predicted, strict=True):
        confusion[t, p] += 1
    by_type = {
        t: float(confusion[i, i] / confusion[i].sum())
        for i, t in enumerate(TUMOUR_TYPES)
        if confusion[i].sum()
    }
    return {
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "accuracy_by_type": by_type,
        "confusion": confusion.tolist(),
        "classes": list(TUMOUR_TYPES),
        "n": len(labels),
    }


def train_type_classifier(cfg: ClassifierConfig, *, log=print, verbose: int = 2) -> dict:
    """Train per ``cfg``; returns the metadata written to ``<output_dir>/<name>.json``."""
    import keras  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports this module)

    from ml.models.type_classifier import build_type_classifier  # noqa: PLC0415 (imports Keras, as above)

    precision, run_dir, split, train_slices, val_slices = start_run(cfg, log)
    train_ids, val_ids = [r.id for r in train_slices.records], [r.id for r in val_slices.records]
    y_train, y_val = labels_of(train_slices.records), labels_of(val_slices.records)
    x_train, x_val = prepare(train_slices.images, cfg.image_size), prepare(val_slices.images, cfg.image_size)
    m_train, m_val = (
        (prepare_masks(train_slices.masks, cfg.image_size), prepare_masks(val_slices.masks, cfg.image_size))
        if cfg.tumour_region
        else (None, None)
    )

    def build():
        return build_type_classifier(encoder_weights=cfg.encoder_weights, name=cfg.name, **cfg.spec())

    def compile_model(model):
        model.compile(
            optimizer=keras.optimizers.Adam(cfg.lr_start),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
            metrics=["accuracy"],
        )

    model, state = start_or_resume(cfg, run_dir, build, compile_model, log, monitor="val_accuracy")
    log(f"{cfg.name}: {model.count_params():,} parameters, {precision}, input {cfg.image_size}px")

    started = time.time()
    if not run_finished(cfg, state):
        train_ds = make_classification_dataset(
            x_train,
            y_train,
            batch_size=cfg.batch_size,
            shuffle=True,
            augmentation=augmentation_preset(cfg.augmentation),
            seed=init_seed(cfg),
            draw_weights=type_draw_weights(train_slices.records, cfg.type_weights),
            masks=m_train,
            tumour_dropout=TUMOUR_DROPOUT,
        )
        val_ds = make_classification_dataset(x_val, y_val, batch_size=cfg.batch_size, masks=m_val)
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            initial_epoch=state["epochs_done"],
            callbacks=training_callbacks(cfg, run_dir, state, log, monitor="val_accuracy"),
            verbose=verbose,
            shuffle=False,
        )  # the dataset reshuffles itself each epoch (seeded)
    (run_dir / "state.json").write_text(json.dumps(state, indent=2))
    model.load_weights(run_dir / "best.weights.h5")

    weights_source = "none" if cfg.encoder_weights in (None, "none") else str(cfg.encoder_weights)
    metadata = {
        "task": "tumour_type_classification",
        "classes": list(TUMOUR_TYPES),
        "spec": cfg.spec(),
        "encoder": cfg.encoder,
        "encoder_weights": weights_source,
        "encoder_weights_note": _weights_note(weights_source, cfg.init_from),
        "input_size": cfg.image_size,
        "initialised_from": state.get("init_from"),
        "parameters": int(model.count_params()),
        "tta": True,
        "training": {
            "data_dir_fingerprint": data_fingerprint(cfg.data_dir),
            "init_seed": init_seed(cfg),
            "split": split_record(cfg, split, n_train=len(train_ids), n_val=len(val_ids)),
            "type_weights": cfg.type_weights,
            **(
                {
                    "tumour_region": {
                        "outline": "the expert mask, with the image's augmentation",
                        "dropped": TUMOUR_DROPOUT,
                        "validation": "the expert masks",
                    }
                }
                if cfg.tumour_region
                else {}
            ),
            "epochs_planned": cfg.epochs,
            "epochs_done": state["epochs_done"],
            "best_epoch": state["best_epoch"],
            "stopped_by_time_budget": bool(state.get("stopped_by_time_budget")),
            "batch_size": cfg.batch_size,
            "loss": f"categorical cross-entropy, label smoothing {cfg.label_smoothing}",
            "optimizer": "adam",
            "lr": {"start": cfg.lr_start, "end": cfg.lr_end, "schedule": "exponential per epoch"},
            "augmentation": (
                None
                if augmentation_preset(cfg.augmentation) is None
                else {"preset": cfg.augmentation, **asdict(augmentation_preset(cfg.augmentation))}
            ),
            "precision": precision,
            "train_seconds": round(state.get("train_seconds", time.time() - started), 1),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "library_versions": library_versions(),
        },
    }
    path = save_bundle(model, cfg.output_dir, cfg.name, metadata, rebuild=build)
    val_metrics = score_as_shipped(path, cfg.name, metadata, val_slices)
    log(
        f"validation (flip TTA): accuracy {val_metrics['accuracy']:.4f}, by type "
        f"{json.dumps({k: round(v, 4) for k, v in val_metrics['accuracy_by_type'].items()})}"
    )
    if (run_dir / "log.csv").exists():
        plot_curves(run_dir / "log.csv", run_dir / "curves.png", title="accuracy (model input size, no TTA)")
    log(f"wrote {path} and {path.with_suffix('.json')}; run files in {run_dir}")
    keras.backend.clear_session()
    return {"name": cfg.name, "path": str(path), **metadata}


def score_as_shipped(path: Path, name: str, metadata: dict, val_slices: Slices) -> dict:
    """The saved bundle at ``path`` scored with flip TTA on ``val_slices``, as ``metadata["metrics"]["val"]``
    in its JSON (rewritten): the float32 file, not the (possibly bf16) training graph, whose rounding flips
    a few borderline slices. Returns those metrics."""
    import keras  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports this module)

    shipped = TypeClassifier(keras.models.load_model(path, compile=False), {"name": name, "tta": True})
    probabilities = shipped.probabilities(val_slices.images, masks=val_slices.masks)
    val = accuracy_by_type(probabilities, labels_of(val_slices.records))
    metadata["metrics"] = {"val": val}
    path.with_suffix(".json").write_text(
        json.dumps({"name": name, **metadata}, indent=2, sort_keys=True) + "\n"
    )
    return val


def type_head_bundle(
    joint, segmenter_meta: dict, val_slices: Slices, output_dir: str | Path, *, log=print
) -> dict:
    """A joint segmenter's type branch (``ml.train --type-head``: its encoder and its type head) as a
    type-classifier bundle ``<output_dir>/<segmenter>_type_head.keras``: the same weights, nothing trained
    here, the branch being exactly ``build_type_classifier`` of the segmenter's encoder. Scored as a
    classifier trained alone is, with flip TTA on the run's validation slices, so that the two ways of
    learning the type compare fold by fold. ``segmenter_meta``: the metadata the run wrote for its
    segmenter (spec, split, schedule). Returns the classifier's metadata."""
    from ml.models.type_classifier import build_type_classifier  # noqa: PLC0415 (imports Keras, loaded lazily)
    from ml.training.transfer import transfer_weights  # noqa: PLC0415 (imports Keras, loaded lazily)

    seg_spec, seg_training = segmenter_meta["spec"], segmenter_meta["training"]
    name = f"{segmenter_meta['name']}_type_head"
    spec = {
        "encoder": seg_spec["encoder"],
        "input_size": seg_spec["input_size"],
        "base_filters": seg_spec["base_filters"],
        "depth": seg_spec["depth"],
        "dropout": 0.3,  # type_head's defaults, as with_type_head builds it
        "hidden": 64,
    }

    def build():
        return build_type_classifier(name=name, **spec)

    classifier = build()
    copied = transfer_weights(joint, classifier)
    missing = [layer.name for layer in classifier.layers if layer.weights and layer.name not in copied]
    if missing:
        raise RuntimeError(f"the joint model lacks the classifier's layers {', '.join(missing)}")
    keep = (
        "split",
        "type_weights",
        "epochs_planned",
        "epochs_done",
        "best_epoch",
        "stopped_by_time_budget",
        "batch_size",
        "optimizer",
        "lr",
        "augmentation",
        "precision",
        "train_seconds",
        "finished_at",
        "library_versions",
    )
    metadata = {
        "task": "tumour_type_classification",
        "classes": list(TUMOUR_TYPES),
        "spec": spec,
        "encoder": spec["encoder"],
        "encoder_weights": segmenter_meta["encoder_weights"],
        "encoder_weights_note": segmenter_meta["encoder_weights_note"],
        "input_size": spec["input_size"],
        "initialised_from": segmenter_meta.get("initialised_from"),
        "parameters": int(classifier.count_params()),
        "tta": True,
        "training": {
            **{key: seg_training[key] for key in keep if key in seg_training},
            "joint_segmenter": {"name": segmenter_meta["name"], "type_head": seg_training["type_head"]},
            "loss": (
                f"the joint model's: the mask's {seg_training['loss']} + {seg_training['type_head']:g} x "
                "categorical cross-entropy of the type; the best epoch by the mask's validation Dice"
            ),
        },
    }
    path = save_bundle(classifier, output_dir, name, metadata, rebuild=build)
    val = score_as_shipped(path, name, metadata, val_slices)
    log(
        f"the type head as a classifier (flip TTA): validation accuracy {val['accuracy']:.4f}, by type "
        f"{json.dumps({k: round(v, 4) for k, v in val['accuracy_by_type'].items()})}; wrote {path}"
    )
    return {"name": name, "path": str(path), **metadata}


def _weights_note(weights_source: str, init_from: str | None) -> str:
    if weights_source != "none":
        return f"Encoder initialised from {weights_source}."
    if init_from:
        return (
            f"No ImageNet weights: the encoder was initialised from the segmenter {init_from}, whose own "
            "training chain starts from random initialisation (initialised_from says how it was trained)."
        )
    return "No ImageNet weights: trained from random initialisation."


class TypeClassifier:
    """A loaded classifier with its metadata. Build with ``load_type_classifier``."""

    def __init__(self, model, metadata: dict, path: Path | None = None):
        import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports this module)

        self.model, self.metadata, self.path = model, metadata, path
        self.name = metadata.get("name", model.name)
        self.classes = tuple(metadata.get("classes") or TUMOUR_TYPES)
        self.tta = bool(metadata.get("tta", True))
        shape = model.input_shape
        self.takes_outline = isinstance(shape, list) and len(shape) == 2  # trained with --tumour-region
        self.input_size = int(shape[0][1] if self.takes_outline else shape[1])
        self._lock = threading.Lock()
        spec = tf.TensorSpec((None, self.input_size, self.input_size, 1), tf.float32)
        if self.takes_outline:
            self._forward = tf.function(
                lambda x, w: tf.cast(model([x, w], training=False), tf.float32), input_signature=[spec, spec]
            )
            self._run = lambda x, w: self._forward(x, w).numpy()
        else:
            self._forward = tf.function(
                lambda x: tf.cast(model(x, training=False), tf.float32), input_signature=[spec]
            )
            self._run = lambda x, w: self._forward(x).numpy()
        self.runtime = "tensorflow"

    def use_openvino(self) -> None:
        """Run the float32 graph through OpenVINO (``ml.inference.openvino_forward``); a classifier that
        takes the outline stays on TensorFlow."""
        if self.takes_outline:
            return
        self.runtime = "openvino"
        forward = openvino_forward(self._forward, "fp32")
        self._run = lambda x, w: forward(x)

    def probabilities(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray | None] | None = None,
        *,
        batch_size: int = 16,
    ) -> np.ndarray:
        """``(N, len(classes))`` probabilities for slices of any size (flip TTA when the bundle says so).
        ``masks``, one outline (or None) per slice, are read only by a classifier that takes the outline;
        without them it types each slice from the whole slice alone."""
        if masks is not None and len(masks) != len(images):
            raise ValueError(f"probabilities: {len(images)} images but {len(masks)} outlines.")
        batch = prepare(images, self.input_size)
        outlines = masks if masks is not None else [None] * len(images)
        weights = np.zeros_like(batch)
        if self.takes_outline:
            weights = tumour_weights(prepare_masks(outlines, self.input_size))
        out = []
        with self._lock:
            for start in range(0, len(batch), batch_size):
                x, w = batch[start : start + batch_size], weights[start : start + batch_size]
                p = self._run(x, w)
                if self.tta:
                    p = (p + self._run(x[:, :, ::-1].copy(), w[:, :, ::-1].copy())) / 2.0
                out.append(p)
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        """One slice (and its outline, for a classifier that takes it): ``{type: probability}``."""
        p = self.probabilities([image], None if mask is None else [mask])[0]
        return {t: float(v) for t, v in zip(self.classes, p, strict=True)}


def load_type_classifier(keras_path: str | Path, *, runtime: str = "tensorflow") -> TypeClassifier:
    """Load the bundle at ``keras_path`` once per process and runtime (reloaded when the file changes).

    ``runtime`` as for ``ml.inference.load_segmenter``: 'openvino' runs the float32 graph through OpenVINO,
    'auto' is ``resolve_runtime``'s choice."""
    import keras  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports this module)

    runtime = resolve_runtime(runtime)
    path = Path(keras_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"No type classifier at {path}.")
    key = (str(path), path.stat().st_mtime_ns, runtime)
    with _CACHE_LOCK:
        if key not in _CACHE:
            metadata = read_metadata(path)
            if metadata.get("task") != "tumour_type_classification":
                raise ValueError(
                    f"{path} is not a tumour-type classifier bundle (its JSON has task "
                    f"{metadata.get('task')!r})."
                )
            classifier = TypeClassifier(keras.models.load_model(path, compile=False), metadata, path)
            if runtime == "openvino":
                classifier.use_openvino()
            _CACHE[key] = classifier
        return _CACHE[key]


def main(argv=None) -> None:
    """``python -m ml.type_classification``: the same training as ``manage.py train_type_classifier``."""
    from ml.encoders import ENCODERS  # noqa: PLC0415 (imports Keras: load it only to train)

    parser = argparse.ArgumentParser(
        description="Train the tumour-type classifier on data in the shared layout."
    )
    add_arguments(parser, ENCODERS, AUGMENTATIONS)
    add_tumour_region_argument(parser)
    parser.add_argument("--data", required=True, help="folder with cases.csv, images/ and masks/")
    parser.add_argument(
        "--output-dir",
        default="models/type_classifier",
        help="where the classifier bundle goes (default models/type_classifier)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        set_threads(args.threads)
    train_type_classifier(config_from_args(vars(args)), log=lambda msg: print(msg, flush=True))


def add_arguments(parser, encoders, augmentations) -> None:
    """The options shared by ``python -m ml.type_classification`` and ``manage.py train_type_classifier``."""
    parser.add_argument("--encoder", default="plain", choices=encoders, help="encoder (default plain)")
    parser.add_argument(
        "--image-size", type=int, default=128, help="square model input, a multiple of 16 (default 128)"
    )
    parser.add_argument(
        "--epochs", type=int, default=30, help="maximum epochs (early stopping may end sooner)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument(
        "--base-filters", type=int, default=12, help="filters of the first encoder stage (default 12)"
    )
    parser.add_argument(
        "--dropout", type=float, default=0.3, help="dropout on the pooled features (default 0.3)"
    )
    parser.add_argument(
        "--encoder-weights", default="none", help="none, imagenet or a weights file (backbones)"
    )
    parser.add_argument(
        "--init-from", help="a segmenter .keras whose encoder seeds the classifier, e.g. models/unet.keras"
    )
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"bundle name (default {DEFAULT_NAME})")
    parser.add_argument("--run-dir", help="checkpoints, CSV log and curves (default runs/<name>)")
    parser.add_argument(
        "--max-minutes", type=float, help="stop after the epoch that would exceed this budget"
    )
    parser.add_argument("--lr-start", type=float, default=5e-4, help="initial learning rate (default 5e-4)")
    parser.add_argument("--lr-end", type=float, default=1e-5, help="final learning rate (default 1e-5)")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="auto: bf16 where the CPU has AMX/AVX512-BF16 or on a GPU",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="split seed, and the initialisation's unless --init-seed"
    )
    add_init_seed_argument(parser)
    parser.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: all cores)")
    parser.add_argument("--limit", type=int, help="use at most N train and N val slices (smoke runs)")
    parser.add_argument(
        "--augmentation",
        default="standard",
        choices=list(augmentations),
        help="training augmentation preset (default standard)",
    )
    parser.add_argument(
        "--fold",
        type=int,
        help="cross-validation: validate on fold K of the development patients (train + validation "
        "groups dealt into --folds folds by patient group, stratified by type; the test groups are never "
        "used) and train on the others, as ml.train --fold does",
    )
    parser.add_argument("--folds", type=int, default=5, help="folds with --fold (default 5)")
    add_type_weight_argument(parser, example="meningioma=2")


def add_tumour_region_argument(parser) -> None:
    """``--tumour-region``, for ``python -m ml.type_classification`` only: the served type suggestion gives
    the classifier no outline yet, so ``manage.py train_type_classifier`` does not offer it."""
    parser.add_argument(
        "--tumour-region",
        action="store_true",
        # argparse formats help with %, so the percentage's sign is doubled
        help="also look at the tumour: a second input takes the outline (the expert mask in training, "
        f"dropped for {TUMOUR_DROPOUT:.0%}% of slices) and the head pools the features over it too, after "
        "Cheng et al. 2015's tumour region (a cross-validation study: not for serving yet)",
    )


def config_from_args(o: dict) -> ClassifierConfig:
    return ClassifierConfig(
        data_dir=str(o["data"]),
        encoder=o["encoder"],
        image_size=o["image_size"],
        epochs=o["epochs"],
        batch_size=o["batch_size"],
        base_filters=o["base_filters"],
        dropout=o["dropout"],
        encoder_weights=None if str(o["encoder_weights"]).lower() == "none" else o["encoder_weights"],
        name=o["name"],
        output_dir=str(o["output_dir"]),
        run_dir=o.get("run_dir"),
        max_minutes=o.get("max_minutes"),
        lr_start=o["lr_start"],
        lr_end=o["lr_end"],
        precision=o["precision"],
        seed=o["seed"],
        init_seed=o.get("init_seed"),
        limit=o.get("limit"),
        init_from=o.get("init_from"),
        augmentation=o["augmentation"],
        fold=o.get("fold"),
        folds=o.get("folds") or 5,
        type_weights=dict(o.get("type_weights") or []),
        tumour_region=bool(o.get("tumour_region")),
    )


if __name__ == "__main__":
    main()
