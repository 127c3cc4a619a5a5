"""Data: the shared Figshare layout, patient-group splits, and the ``tf.data`` training pipeline.

Layout (``../shared/data/figshare``): ``cases.csv`` (id, label, label_name, pid, patient_group, ...),
``images/{id}.png`` (8-bit grayscale) and ``masks/{id}.png`` (0/255). Splits are made by
``patient_group`` so that no person's slices land on both sides (rescans of one person share a group).
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

TUMOUR_TYPES = ("meningioma", "glioma", "pituitary")
LABEL_NAMES = {1: "meningioma", 2: "glioma", 3: "pituitary"}


@dataclass
class Record:
    id: str
    tumour_type: str | None
    patient_group: str
    pid: str = ""


@dataclass
class Slices:
    """Images and masks held in memory, at their native resolution."""

    records: list[Record]
    images: list[np.ndarray] = field(repr=False)  # uint8 (H, W)
    masks: list[np.ndarray] = field(repr=False)  # bool (H, W)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, ids) -> Slices:
        wanted = set(map(str, ids))
        keep = [i for i, r in enumerate(self.records) if r.id in wanted]
        return Slices(
            [self.records[i] for i in keep], [self.images[i] for i in keep], [self.masks[i] for i in keep]
        )


def read_records(data_dir: str | Path) -> list[Record]:
    """Rows of ``cases.csv``; a clear error if the folder is not in the shared layout."""
    data_dir = Path(data_dir)
    csv_path = data_dir / "cases.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{data_dir} is not in the shared layout: no cases.csv there "
            "(expected cases.csv, images/, masks/)."
        )
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    records = []
    for row in rows:
        name = row.get("label_name") or (LABEL_NAMES.get(int(row["label"])) if row.get("label") else None)
        group = row.get("patient_group") or row.get("pid") or row["id"]
        records.append(
            Record(id=str(row["id"]), tumour_type=name or None, patient_group=group, pid=row.get("pid", ""))
        )
    return records


def load_slices(data_dir: str | Path, ids=None) -> Slices:
    """Load images and masks (optionally only ``ids``) into memory."""
    data_dir = Path(data_dir)
    records = read_records(data_dir)
    if ids is not None:
        wanted = set(map(str, ids))
        records = [r for r in records if r.id in wanted]
    images, masks = [], []
    for r in records:
        img = np.asarray(Image.open(data_dir / "images" / f"{r.id}.png").convert("L"))
        mask = np.asarray(Image.open(data_dir / "masks" / f"{r.id}.png").convert("L")) > 127
        if img.shape != mask.shape:
            raise ValueError(f"Case {r.id}: image {img.shape} and mask {mask.shape} differ in size.")
        images.append(img)
        masks.append(mask)
    return Slices(records, images, masks)


def data_fingerprint(data_dir: str | Path) -> str:
    """sha256 over cases.csv and the names and sizes of every image and mask: cheap and change-sensitive."""
    data_dir = Path(data_dir)
    h = hashlib.sha256((data_dir / "cases.csv").read_bytes())
    for sub in ("images", "masks"):
        for p in sorted((data_dir / sub).glob("*.png")):
            h.update(f"{sub}/{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()


def _group_types(records: list[Record]) -> dict[str, str]:
    by_group: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        by_group[r.patient_group][r.tumour_type or "unknown"] += 1
    return {g: c.most_common(1)[0][0] for g, c in by_group.items()}


def _shuffled_groups_by_type(records: list[Record], seed: int):
    """Yield ``(groups, sizes)`` per tumour type (sorted), each type's groups shuffled by one seeded RNG."""
    group_type = _group_types(records)
    sizes = Counter(r.patient_group for r in records)
    rng = random.Random(seed)
    for ttype in sorted(set(group_type.values())):
        groups = sorted(g for g, t in group_type.items() if t == ttype)
        rng.shuffle(groups)
        yield groups, sizes


