"""Pytest fixtures shared by tests/segmentation, tests/recommender and tests/api.

Each of those folders' ``conftest.py`` star-imports this module. Model bundles here are tiny and
untrained (``build_model(..., input_size=64, base_filters=4)``): they exercise the pipeline, not the
quality of the shipped weights.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import Group
from PIL import Image

from cases.models import TypeSource
from cases.readers import read_image
from cases.rendering import png_bytes
from cases.services import case_prepare, cases_save, patients_get_or_create
from ml.data import TUMOUR_TYPES
from ml.inference import save_bundle

TINY_ARCHITECTURES = ("unet", "attention_unet")

_PG = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def needs_services(test):
    """Marks a test ``services``; it runs only with Postgres and a broker (CI sets both variables)."""
    skip = pytest.mark.skipif(
        not (_PG and os.environ.get("CELERY_BROKER_URL")),
        reason="needs DATABASE_URL=postgres://... and CELERY_BROKER_URL (set in CI)",
    )
    return pytest.mark.services(skip(test))


def needs_postgres(test):
    """Marks a test ``services``; it runs only when DATABASE_URL points at PostgreSQL (as in CI)."""
    skip = pytest.mark.skipif(not _PG, reason="needs DATABASE_URL=postgres://... (set in CI)")
    return pytest.mark.services(skip(test))


def synthetic_slice(
    size: int = 96, *, center=(48, 48), radius: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A head-like ellipse with a bright round lesion: (uint8 image, bool mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = (yy - size / 2) ** 2 / (0.42 * size) ** 2 + (xx - size / 2) ** 2 / (0.36 * size) ** 2 <= 1
    image = np.zeros((size, size), np.float64)
    image[head] = 100 + rng.normal(0, 8, head.sum())
    lesion = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2
    image[lesion] = 220 + rng.normal(0, 10, lesion.sum())
    return np.clip(image, 0, 255).astype(np.uint8), lesion


@pytest.fixture(scope="session")
def tiny_bundles_dir(tmp_path_factory):
    """A models directory with one tiny untrained bundle per architecture in TINY_ARCHITECTURES."""
    import keras  # noqa: PLC0415 (TensorFlow loads only for the tests that build a bundle)

    from ml.models import build_model  # noqa: PLC0415 (imports Keras)

    directory = tmp_path_factory.mktemp("models")
    for i, architecture in enumerate(TINY_ARCHITECTURES):
        # Seeded: the untrained weights shape the embeddings that retrieval tests rank by, so an unseeded
        # build made those tests pass or fail by the draw.
        keras.utils.set_random_seed(1000 + i)
        model = build_model(architecture, input_size=64, base_filters=4)
        spec = {"architecture": architecture, "encoder": "plain", "input_size": 64, "base_filters": 4}
        # Threshold 0: an untrained net's probabilities hover around 0.5, and the pipeline needs a
        # non-empty mask to describe the case.
        save_bundle(
            model,
            directory,
            f"tiny_{architecture}",
            {
                "architecture": architecture,
                "encoder": "plain",
                "input_size": 64,
                "threshold": 0.0,
                "spec": spec,
                "metrics": {"val": {"dice_mean": 0.5 + i / 100}},
            },
        )
    return directory


def retrain_bundle(directory, name: str, seed: int) -> None:
    """Write new weights under an existing bundle's name (same metadata), as a retraining would."""
    import keras  # noqa: PLC0415 (TensorFlow loads only for the tests that build a bundle)

    from ml.models import ModelSpec  # noqa: PLC0415 (imports Keras)

    meta = json.loads((directory / f"{name}.json").read_text())
    meta.pop("name")
    keras.utils.set_random_seed(seed)
    save_bundle(ModelSpec.from_config(meta["spec"]).build(), directory, name, meta)


@pytest.fixture
def models_dir(settings, tiny_bundles_dir):
    settings.TUMORSITE_MODELS_DIR = tiny_bundles_dir
    settings.TUMORSITE_PRIMARY_MODEL = "ensemble"
    settings.TUMORSITE_EMBEDDING_MODEL = ""  # the default rule: the ensemble's best member
    return tiny_bundles_dir


TINY_TYPE_CLASSIFIER_SPEC = {"input_size": 64, "base_filters": 4, "depth": 4, "dropout": 0.0, "hidden": 8}


def tiny_type_classifier_bundle(directory, name: str, *, says: str | None = None, seed: int = 7, meta=None):
    """A tiny untrained type-classifier bundle (64 px, 4 base filters) in ``directory``: it exercises the
    wiring only. With ``says``, its last layer is set to type every slice so (its kernel zeroed, its bias
    ``seed`` for that type and ``-seed`` for the others), for tests that need a classifier right or wrong
    on purpose."""
    import keras  # noqa: PLC0415 (TensorFlow loads only for the tests that build a bundle)

    from ml.models.type_classifier import build_type_classifier  # noqa: PLC0415 (imports Keras)

    spec = TINY_TYPE_CLASSIFIER_SPEC
    keras.utils.set_random_seed(seed)
    model = build_type_classifier(**spec)
    if says is not None:
        last = model.get_layer("tumour_type")
        kernel, bias = last.get_weights()
        bias = np.where(np.array(TUMOUR_TYPES) == says, float(seed), -float(seed)).astype(bias.dtype)
        last.set_weights([np.zeros_like(kernel), bias])
    save_bundle(
        model,
        Path(directory),
        name,
        {
            "task": "tumour_type_classification",
            "classes": list(TUMOUR_TYPES),
            "spec": spec,
            "tta": True,
            **(meta or {}),
        },
        rebuild=lambda: build_type_classifier(**spec),
    )
    return Path(directory) / f"{name}.keras"


