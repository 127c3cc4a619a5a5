"""The mask editor never lets a late-arriving starting mask overwrite a clinician's edits."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from segmentation.testing import make_case, synthetic_case_kwargs
from tests.browser.helpers import sign_in


def test_edits_wait_until_the_starting_mask_has_arrived(page, live_server, doctor, media_dir):
    case = make_case(patient="EDITOR", ground_truth=True, **synthetic_case_kwargs("glioma", 5))
    sign_in(page, live_server, doctor.username)
    held = []

    def hold_the_mask(route):
        held.append(route)  # answered below, once the clinician has tried to edit

    page.route("**/best-mask.png", hold_the_mask)
    page.goto(
        f"{live_server.url}/cases/{case.pk}/correct/", wait_until="domcontentloaded"
    )  # "load" waits for the mask
    expect(page.locator("#editor-status")).to_have_text("Loading the current mask…")
    page.get_by_role("button", name="Clear").click()
    box = page.locator("#mask-layer").bounding_box()
    page.mouse.click(box["x"] + 5, box["y"] + 5)
    expect(page.get_by_role("button", name="Save corrected mask")).to_be_enabled()
    page.get_by_role("button", name="Save corrected mask").click()  # refused until the mask is there
    expect(page.locator("#editor-status")).to_have_text(
        "Still loading the current mask: try again in a moment."
    )
    expect(page.get_by_role("button", name=re.compile("^Undo"))).to_be_disabled()

    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#editor-status")).to_have_text("Starting from the current mask.")
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#editor-status")).to_have_text("Cleared. Paint the tumour, or undo.")
    expect(page.get_by_role("button", name=re.compile("^Undo"))).to_be_enabled()
