"""The case page of a DICOM case offers each mask as a DICOM Segmentation beside PNG and NIfTI, and the
link serves a SEG of that mask (#32, item 6); a case that is not DICOM offers none."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.urls import reverse
from playwright.sync_api import expect
from pydicom.data import get_testdata_file

from cases.review import case_mask_correct
from cases.services import case_create
from recommender.models import DescriptionRequest
from segmentation.testing import make_case
from tests.browser.helpers import sign_in
from tests.conftest import UserFactory, with_roles
from tests.web.builders import add_finished_run
from tumorsite.queue import wait_idle

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture
def clinician(transactional_db):
    return with_roles(UserFactory(username="dr_dicom"), "clinician")


@pytest.fixture
def no_models(settings, tmp_path):
    settings.TUMORSITE_MODELS_DIR = tmp_path  # uploads are recorded and nothing segments them


def _outline() -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:40] = True
    return mask


def _seg_behind(page, label: str) -> pydicom.Dataset:
    link = page.get_by_label(label)
    expect(link).to_be_visible()
    response = page.request.get(page.evaluate("a => a.href", link.element_handle()))
    assert response.status == 200 and response.headers["content-type"] == "application/dicom"
    return pydicom.dcmread(pydicom.filebase.DicomBytesIO(response.body()))


def test_a_dicom_case_page_offers_each_mask_as_a_dicom_segmentation(
    page, live_server, clinician, media_dir, no_models
):
    case = case_create(image_file=Path(get_testdata_file("MR_small.dcm")).read_bytes(), user=clinician)
    case_mask_correct(case=case, mask=_outline(), user=clinician)
    add_finished_run(case, "unet_a", np.roll(_outline(), 5, axis=0))
    sign_in(page, live_server, clinician.username)
    page.goto(live_server.url + reverse("case-detail", args=[case.pk]))

    ground_truth = _seg_behind(page, "Download the ground truth mask as a DICOM Segmentation")
    model = _seg_behind(page, "Download the unet_a mask as a DICOM Segmentation")
    version = _seg_behind(page, "Version 1 as a DICOM Segmentation")
    assert ground_truth.SOPClassUID == model.SOPClassUID == SEG_STORAGE
    assert ground_truth.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    assert model.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert version.SOPInstanceUID == ground_truth.SOPInstanceUID  # the version in use is version 1
    assert page.js_errors == []


def test_a_png_case_page_offers_no_dicom_segmentation(page, live_server, clinician, media_dir, no_models):
    case = make_case(user=clinician, size=64)
    case_mask_correct(case=case, mask=_outline(), user=clinician)
    sign_in(page, live_server, clinician.username)
    page.goto(live_server.url + reverse("case-detail", args=[case.pk]))

    expect(page.get_by_label("Download the ground truth mask as NIfTI")).to_be_visible()
    expect(page.get_by_label("Download the ground truth mask as a DICOM Segmentation")).to_have_count(0)
    expect(page.get_by_label("Version 1 as a DICOM Segmentation")).to_have_count(0)
    assert page.js_errors == []
    # The correction asked for a description; the test database is flushed after the test, so it ends when
    # the task has answered (it deletes the ask last): in production mode a Celery worker still writing
    # the case's rows deadlocked with the flush.
    assert wait_idle(timeout=60)
    deadline = time.monotonic() + 60
    while DescriptionRequest.objects.filter(case=case).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not DescriptionRequest.objects.filter(case=case).exists()
