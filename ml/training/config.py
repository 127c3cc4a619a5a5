"""What a training run trains: ``TrainConfig``, and ``bundle_recipe`` for ``--like``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ml.data import TUMOUR_TYPES, augmentation_preset


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
    init_seed: int | None = None  # weights, augmentation and draw order; None: seed's
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
    # Draw weights by tumour type (e.g. {"glioma": 2.0}): each epoch draws as many slices as there are,
    # with replacement, a slice's chance proportional to its type's weight (1 if not named). Empty: every
    # slice once per epoch, shuffled.
    type_weights: dict[str, float] = field(default_factory=dict)
    # The weight of a tumour-type head's cross-entropy in the loss (ml.models.with_type_head): segmentation
    # and type learnt together through the encoder. 0: no head. The bundle keeps the segmenter only.
    type_head: float = 0.0
    # Hard-example mining (ml.training.mining): after each epoch a slice's draw weight becomes its type's
    # times 1 + hard_mining * (1 - the model's Dice on it). 0: none.
    hard_mining: float = 0.0

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
        check_folds_and_weights(self)
        if self.type_head:
            if not self.type_head > 0:
                raise ValueError(f"type_head is a loss weight > 0 (or 0 for none), got {self.type_head}.")
            if self.encoder != "plain" or self.deep_supervision or self.distill_from:
                raise ValueError(
                    "a type head reads the plain encoder's bottleneck beside one mask head: train it with "
                    "--encoder plain, without deep supervision or distillation."
                )
        if self.hard_mining:
            if not self.hard_mining > 0:
                raise ValueError(f"hard_mining is a strength > 0 (or 0 for none), got {self.hard_mining}.")
            if self.distill_from:
                raise ValueError(
                    "hard-example mining scores the expert masks: train it without distillation."
                )
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
        from ml.models import ModelSpec  # noqa: PLC0415 (ml.models imports Keras; a config stays light)

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


def check_folds_and_weights(cfg) -> None:
    """A training config's ``fold`` of ``folds`` and ``type_weights`` (segmenter's or classifier's);
    ``ValueError`` with what is allowed."""
    for tumour_type, weight in cfg.type_weights.items():
        if tumour_type not in TUMOUR_TYPES or not weight > 0:
            raise ValueError(
                f"type weights are <type>=<weight > 0> with a type of {', '.join(TUMOUR_TYPES)}; "
                f"got {tumour_type}={weight}."
            )
    if cfg.folds < 2:
        raise ValueError(f"folds must be at least 2, got {cfg.folds}.")
    if cfg.fold is not None and not 0 <= cfg.fold < cfg.folds:
        raise ValueError(f"fold must be in 0..{cfg.folds - 1}, got {cfg.fold}.")


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
    "type_weights",
    "type_head",
    "hard_mining",
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
    # Bundles from before the option drew every slice once per epoch, as no weights do.
    recipe["type_weights"] = training.get("type_weights") or {}
    recipe["type_head"] = training.get("type_head") or 0.0
    recipe["hard_mining"] = training.get("hard_mining") or 0.0
    return {key: recipe[key] for key in LIKE_FIELDS if recipe.get(key) is not None}
