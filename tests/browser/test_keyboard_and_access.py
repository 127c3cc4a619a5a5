"""Without a mouse, and without the right role: signing in from the keyboard, the skip link, dropping a
file on the upload page, and a clinician kept out of the admin site."""

from __future__ import annotations

import base64
import re

import pytest
from playwright.sync_api import expect

from cases.models import Case
from segmentation.testing import png_bytes, synthetic_slice
from tests.browser.helpers import unlabelled_inputs
from tests.conftest import PASSWORD


@pytest.fixture
def no_models(settings, tmp_path, media_dir):
    settings.TUMORSITE_MODELS_DIR = tmp_path / "no-models"


def test_a_clinician_works_from_the_keyboard_and_cannot_reach_admin(
    page, live_server, doctor, no_models, screenshot
):
    page.goto(live_server.url + "/")
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type(doctor.username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(live_server.url + "/")

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="TumorSite")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Cases", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Upload", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(live_server.url + "/upload/")
    # The form can be tabbed through before upload.js has run and attached the drop handler (a race seen in
    # CI on a busy machine): wait for the load event, which follows the page's scripts.
    page.wait_for_load_state("load")
    assert unlabelled_inputs(page) == []
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    # The skip link moves focus to the main region; wait for it before tabbing on, or the Tabs can land
    # before the jump does.
    expect(page.locator("#main")).to_be_focused()
    for _ in range(3):  # patient, tumour type, then the file picker
        page.keyboard.press("Tab")
    expect(page.locator("#files")).to_be_focused()

    # Drag and drop: the file arrives through a drop event, like one dragged from the desktop.
    data = base64.b64encode(png_bytes(synthetic_slice(96)[0])).decode()
    page.evaluate(
        """data => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        const zone = document.getElementById('dropzone');
        const options = {dataTransfer: transfer, bubbles: true, cancelable: true};
        zone.dispatchEvent(new DragEvent('dragover', options));
        zone.dispatchEvent(new DragEvent('drop', options));
    }""",
        data,
    )
    row = page.locator(".upload-row", has_text="dropped.png")
    expect(row).to_contain_text("Uploaded as case")
    expect(row.locator(".upload-status")).to_contain_text("no segmentation model is installed")
    screenshot("20-upload-drag-and-drop")
    assert Case.objects.filter(scan__original_filename="dropped.png").count() == 1

    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.goto(live_server.url + "/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/"))
    expect(page.locator("body")).to_contain_text("not authorized")
    screenshot("21-clinician-refused-admin")
    assert page.js_errors == []