def split_by_patient(
    records: list[Record], *, seed: int = 42, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> dict[str, list[str]]:
    """Split slice ids into train/val/test by patient group, stratified by tumour type, seeded.

    Within each tumour type the groups are shuffled and dealt to test, then val, until each holds
    about its fraction of that type's slices; the rest train. No group is on two sides.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1.")
    assignment: dict[str, str] = {}
    for groups, sizes in _shuffled_groups_by_type(records, seed):
        total = sum(sizes[g] for g in groups)
        targets = [("test", test_fraction * total), ("val", val_fraction * total)]
        filled = {"test": 0, "val": 0}
        for g in groups:
            side = "train"
            for name, target in targets:
                if filled[name] + sizes[g] / 2 <= target:
                    side = name
                    break
            if side != "train":
                filled[side] += sizes[g]
            assignment[g] = side
    split = {"train": [], "val": [], "test": []}
    for r in records:
        split[assignment[r.patient_group]].append(r.id)
    return split


def split_ids_as_trained(records: list[Record], split_meta: dict, name: str) -> list[str]:
    """The ids of split ``name`` ("train", "val" or "test") as a bundle was trained: ``split_meta`` is its
    JSON's ``training.split`` (seed and fractions; the defaults are those of ``split_by_patient``). A
    cross-validation bundle's split names its ``fold`` (of ``folds``): its train and val are that fold's
    (``development_fold``), so its validation figures are never measured on slices it trained on."""
    seed = split_meta.get("seed", 42)
    split = split_by_patient(
        records,
        seed=seed,
        val_fraction=split_meta.get("val_fraction", 0.15),
        test_fraction=split_meta.get("test_fraction", 0.15),
    )
    if split_meta.get("fold") is not None:
        split = development_fold(records, split, split_meta["fold"], k=split_meta.get("folds", 5), seed=seed)
    return split[name]


def development_fold(records: list[Record], split: dict, fold: int, *, k: int, seed: int) -> dict:
    """The split for cross-validation fold ``fold``: the development patients (the split's train and
    validation groups; the test groups stay untouched) dealt into ``k`` folds by patient group,
    stratified by type (``kfold_by_patient``); ``fold`` validates, the others train."""
    held = set(split["test"])
    development = [r for r in records if r.id not in held]
    folds = kfold_by_patient(development, k, seed=seed)
    return {
        "train": [i for f, ids in enumerate(folds) if f != fold for i in ids],
        "val": folds[fold],
        "test": split["test"],
    }


def kfold_by_patient(records: list[Record], k: int = 5, *, seed: int = 42) -> list[list[str]]:
    """``k`` folds of slice ids by patient group, each type's groups dealt round-robin by size."""
    fold_of: dict[str, int] = {}
    for groups, sizes in _shuffled_groups_by_type(records, seed):
        load = [0] * k
        for g in sorted(groups, key=lambda g: -sizes[g]):
            f = min(range(k), key=lambda i: (load[i], i))
            fold_of[g] = f
            load[f] += sizes[g]
    folds: list[list[str]] = [[] for _ in range(k)]
    for r in records:
        folds[fold_of[r.patient_group]].append(r.id)
    return folds


# --- Preprocessing shared by training and inference -------------------------------------------


def normalise(image: np.ndarray) -> np.ndarray:
    """Min-max rescale to float32 [0, 1], as the Figshare PNGs were rescaled upstream."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3:
        x = x.mean(axis=-1)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def resize_batch(images: np.ndarray, size: int, *, masks: bool = False) -> np.ndarray:
    """Resize ``(N, H, W)`` float arrays to ``(N, size, size)``: area for images, area + 0.5 for masks."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: Django imports ml.data)

    out = tf.image.resize(np.asarray(images, np.float32)[..., None], (size, size), method="area").numpy()[
        ..., 0
    ]
    return (out > 0.5).astype(np.float32) if masks else out


def to_arrays(slices: Slices, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack normalised images and masks resized to ``size``: float32 ``(N, size, size, 1)`` each."""
    xs = np.zeros((len(slices), size, size), np.float32)
    ys = np.zeros((len(slices), size, size), np.float32)
    for i, (img, mask) in enumerate(zip(slices.images, slices.masks, strict=True)):
        xs[i] = resize_batch(normalise(img)[None], size)[0]
        ys[i] = resize_batch(mask[None].astype(np.float32), size, masks=True)[0]
    return xs[..., None], ys[..., None]


# --- tf.data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """Random training augmentation. Geometric changes apply to image and mask together."""

    flip: bool = True  # horizontal flip (the seed's)
    max_rotation_deg: float = 10.0
    max_scale: float = 0.10  # zoom in [1 - s, 1 + s]
    max_brightness: float = 0.10  # additive, on [0, 1] intensities
    max_contrast: float = 0.10  # multiplicative around the mean


# Named presets for ``--augmentation``. "strong" doubles the geometric range and raises the intensity
# changes, against the overfitting seen at 128 px (training Dice 0.81-0.83 against validation 0.69).
AUGMENTATIONS = {
    "none": None,
    "standard": Augmentation(),
    "strong": Augmentation(max_rotation_deg=20.0, max_scale=0.20, max_brightness=0.15, max_contrast=0.25),
}


def augmentation_preset(name: str) -> Augmentation | None:
    """The augmentation called ``name``; an unknown name raises ``ValueError`` listing the choices."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}: choose one of {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]


def _augment(image, mask, aug: Augmentation, *, soft: bool = False):
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: Django imports ml.data)

    if aug.flip:
        flip = tf.random.uniform(()) < 0.5
        image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
        mask = tf.cond(flip, lambda: tf.image.flip_left_right(mask), lambda: mask)
    size = tf.cast(tf.shape(image)[0], tf.float32)
    angle = tf.random.uniform((), -1.0, 1.0) * aug.max_rotation_deg * math.pi / 180.0
    scale = 1.0 + tf.random.uniform((), -1.0, 1.0) * aug.max_scale
    # Inverse map output -> input coordinates: rotate and scale about the centre.
    c, s = tf.cos(angle) / scale, tf.sin(angle) / scale
    cx = cy = (size - 1.0) / 2.0
    transform = tf.stack([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, 0.0, 0.0])[None]
    stacked = tf.concat([image, mask], axis=-1)[None]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=stacked,
        transforms=transform,
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
    # A binary mask stays binary; a soft target (distillation) keeps its interpolated values.
    image, mask = warped[..., :1], (warped[..., 1:] if soft else tf.cast(warped[..., 1:] > 0.5, tf.float32))
    image = image + tf.random.uniform((), -aug.max_brightness, aug.max_brightness)
    mean = tf.reduce_mean(image)
    image = (image - mean) * (1.0 + tf.random.uniform((), -aug.max_contrast, aug.max_contrast)) + mean
    return tf.clip_by_value(image, 0.0, 1.0), mask


def make_dataset(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    batch_size: int = 16,
    shuffle: bool = False,
    augmentation: Augmentation | None = None,
    seed: int = 42,
    repeat_outputs: int = 1,
    soft_targets: bool = False,
    draw_weights: Sequence[float] | DrawWeights | None = None,
    types: np.ndarray | None = None,
):
    """A ``tf.data.Dataset`` of ``(image, mask)`` batches from ``(N, S, S, 1)`` arrays.

    ``types``: ``(N, len(TUMOUR_TYPES))`` one-hot tumour types; the targets are then
    ``{"mask": mask, "tumour_type": type}``, for a model with a type head (``ml.models.with_type_head``).
    ``repeat_outputs`` > 1 repeats the mask as a tuple, for deep-supervision models with several heads.
    ``soft_targets``: the masks are probabilities in [0, 1] (distillation), which augmentation
    interpolates instead of re-binarising. ``draw_weights`` (one per slice, > 0): each pass draws N slices
    with replacement, each with probability proportional to its weight, anew every pass (seeded), instead
    of every slice once in a shuffled order (``type_draw_weights`` makes them by tumour type; a
    ``DrawWeights`` may change them between passes).
    """
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: Django imports ml.data)

    if types is not None and (repeat_outputs > 1 or len(types) != len(images)):
        raise ValueError("types need one row per image, and a model with one mask head.")
    targets = masks if types is None else (masks, np.asarray(types, np.float32))
    if draw_weights is not None:
        ds = weighted_draws(images, targets, draw_weights, seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle and draw_weights is None:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augmentation is not None:

        def augment(x, y):
            if types is None:
                return _augment(x, y, augmentation, soft=soft_targets)
            x, mask = _augment(x, y[0], augmentation, soft=soft_targets)
            return x, (mask, y[1])  # the type does not move with the pixels

        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    if repeat_outputs > 1:
        ds = ds.map(lambda x, y: (x, tuple([y] * repeat_outputs)))
    if types is not None:
        ds = ds.map(lambda x, y: (x, {"mask": y[0], "tumour_type": y[1]}))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def type_draw_weights(records: Sequence[Record], weights: dict[str, float]) -> list[float] | None:
    """Each slice's draw weight from its tumour type's (``make_dataset``'s ``draw_weights``; a type not
    named, or none, weighs 1); None when ``weights`` is empty, i.e. every slice once per pass."""
    if not weights:
        return None
    return [float(weights.get(r.tumour_type or "", 1.0)) for r in records]


def draw_cdf(weights: Sequence[float], n: int) -> np.ndarray:
    """The cumulative draw probabilities of ``n`` slices' weights; ``ValueError`` unless there is one
    finite weight > 0 per slice."""
    p = np.asarray(weights, dtype=np.float64)
    if p.shape != (n,) or not np.all(np.isfinite(p)) or (p <= 0).any():
        raise ValueError(
            f"draw_weights needs one finite weight > 0 per slice ({n}); got {p.size} weights, "
            f"the smallest {p.min() if p.size else None}."
        )
    return np.cumsum(p) / p.sum()


class DrawWeights:
    """Draw weights that may change between passes (hard-example mining, ``ml.training.mining``): the
    dataset reads them at every draw, so weights ``set`` after a pass shape the next one. ``base``: the
    weights it starts with, one per slice, > 0."""

    def __init__(self, base: Sequence[float]):
        import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: Django imports ml.data)

        self.base = np.asarray(base, dtype=np.float64)
        self.cdf = tf.Variable(draw_cdf(self.base, len(self.base)), trainable=False, dtype=tf.float64)

    def __len__(self) -> int:
        return len(self.base)

    def set(self, weights: Sequence[float]) -> None:
        self.cdf.assign(draw_cdf(weights, len(self.base)))


