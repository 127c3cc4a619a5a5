"""The upload page with 8 files chosen at once (issue #31, item 1: 6 of 8 failed with "database is locked"
in the embedded mode) and one of them chosen again (item 4: the row links to the case that has the file,
and "Upload anyway" records it a second time)."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from cases.models import Case
from segmentation.testing import png_bytes
from tests.browser.helpers import sign_in


@pytest.fixture
def no_models(settings, tmp_path, media_dir):
    settings.TUMORSITE_MODELS_DIR = tmp_path / "no-models"


def test_eight_files_at_once_all_upload_and_a_file_chosen_again_is_a_duplicate(
    page, live_server, doctor, no_models, tmp_path, screenshot
):
    files = []
    for i in range(8):
        pixels = np.full((48, 48), 30, np.uint8)
        pixels[10 + i, 10:30] = 220
        path = tmp_path / f"slice-{i}.png"
        path.write_bytes(png_bytes(pixels))
        files.append(path)
    sign_in(page, live_server, doctor.username)
    page.goto(live_server.url + "/upload/")
    page.wait_for_load_state("load")  # upload.js attaches the input's handler

    page.set_input_files("#files", [str(p) for p in files])

    for path in files:
        expect(page.locator(".upload-row", has_text=path.name)).to_contain_text("Uploaded as case")
    assert Case.objects.count() == 8
    first = Case.objects.get(scan__original_filename="slice-3.png")

    page.set_input_files("#files", [str(files[3])])

    rows = page.locator(".upload-row", has_text="slice-3.png")
    expect(rows).to_have_count(2)
    duplicate = rows.nth(1)
    expect(duplicate).to_contain_text(f"Already uploaded as case {first.pk}; not stored again.")
    expect(duplicate.get_by_role("link", name=f"case {first.pk}")).to_have_attribute(
        "href", f"/cases/{first.pk}/"
    )
    screenshot("21-upload-duplicate")
    assert Case.objects.count() == 8

    duplicate.get_by_role("button", name="Upload anyway").click()

    rows = page.locator(".upload-row", has_text="slice-3.png")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("Uploaded as case")
    assert Case.objects.filter(scan__original_filename="slice-3.png").count() == 2
    assert page.js_errors == []
