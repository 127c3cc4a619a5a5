"""The mask versions in the API: list, download any version, add one from a PNG, restore one."""

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from audit.models import AuditEntry
from cases.models import Case, MaskSource, MaskVersion
from segmentation.testing import make_case, png_bytes, synthetic_slice

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(media_dir, clinician) -> Case:
    """A 64x64 case imported with its expert mask (version 1)."""
    return make_case(
        user=clinician, patient="API-M1", seed=4, size=64, ground_truth=True, tumour_type="glioma"
    )


def _square() -> np.ndarray:
    mask = np.zeros((64, 64), np.uint8)
    mask[8:16, 8:16] = 255
    return mask


def _upload(pixels: np.ndarray, name: str = "mask.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(pixels), content_type="image/png")


def _png(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("L"))


def test_posting_a_png_adds_a_version_and_keeps_the_expert_mask(api, imported, clinician):
    before = _png(api.get(f"/api/cases/{imported.pk}/masks/1.png"))
    _, expert = synthetic_slice(64, seed=4)  # what make_case imported as the ground truth
    np.testing.assert_array_equal(before > 0, expert)
    response = api.post(f"/api/cases/{imported.pk}/masks/", {"mask": _upload(_square())}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["number"], body["source"], body["area_px"], body["in_use"]) == (2, "corrected", 64, True)
    assert body["created_by"] == clinician.username and body["feeds_case_base"] is True
    assert response["ETag"] == '"2"' and response["Location"].endswith(
        f"/api/cases/{imported.pk}/masks/2.png"
    )
    np.testing.assert_array_equal(_png(api.get(f"/api/cases/{imported.pk}/masks/1.png")), before)
    np.testing.assert_array_equal(_png(api.get(f"/api/cases/{imported.pk}/masks/2.png")), _square())
    [entry] = AuditEntry.objects.filter(event="mask.corrected")
    assert entry.actor == clinician and entry.additional_data == {"version": 2, "restored_from": None}


def test_the_list_says_which_version_is_in_use(api, imported):
    api.post(f"/api/cases/{imported.pk}/masks/", {"mask": _upload(_square())}, format="multipart")
    body = api.get(f"/api/cases/{imported.pk}/masks/").json()
    assert body["count"] == 2
    assert [(v["number"], v["source"], v["in_use"]) for v in body["results"]] == [
        (1, "imported", False),
        (2, "corrected", True),
    ]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: _upload(np.zeros((32, 32), np.uint8)), "the slice is 64x64"),
        (lambda: _upload(_square() // 2), "only 0 (background) and 255 (tumour)"),
        (lambda: _upload(np.zeros((64, 64), np.uint8)), "empty"),
        (lambda: SimpleUploadedFile("mask.png", b"not a picture"), "could not be read"),
    ],
    ids=["wrong size", "not 0/255", "empty", "not a picture"],
)
def test_a_bad_mask_is_a_400_that_says_why(api, imported, make, words):
    response = api.post(f"/api/cases/{imported.pk}/masks/", {"mask": make()}, format="multipart")
    assert response.status_code == 400 and words in response.json()["detail"]
    assert MaskVersion.objects.filter(case=imported).count() == 1


def test_a_jpeg_is_refused(api, imported):
    buffer = io.BytesIO()
    Image.fromarray(_square()).save(buffer, format="JPEG")
    upload = SimpleUploadedFile("mask.jpg", buffer.getvalue(), content_type="image/jpeg")
    response = api.post(f"/api/cases/{imported.pk}/masks/", {"mask": upload}, format="multipart")
    assert response.status_code == 400 and "send a PNG" in response.json()["detail"]


def test_restore_adds_a_version_equal_to_the_chosen_one(api, imported, clinician):
    api.post(f"/api/cases/{imported.pk}/masks/", {"mask": _upload(_square())}, format="multipart")
    response = api.post(f"/api/cases/{imported.pk}/masks/1/restore/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["number"], body["source"], body["restored_from"], body["in_use"]) == (3, "restored", 1, True)
    np.testing.assert_array_equal(
        _png(api.get(f"/api/cases/{imported.pk}/masks/3.png")),
        _png(api.get(f"/api/cases/{imported.pk}/masks/1.png")),
    )
    imported.refresh_from_db()
    assert imported.mask_source == MaskSource.RESTORED and imported.mask_version.number == 3
    [entry] = AuditEntry.objects.filter(event="mask.restored")
    assert entry.additional_data == {"version": 3, "restored_from": 1}


def test_restoring_the_version_in_use_is_a_409(api, imported):
    response = api.post(f"/api/cases/{imported.pk}/masks/1/restore/")
    assert response.status_code == 409 and "already" in response.json()["detail"]
    assert MaskVersion.objects.filter(case=imported).count() == 1


def test_a_stale_if_match_saves_nothing(api, imported):
    response = api.post(
        f"/api/cases/{imported.pk}/masks/",
        {"mask": _upload(_square())},
        format="multipart",
        headers={"If-Match": '"7"'},
    )
    assert response.status_code == 409
    assert MaskVersion.objects.filter(case=imported).count() == 1


def test_a_viewer_reads_versions_but_cannot_add_or_restore_one(imported, viewer):
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get(f"/api/cases/{imported.pk}/masks/").status_code == 200
    assert client.get(f"/api/cases/{imported.pk}/masks/1.png").status_code == 200
    posted = client.post(f"/api/cases/{imported.pk}/masks/", {"mask": _upload(_square())}, format="multipart")
    assert posted.status_code == 403
    assert client.post(f"/api/cases/{imported.pk}/masks/1/restore/").status_code == 403
    assert MaskVersion.objects.filter(case=imported).count() == 1
    assert not AuditEntry.objects.filter(event__in=["mask.corrected", "mask.restored"]).exists()


def test_an_unknown_version_or_case_is_a_404(api, imported):
    assert api.get(f"/api/cases/{imported.pk}/masks/5.png").status_code == 404
    assert api.post(f"/api/cases/{imported.pk}/masks/5/restore/").status_code == 404
    assert api.get("/api/cases/999999/masks/").status_code == 404