def weighted_draws(
    images: np.ndarray, targets: np.ndarray, weights: Sequence[float] | DrawWeights, seed: int
):
    """A ``tf.data.Dataset`` of ``len(images)`` ``(image, target)`` pairs (a target may be a tuple of
    arrays) drawn with replacement, each with probability proportional to its weight: inverse-CDF sampling
    of a seeded random stream that is drawn anew each time the dataset is iterated. ``DrawWeights`` are
    read at each draw, so they may change between passes."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: Django imports ml.data)

    if isinstance(weights, DrawWeights):
        if len(weights) != len(images):
            raise ValueError(f"draw_weights needs one weight per slice ({len(images)}); got {len(weights)}.")
        cdf = weights.cdf
    else:
        cdf = tf.constant(draw_cdf(weights, len(images)))
    images_t, targets_t = tf.constant(images), tf.nest.map_structure(tf.constant, targets)
    last = len(images) - 1

    def pick(r):
        u = tf.cast(r % (2**32), tf.float64) / 2.0**32  # uniform in [0, 1)
        i = tf.minimum(tf.searchsorted(cdf, tf.reshape(u, [1]), side="right")[0], last)
        return tf.gather(images_t, i), tf.nest.map_structure(lambda t: tf.gather(t, i), targets_t)

    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(len(images))
    return draws.map(pick, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
