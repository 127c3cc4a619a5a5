"""Small type-classifier configurations for tests that train one for real in seconds."""

from pathlib import Path

from ml.type_classification import ClassifierConfig


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
