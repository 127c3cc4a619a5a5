"""Small training configurations (segmenters, type classifiers) for tests that train one for real in
seconds."""

from pathlib import Path

from ml.training.config import TrainConfig
from ml.type_classification import ClassifierConfig
from segmentation.testing import write_shared_layout


def tiny_segmenter(tmp_path: Path, name: str, **overrides) -> TrainConfig:
    """A 32 px, depth-2 U-Net trained in float32 on a small synthetic dataset written to
    ``tmp_path/data``, its bundle in ``tmp_path/out`` and its run in ``tmp_path/runs/<name>``."""
    write_shared_layout(tmp_path / "data", n_per_type=6)
    settings = {
        "image_size": 32,
        "base_filters": 4,
        "depth": 2,
        "epochs": 1,
        "batch_size": 4,
        "precision": "fp32",
        "output_dir": str(tmp_path / "out"),
        "run_dir": str(tmp_path / "runs" / name),
        **overrides,
    }
    return TrainConfig(architecture="unet", data_dir=str(tmp_path / "data"), name=name, **settings)


def tiny_classifier(data_dir: Path, out: Path, name: str, **overrides) -> ClassifierConfig:
    """A 32 px, two-stage classifier trained for one epoch in float32, its bundle in ``out/bundles``
    and its run in ``out/<name>``."""
    settings = {
        "image_size": 32,
        "base_filters": 4,
        "depth": 2,
        "hidden": 8,
        "epochs": 1,
        "batch_size": 4,
        "precision": "fp32",
        "output_dir": str(out / "bundles"),
        "run_dir": str(out / name),
        **overrides,
    }
    return ClassifierConfig(data_dir=str(data_dir), name=name, **settings)
