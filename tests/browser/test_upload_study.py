"""A multi-frame DICOM file through the upload page (issue #32, item 1): one case per frame, said on the
page; the first case's viewer scrolls through the study's slices."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from playwright.sync_api import expect

from cases.models import Case
from tests.browser.helpers import sign_in
from tests.cases.builders import dicom_bytes


@pytest.fixture
def no_models(settings, tmp_path, media_dir):
    settings.TUMORSITE_MODELS_DIR = tmp_path / "no-models"


def test_a_multi_frame_file_uploads_as_a_study_whose_slices_the_viewer_scrolls(
    page, live_server, doctor, no_models, tmp_path, screenshot
):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((32, 32)), frames=4)))
    ramp = np.add.outer(np.arange(32), np.arange(32)).astype(np.uint16)
    ds.PixelData = np.stack([ramp * (i + 1) for i in range(4)]).astype(np.uint16).tobytes()
    path = tmp_path / "series.dcm"
    ds.save_as(path, enforce_file_format=True)

    sign_in(page, live_server, doctor.username)
    page.goto(live_server.url + "/upload/")
    page.wait_for_load_state("load")  # upload.js attaches the input's handler
    page.set_input_files("#files", [str(path)])
    row = page.locator(".upload-row", has_text="series.dcm")
    expect(row).to_contain_text("Uploaded as 4 slices of one study, from case")
    cases = list(Case.objects.order_by("slice_number"))
    assert [c.slice_number for c in cases] == [1, 2, 3, 4] and len({c.study_id for c in cases}) == 1

    row.get_by_role("link", name=f"case {cases[0].pk}").click()
    label = page.locator("#viewer-slice-label")
    expect(label).to_have_text(f"Slice 1 of 4 (case {cases[0].pk})")
    page.locator("#viewer-canvas").focus()
    page.keyboard.press("PageDown")
    expect(label).to_have_text(f"Slice 2 of 4 (case {cases[1].pk})")
    screenshot("32-study-slice-2")
    assert page.js_errors == []
