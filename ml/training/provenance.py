"""What a bundle records about how it was made: warm-start chain, ``--like`` source, libraries."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from ml.inference import file_sha256
from ml.training.config import bundle_recipe

RANDOM_INIT_NOTE = (
    "Encoder trained from random initialisation: ImageNet weights could not be downloaded on the "
    "machine that trained this model."
)


def encoder_weights_note(cfg) -> str:
    """A sentence for the bundle on where the encoder's first weights came from."""
    source = "none" if cfg.encoder_weights in (None, "none") else str(cfg.encoder_weights)
    if cfg.encoder == "plain":
        note = "Plain encoder: no pretrained weights (random initialisation)."
    elif source == "none":
        note = RANDOM_INIT_NOTE
    else:
        note = f"Encoder initialised from {source}."
    if cfg.init_from:
        note += (
            f" This run continued from the weights of {cfg.init_from}: initialised_from says how those "
            "were trained."
        )
    return note


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
        "self_supervised": meta.get("self_supervised"),  # ml.pretrain's: how and on which patients
    }


def like_meta(cfg) -> dict | None:
    """The bundle whose shape and data handling the run copied (``--like``): the fields it recorded, those
    of them this run set otherwise (an option given as well), and its SHA-256 when its weights are beside
    it (None without ``--like``)."""
    if not cfg.like:
        return None
    recipe = bundle_recipe(cfg.like)
    keras_path = Path(cfg.like).with_suffix(".keras")
    return {
        "path": str(cfg.like),
        "fields": sorted(recipe),
        "overridden": sorted(key for key, value in recipe.items() if getattr(cfg, key) != value),
        "sha256": file_sha256(keras_path) if keras_path.is_file() else None,
    }


def library_versions() -> dict:
    """Python, TensorFlow, Keras and NumPy versions of the training process."""
    import keras  # noqa: PLC0415 (TensorFlow loads only when a run starts)
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
