"""Through the API: upload -> finished runs -> features -> type suggestion -> similar cases -> diagnoses."""

import io
import os
import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from cases.models import Case, Scan
from recommender.models import CaseFeatures
from recommender.services import case_base_build
from segmentation.models import ModelVersion
from segmentation.services import model_versions_sync
from segmentation.testing import (
    make_case,
    make_case_base,
    needs_services,
    png_bytes,
    synthetic_case_kwargs,
    synthetic_slice,
)
from tests.media import stored_names
from tumorsite.queue import wait_idle


@pytest.fixture
def api(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    return client


def _upload(api, *, seed=1, tumour_type="", patient="NEW-PATIENT"):
    kwargs = synthetic_case_kwargs("pituitary", 900 + seed)
    image, _ = synthetic_slice(kwargs["size"], center=kwargs["center"], radius=kwargs["radius"], seed=seed)
    data = {
        "image": SimpleUploadedFile("slice.png", png_bytes(image), content_type="image/png"),
        "patient": patient,
    }
    if tumour_type:
        data["tumour_type"] = tumour_type
    return api.post("/api/cases/", data, format="multipart")


def _flow(api, wait):
    response = _upload(api)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "status", "cases", "study"} and body["status"] == "queued"
    assert body["cases"] == [body["id"]] and Case.objects.get(pk=body["id"]).study_id == body["study"]
    case_id = body["id"]

    assert wait(case_id)
    detail = api.get(f"/api/cases/{case_id}/").json()
    assert detail["status"] == "done"
    assert {s["model"] for s in detail["segmentations"]} == {"ensemble", "tiny_unet", "tiny_attention_unet"}
    for seg in detail["segmentations"]:
        assert seg["status"] == "done", seg["error"]
        assert (
            seg["mask_url"] == f"http://testserver/api/segmentations/{seg['id']}/mask.png"
            and seg["area_px"] > 0
        )
        assert "area_mm2" in seg
        assert seg["weights"].startswith(seg["model"]) and "@" in seg["weights"]
        # Only the ensemble measures its members' agreement; the tiny members have no validated flag level.
        assert (seg["agreement"] is not None) == (seg["model"] == "ensemble") and seg[
            "agreement_flagged"
        ] is None
        mask_png = api.get(seg["mask_url"])
        assert mask_png.status_code == 200 and mask_png["Content-Type"] == "image/png"
        assert (np.asarray(Image.open(io.BytesIO(mask_png.content))) > 127).sum() == seg["area_px"]
        prob = np.asarray(Image.open(io.BytesIO(api.get(seg["probability_url"]).content)))
        assert prob.shape == (detail["height"], detail["width"]) and prob.max() > 127
    assert [s["is_primary"] for s in detail["segmentations"] if s["model"] == "ensemble"] == [True]
    # The primary (ensemble) run finished: the case was described and got a suggested type.
    assert CaseFeatures.objects.get(case_id=case_id).embedding is not None
    assert detail["predicted_tumour_type"] in {"meningioma", "glioma", "pituitary"}
    assert 0 < detail["predicted_confidence"] <= 1
    assert detail["predicted_type_sources"]["similar_cases"][detail["predicted_tumour_type"]] > 0
    assert (
        detail["tumour_type"] == detail["predicted_tumour_type"]
        and detail["tumour_type_source"] == "predicted"
    )

    similar = api.get(f"/api/cases/{case_id}/similar/?page_size=5").json()
    assert similar["status"] == "ready" and len(similar["results"]) == 5
    first = similar["results"][0]
    assert set(first) >= {"case_id", "similarity", "tumour_type", "diagnoses", "thumbnail_url", "why"}
    assert first["why"] and first["thumbnail_url"].endswith(f"/api/cases/{first['case_id']}/thumbnail.png")
    assert api.get(first["thumbnail_url"]).status_code == 200
    filtered = api.get(f"/api/cases/{case_id}/similar/?page_size=3&tumour_type=glioma").json()["results"]
    assert [r["tumour_type"] for r in filtered] == ["glioma"] * 3

    added = api.post(
        f"/api/cases/{first['case_id']}/diagnoses/", {"name": "Pituitary  macroadénoma"}, format="json"
    )
    assert added.status_code == 201 and added.json()["created"] is True
    assert added.json()["diagnosis"]["added_automatically"] is True
    near = api.post(f"/api/cases/{case_id}/diagnoses/", {"name": "pituitary macroadenomma"}, format="json")
    assert near.status_code == 200 and near.json()["created"] is False
    assert near.json()["matched_existing"]["name"] == "Pituitary macroadénoma"
    assert "near match" in near.json()["message"]
    again = api.get(f"/api/cases/{case_id}/similar/?page_size=5").json()["results"]
    by_id = {r["case_id"]: r for r in again}
    assert by_id[first["case_id"]]["diagnoses"] == ["Pituitary macroadénoma"]
    suggestions = api.get("/api/diagnoses/?q=macro").json()["results"]
    assert [s["name"] for s in suggestions] == ["Pituitary macroadénoma"] and suggestions[0]["uses"] == 2
    detail = api.get(f"/api/cases/{case_id}/").json()
    assert [d["name"] for d in detail["diagnoses"]] == ["Pituitary macroadénoma"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_upload_to_similar_cases_in_the_embedded_mode(api, models_dir, media_dir, clinician, settings):
    settings.CELERY_BROKER_URL = ""  # the in-process queue, even when the suite runs beside a broker
    model_versions_sync()
    make_case_base(n_per_type=4, user=clinician)
    case_base_build()

    def wait(case_id):
        return wait_idle(120)

    _flow(api, wait)


@needs_services
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_upload_to_similar_cases_through_redis_and_a_real_worker(api, tiny_bundles_dir, clinician, settings):
    """The worker is another process: it must share this database (test settings) and the media storage."""
    settings.TUMORSITE_MODELS_DIR = tiny_bundles_dir
    model_versions_sync()
    for version in ModelVersion.objects.filter(is_ensemble=False):
        # Absolute, so the worker finds the bundles whatever its own TUMORSITE_MODELS_DIR.
        version.file_path = str(tiny_bundles_dir / version.file_path)
        version.save()
    make_case_base(n_per_type=4, user=clinician)
    case_base_build()

    def wait(case_id):
        deadline = time.monotonic() + float(os.environ.get("TUMORSITE_WORKER_TIMEOUT", "180"))
        while time.monotonic() < deadline:
            # The primary run's follow-up (features, type) runs in the same task, after the status.
            if (
                APIClient.get(api, f"/api/cases/{case_id}/").json()["status"] == "done"
                and Case.objects.get(pk=case_id).predicted_tumour_type
            ):
                return True
            time.sleep(1)
        return False

    _flow(api, wait)


@pytest.mark.django_db
def test_a_bad_file_gets_a_400_and_nothing_is_stored(api, media_dir):
    bad = SimpleUploadedFile("scan.png", b"this is not an image", content_type="image/png")
    response = api.post("/api/cases/", {"image": bad}, format="multipart")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert "not an image" in response.json()["detail"] and response.json()["errors"]["image"]
    empty = api.post("/api/cases/", {"image": SimpleUploadedFile("e.png", b"")}, format="multipart")
    assert empty.status_code == 400 and empty.json()["detail"]
    missing = api.post("/api/cases/", {}, format="multipart")
    assert missing.status_code == 400 and missing.json()["detail"].startswith("image")
    assert Case.objects.count() == Scan.objects.count() == 0
    assert stored_names() == []


@pytest.mark.django_db
def test_the_case_list_is_paginated_newest_first(api, media_dir):
    ids = [make_case(patient=f"L{i}", seed=i).pk for i in range(3)]
    body = api.get("/api/cases/?page_size=2").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3 and body["next"] and body["previous"] is None
    assert [r["id"] for r in body["results"]] == ids[::-1][:2]
    assert api.get("/api/cases/?tumour_type=glioma").json()["count"] == 0


@pytest.mark.django_db
def test_a_clinicians_type_given_at_upload_is_kept(api, media_dir, settings, tmp_path):
    settings.TUMORSITE_MODELS_DIR = tmp_path  # no models: the case is recorded, nothing runs
    response = _upload(api, tumour_type="glioma")
    assert response.status_code == 201
    case = Case.objects.get(pk=response.json()["id"])
    assert case.tumour_type == "glioma" and case.tumour_type_source == "clinician"
    assert api.get(f"/api/cases/{case.pk}/similar/").json() == {
        "status": "pending",
        "query_tumour_type": "glioma",
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }
    assert api.get("/api/cases/999999/").status_code == 404