@pytest.fixture(scope="session")
def tiny_type_classifier_path(tmp_path_factory):
    """A tiny untrained type-classifier bundle (``tiny_type_classifier_bundle``)."""
    return tiny_type_classifier_bundle(tmp_path_factory.mktemp("type_classifier"), "tiny_type_classifier")


@pytest.fixture
def tiny_type_classifier(settings, models_dir, tiny_type_classifier_path):
    settings.TUMORSITE_TYPE_CLASSIFIER = str(tiny_type_classifier_path)
    return tiny_type_classifier_path


@pytest.fixture
def media_dir(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _with_roles(user, *roles: str):
    """The user in the role groups named (clinic.roles makes them after every migrate)."""
    user.groups.add(*Group.objects.filter(name__in=roles))
    return user


@pytest.fixture
def clinician(django_user_model):
    """A clinician who also reviews (the API tests validate and reject masks as this user)."""
    user = django_user_model.objects.create_user("dr_owner", password="pw-owner-123")
    return _with_roles(user, "clinician", "reviewer")


@pytest.fixture
def colleague(django_user_model):
    user = django_user_model.objects.create_user("dr_colleague", password="pw-colleague-123")
    return _with_roles(user, "clinician", "reviewer")


def make_case(
    *,
    user=None,
    patient: str = "P1",
    seed: int = 0,
    center=(48, 48),
    radius: int = 10,
    tumour_type: str | None = None,
    ground_truth: bool = False,
    size: int = 96,
):
    """A case in the record from a synthetic slice; with ``ground_truth`` it is imported with its mask."""
    image, mask = synthetic_slice(size, center=center, radius=radius, seed=seed)
    data = png_bytes(image)
    patient_row = patients_get_or_create(identifiers=[patient])[patient]
    prepared = case_prepare(
        image=read_image(data, "slice.png"),
        data=data,
        filename=f"slice{seed}.png",
        patient=patient_row,
        user=user,
        tumour_type=tumour_type,
        tumour_type_source=(TypeSource.IMPORTED if ground_truth else TypeSource.CLINICIAN)
        if tumour_type
        else None,
        mask=mask if ground_truth else None,
    )
    return cases_save([prepared])[0]


TYPE_LAYOUT = {  # where and how big each synthetic "type" is: (row, col) as fractions of the size, radius
    "meningioma": ((0.30, 0.20), 0.11),
    "glioma": ((0.45, 0.36), 0.08),
    "pituitary": ((0.62, 0.50), 0.05),
}


def synthetic_case_kwargs(tumour_type: str, i: int, size: int = 96) -> dict:
    (fr, fc), fradius = TYPE_LAYOUT[tumour_type]
    rng = np.random.default_rng(1000 + i)
    jitter = rng.integers(-2, 3, size=3)
    return {
        "center": (int(fr * size) + int(jitter[0]), int(fc * size) + int(jitter[1])),
        "radius": max(3, int(fradius * size) + int(jitter[2])),
        "seed": i,
        "size": size,
    }


def make_case_base(*, n_per_type: int = 6, user=None, size: int = 96) -> list:
    """Imported cases with ground-truth masks, one patient each, ``n_per_type`` of each synthetic type."""
    cases = []
    for t, tumour_type in enumerate(sorted(TYPE_LAYOUT)):
        for j in range(n_per_type):
            i = t * 100 + j
            cases.append(
                make_case(
                    user=user,
                    patient=f"BASE-{tumour_type}-{j}",
                    tumour_type=tumour_type,
                    ground_truth=True,
                    **synthetic_case_kwargs(tumour_type, i, size),
                )
            )
    return cases


def write_shared_layout(directory, *, n_per_type: int = 2, first: int = 700, prefix: str = "Q") -> list[dict]:
    """Synthetic slices in the shared layout (cases.csv, images/, masks/), one new patient each; the rows."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    (directory / "masks").mkdir(exist_ok=True)
    rows = []
    for n, tumour_type in enumerate(sorted(TYPE_LAYOUT) * n_per_type, 1):
        kwargs = synthetic_case_kwargs(tumour_type, first + n)
        image, mask = synthetic_slice(
            kwargs["size"], center=kwargs["center"], radius=kwargs["radius"], seed=n
        )
        Image.fromarray(image).save(directory / "images" / f"{n}.png")
        Image.fromarray(mask.astype("uint8") * 255).save(directory / "masks" / f"{n}.png")
        rows.append(
            {
                "id": n,
                "label": 0,
                "label_name": tumour_type,
                "pid": f"{prefix}{n}",
                "patient_group": f"{prefix}{n}",
            }
        )
    with (directory / "cases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
