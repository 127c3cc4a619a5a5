"""The mask editor: a late-arriving starting mask never overwrites a clinician's edits, and a region the
models left out can be the start."""

from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import expect

from cases.selectors import case_ground_truth_mask
from segmentation.testing import make_case, synthetic_case_kwargs
from tests.browser.helpers import sign_in
from tests.web.builders import add_finished_run


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


def test_the_clinician_can_start_from_a_region_the_models_left_out(page, live_server, doctor, media_dir):
    case = make_case(patient="RUNNER-UP", **synthetic_case_kwargs("glioma", 6))
    prob = np.zeros((case.scan.height, case.scan.width), np.float32)
    prob[10:30, 10:30] = 0.9  # the outline the models chose
    prob[60:70, 50:66] = 0.62  # the region they left out
    add_finished_run(case, "ensemble", prob >= 0.9, ensemble=True, probability=prob)
    sign_in(page, live_server, doctor.username)
    page.goto(f"{live_server.url}/cases/{case.pk}/correct/")
    expect(page.locator("#editor-status")).to_have_text("Starting from the current mask.")
    page.get_by_role("button", name="Start from region 1").click()
    expect(page.locator("#editor-status")).to_have_text(
        "Region 1 of the models' lower-confidence regions: correct it, then save."
    )
    page.get_by_role("button", name="Save corrected mask").click()
    expect(page.get_by_text("Corrected mask saved.")).to_be_visible()
    case.refresh_from_db()
    saved = case_ground_truth_mask(case=case)
    expected = np.zeros_like(saved)
    expected[60:70, 50:66] = True
    assert np.array_equal(saved, expected)  # the region, and not the outline it replaced
