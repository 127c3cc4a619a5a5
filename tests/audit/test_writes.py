"""The writes this part of the trail owns: an upload (case.uploaded) and a model registry change
(model.changed), one entry each with who, what and, for a model, the old and new weights."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from cases.models import Case
from cases.rendering import png_bytes
from ml.inference import file_sha256
from segmentation.models import ModelVersion
from segmentation.services import model_versions_sync
from segmentation.testing import synthetic_slice
from tests.audit.conftest import written

pytestmark = pytest.mark.django_db

ADDRESS = "10.4.4.4"


def _upload(client):
    image, _ = synthetic_slice(64, seed=5)
    data = {"image": SimpleUploadedFile("slice.png", png_bytes(image), content_type="image/png")}
    return client.post("/api/cases/", data, format="multipart")


@pytest.mark.parametrize("how", ["session", "token"])
def test_an_upload_writes_one_case_uploaded_entry_by_the_uploader(owner, settings, tmp_path, how):
    settings.TUMORSITE_MODELS_DIR = tmp_path  # no models: the case is recorded and nothing runs
    client = APIClient(REMOTE_ADDR=ADDRESS)
    if how == "session":
        client.force_login(owner)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    with written() as entries:
        response = _upload(client)
    assert response.status_code == 201, response.content
    case = Case.objects.get(pk=response.json()["id"])
    assert [(e.event, e.actor, e.remote_addr) for e in entries] == [("case.uploaded", owner, ADDRESS)]
    assert (entries[0].content_type.model_class(), entries[0].object_pk) == (Case, str(case.pk))
    assert entries[0].additional_data["format"] == "png"


def test_a_refused_upload_writes_nothing(owner, settings, tmp_path):
    settings.TUMORSITE_MODELS_DIR = tmp_path
    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.force_login(owner)
    with written() as entries:
        bad = {"image": SimpleUploadedFile("slice.png", b"not an image", content_type="image/png")}
        assert client.post("/api/cases/", bad, format="multipart").status_code == 400
    assert entries == []


def _bundle(directory, name: str, weights: bytes, dice: float = 0.7) -> str:
    """A model bundle as sync_models reads it (it hashes the weights file and never loads it)."""
    (directory / f"{name}.keras").write_bytes(weights)
    meta = {"name": name, "architecture": "unet", "threshold": 0.5, "metrics": {"val": {"dice_mean": dice}}}
    (directory / f"{name}.json").write_text(json.dumps(meta))
    return file_sha256(directory / f"{name}.keras")


def test_each_model_version_change_writes_one_entry_with_old_and_new_weights(settings, tmp_path):
    settings.TUMORSITE_MODELS_DIR = tmp_path
    first = _bundle(tmp_path, "unet_a", b"weights one")

    with written() as added:
        model_versions_sync()
    assert len(added) == 2  # the model and the ensemble over it
    unet = ModelVersion.objects.get(name="unet_a")
    entry = next(e for e in added if e.object_pk == str(unet.pk))
    assert entry.additional_data["change"] == "added"
    assert entry.changes["file_sha256"] == [None, first]
    assert entry.changes["is_active"] == [None, True]
    ensemble = next(e for e in added if e.object_pk != str(unet.pk))
    assert ensemble.changes["members"] == [None, ["unet_a"]]

    with written() as unchanged:
        model_versions_sync()
    assert unchanged == []

    second = _bundle(tmp_path, "unet_a", b"weights two")
    with written() as replaced:
        model_versions_sync()
    # New weights are a new row (runs keep naming the old one); the old row retires under another name.
    retired, unet = unet, ModelVersion.objects.get(name="unet_a")
    assert [(e.object_pk, e.additional_data["change"], e.changes) for e in replaced] == [
        (str(unet.pk), "replaced", {"file_sha256": [first, second]})
    ]
    retired.refresh_from_db()
    assert (retired.stage, retired.is_active, retired.name) == ("retired", False, f"unet_a@{first[:12]}")

    (tmp_path / "unet_a.keras").unlink()
    with written() as deactivated:
        model_versions_sync()
    assert sorted(
        (e.object_pk, e.additional_data["change"], json.dumps(e.changes)) for e in deactivated
    ) == sorted(
        [
            (str(unet.pk), "deactivated", json.dumps({"is_active": [True, False]})),
            (
                str(ModelVersion.objects.get(name="ensemble").pk),
                "deactivated",
                json.dumps({"is_active": [True, False]}),
            ),
        ]
    )

    _bundle(tmp_path, "unet_a", b"weights two")
    with written() as activated:
        model_versions_sync()
    assert sorted(e.additional_data["change"] for e in activated) == ["activated", "activated"]
