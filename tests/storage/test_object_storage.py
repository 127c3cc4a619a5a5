"""Media in an S3-compatible object store (#31, item 6), proven against a real one: SeaweedFS, started by
the tests themselves (tests/storage/conftest.py), in the embedded pass as in the production pass.

Every test reads the bucket with boto3 directly, not through the storage under test, and checks that
nothing lands in MEDIA_ROOT: with a bucket configured, no process needs a disk shared with another."""

from __future__ import annotations

import io
import json
from io import StringIO

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from PIL import Image
from rest_framework.test import APIClient

from cases.models import Case, Scan
from cases.storage import atomic_with_files, file_save
from segmentation.testing import make_case, synthetic_slice
from tests.cases.builders import png_bytes
from tests.conftest import UserFactory, with_roles
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    client = APIClient()
    client.force_authenticate(with_roles(UserFactory(username="uploader"), "clinician"))
    return client


def _nothing_on_disk(settings) -> bool:
    return not settings.MEDIA_ROOT.exists() or not any(settings.MEDIA_ROOT.rglob("*"))


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def test_an_upload_stores_the_scan_as_an_object_in_the_bucket_and_nothing_on_disk(
    bucket_media, api, settings, tmp_path
):
    settings.TUMORSITE_MODELS_DIR = tmp_path / "no-models"  # the case is recorded, no run is made
    data = png_bytes(synthetic_slice()[0])
    response = api.post("/api/cases/", {"image": ContentFile(data, name="slice.png")}, format="multipart")
    assert response.status_code == 201, response.content[:300]
    scan = Case.objects.get(pk=response.json()["id"]).scan
    assert bucket_media.names() == [scan.file.name]
    assert bucket_media.get(scan.file.name) == data
    assert _nothing_on_disk(settings)


def test_an_upload_whose_rows_roll_back_deletes_its_object(bucket_media, api, monkeypatch):
    def fail(*args, **kwargs):
        raise IntegrityError("injected after the scan was stored")

    monkeypatch.setattr("cases.services.audit_record", fail)
    data = png_bytes(synthetic_slice()[0])
    response = api.post("/api/cases/", {"image": ContentFile(data, name="slice.png")}, format="multipart")
    assert response.status_code == 500
    assert bucket_media.names() == [] and not Scan.objects.exists()


def test_a_rolled_back_block_deletes_the_object_it_stored(bucket_media, settings):
    with pytest.raises(IntegrityError), atomic_with_files():
        name = file_save("scans/lost.png", ContentFile(b"x"))
        assert bucket_media.names() == [name]
        raise IntegrityError("rolled back")
    assert bucket_media.names() == []
    assert _nothing_on_disk(settings)


def _storage_check(*args: str) -> tuple[int, dict]:
    out = StringIO()
    try:
        call_command("storage_check", "--json", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, json.loads(out.getvalue())
    return 0, json.loads(out.getvalue())


def test_storage_check_reports_an_orphan_object_and_a_missing_one(bucket_media, owner, two_hours_later):
    case = make_case(user=owner, ground_truth=True, size=64)
    assert _storage_check()[0] == 0  # scan and mask both in the bucket
    bucket_media.put("scans/2026/12/stray.png", b"no row names this")
    bucket_media.delete(case.scan.file.name)
    code, report = _storage_check()
    assert code == 1
    assert report["orphan_files"] == ["scans/2026/12/stray.png"]
    assert report["missing_files"] == [
        {"model": "cases.Scan", "field": "file", "pk": case.scan.pk, "name": case.scan.file.name}
    ]
    code, report = _storage_check("--delete-orphan-files")
    assert report["deleted"] == ["scans/2026/12/stray.png"]
    assert "scans/2026/12/stray.png" not in bucket_media.names()


def test_storage_check_does_not_count_a_young_object(bucket_media, owner):
    make_case(user=owner, size=64)
    bucket_media.put("masks/2026/12/uploading.png", b"its row is not committed yet")
    code, report = _storage_check()
    assert code == 0 and report["orphan_files"] == []
    assert report["recent_unreferenced"] == ["masks/2026/12/uploading.png"]


def test_the_download_views_stream_from_the_bucket(bucket_media, owner, owner_client, settings):
    case = make_case(user=owner, ground_truth=True, size=64)
    run = add_finished_run(case, "tiny_unet", synthetic_slice(64, seed=1)[1])
    api = APIClient()
    api.force_authenticate(owner)

    stored_mask = api.get(f"/api/segmentations/{run.pk}/mask.png")
    assert stored_mask.status_code == 200
    assert stored_mask.content == bucket_media.get(run.mask_file.name)

    truth = owner_client.get(f"/cases/{case.pk}/mask.png")
    assert truth.status_code == 200
    assert np.array_equal(_pixels(truth.content), _pixels(bucket_media.get(case.ground_truth_mask.name)))

    picture = owner_client.get(f"/cases/{case.pk}/slice.png")
    assert picture.status_code == 200
    assert np.array_equal(_pixels(picture.content), _pixels(bucket_media.get(case.scan.file.name)))

    bucket_media.delete(run.mask_file.name)  # the view has nothing else to read it from
    assert api.get(f"/api/segmentations/{run.pk}/mask.png").status_code != 200
    assert _nothing_on_disk(settings)
