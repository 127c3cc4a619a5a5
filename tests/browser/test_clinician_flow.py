"""Issue 5's "Done when", in a real browser: sign in, upload a real slice with a bad file, see the error
and the mask, toggle models and opacity, correct and save the mask, see similar cases, record a new
diagnosis, open the patient page and the report."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from cases.models import Case, Diagnosis, MaskSource
from cases.selectors import case_ground_truth_mask
from recommender.services import case_base_build
from segmentation.models import SegmentationRun
from segmentation.services import model_versions_sync
from segmentation.testing import make_case_base
from tests.browser.helpers import sign_in, unlabelled_inputs

SLOW = 120_000  # ms: segmentation runs on a busy CPU


@pytest.fixture
def case_base(models_dir, media_dir, doctor):
    """Three tiny models (two + the ensemble) and 12 imported synthetic cases with masks, described."""
    model_versions_sync()
    make_case_base(n_per_type=4, user=doctor)
    case_base_build()
    Diagnosis.objects.create(name="Pituitary macroadenoma", key="pituitary macroadenoma")


@pytest.fixture
def real_slice(figshare_dir):
    return sorted(p for p in (figshare_dir / "samples_512").glob("*.png") if not p.stem.endswith("_mask"))[0]


def canvas_pixels(page, selector: str = "#viewer-canvas") -> str:
    return page.eval_on_selector(selector, "c => c.toDataURL('image/png')")


@pytest.mark.realdata
def test_the_whole_clinician_flow(page, live_server, case_base, doctor, real_slice, tmp_path, screenshot):
    # 1. Sign in (every page sends an anonymous visitor there first).
    page.goto(live_server.url + "/upload/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/upload/"))
    screenshot("01-sign-in")
    sign_in(page, live_server, doctor.username)
    expect(page.get_by_role("heading", name="Cases")).to_be_visible()
    screenshot("02-case-list-base")

    # 2. Upload a real slice together with a bad file.
    bad = tmp_path / "referral-letter.png"
    bad.write_bytes(b"Dear colleague, please find attached... (not an image)")
    page.get_by_role("link", name="Upload", exact=True).click()
    expect(page).to_have_url(live_server.url + "/upload/")
    page.wait_for_load_state(
        "load"
    )  # upload.js attaches the file input's handler; the input exists before it runs
    assert unlabelled_inputs(page) == []
    page.get_by_label("Patient identifier").fill("BROWSER-PATIENT")
    page.set_input_files("#files", [str(real_slice), str(bad)])

    # 3. The bad file gets its own plain-words error; the good one is uploaded and segmented.
    bad_row = page.locator(".upload-row", has_text=bad.name)
    # The reader's own sentence, as the clinician should read it (no API field name in front of it).
    expect(bad_row.locator(".error")).to_contain_text("Not uploaded: The file is not an image we can read")
    good_row = page.locator(".upload-row", has_text=real_slice.name)
    expect(good_row).to_contain_text("Uploaded as case")
    # Meanwhile, in a second tab, the case page follows the segmentation live, without reloading.
    case_tab = page.context.new_page()
    case_tab.goto(live_server.url + good_row.get_by_role("link").get_attribute("href"))
    case_tab.evaluate("""() => {
        window.sameDocument = true;
        window.statuses = [document.getElementById('case-status').textContent];
        const status = document.getElementById('case-status');
        new MutationObserver(() => window.statuses.push(status.textContent))
            .observe(status, {childList: true, characterData: true, subtree: true});
    }""")
    expect(good_row.locator(".upload-status")).to_contain_text("Segmented", timeout=SLOW)
    expect(good_row.locator("img.upload-thumb")).to_be_visible()
    error_text = bad_row.locator(".error").inner_text()
    assert "Traceback" not in error_text and len(error_text) > len("Not uploaded: ") + 10
    screenshot("03-upload-one-good-one-bad")
    expect(case_tab.locator("#case-status")).to_have_text("Segmentation finished", timeout=SLOW)
    expect(case_tab.locator(".model-card")).to_have_count(3)
    assert case_tab.evaluate("window.sameDocument") is True
    print("case page statuses seen live:", case_tab.evaluate("window.statuses"))
    case_tab.close()
    case = Case.objects.get(patient__identifier="BROWSER-PATIENT")
    assert Case.objects.filter(scan__original_filename=bad.name).count() == 0

    good_row.get_by_role("link", name=f"case {case.pk}").click()
    expect(page.locator("#case-status")).to_have_text("Segmentation finished", timeout=SLOW)
    cards = page.locator(".model-card")
    expect(cards).to_have_count(3)  # tiny_attention_unet, tiny_unet, ensemble side by side
    for card in cards.all():
        expect(card).to_contain_text("Area:")
        expect(card).to_contain_text("Pending review")
    expect(page.locator(".model-card[data-model=ensemble] .agreement")).to_contain_text(
        "Agreement between the models: "
    )
    expect(page.locator(".model-card[data-model=tiny_unet] .agreement")).to_have_count(0)
    expect(page.locator("#agreement-warning")).to_be_hidden()  # the tiny members agree
    expect(page.locator("#type-suggestion")).to_contain_text("Suggested (not recorded):", timeout=SLOW)
    expect(page.locator("#type-suggestion")).to_contain_text("confidence")
    # The live update keeps the prediction a suggestion: not recorded, not chosen in the form.
    expect(page.locator("#type-current")).to_have_text("not recorded yet")
    expect(page.locator("#type-select")).to_have_value("")
    expect(page.locator("#type-sources")).to_contain_text(
        "From similar cases:"
    )  # what the suggestion rests on
    page.wait_for_function("() => document.querySelectorAll('#layer-toggles input:checked').length === 1")
    page.wait_for_timeout(500)  # masks are decoded asynchronously
    screenshot("04-case-page")

    # 4. Toggle models and opacity: the picture changes each time.
    assert unlabelled_inputs(page) == []
    before = canvas_pixels(page)
    page.get_by_label("ensemble (primary)").uncheck()
    no_mask = canvas_pixels(page)
    assert no_mask != before
    page.get_by_label("tiny_unet", exact=True).check()
    one_model = canvas_pixels(page)
    assert one_model != no_mask
    page.get_by_label(re.compile("^Opacity")).fill("90")
    expect(page.locator("#opacity-value")).to_have_text("90%")
    assert canvas_pixels(page) != one_model
    page.get_by_label("Contour").check()
    page.get_by_label("ensemble (primary)").check()
    screenshot("05-case-page-toggled")

    # Had the members disagreed, the status panel and the ensemble's card would say so.
    SegmentationRun.objects.filter(case=case, model_version__name="ensemble").update(
        agreement=0.31, agreement_flagged=True
    )
    page.reload()
    expect(page.locator("#agreement-warning")).to_have_text(
        "The models disagree on this slice (agreement 0.31): check the primary outline with care."
    )
    expect(page.locator(".model-card[data-model=ensemble] .agreement-flag")).to_contain_text(
        "The models disagree here"
    )
    screenshot("05b-case-page-models-disagree")
    SegmentationRun.objects.filter(case=case, model_version__name="ensemble").update(
        agreement=1.0, agreement_flagged=False
    )
    page.reload()
    expect(page.locator("#agreement-warning")).to_be_hidden()

    # Sign-off of one AI mask keeps who did it.
    page.locator(".model-card[data-model=tiny_unet]").get_by_role("button", name="Validate").click()
    expect(page.locator(".messages")).to_contain_text("The tiny_unet mask is validated.")
    expect(page.locator(".model-card[data-model=tiny_unet]")).to_contain_text(
        f"Validated by a clinician — {doctor.username}"
    )

    # 5. Correct the mask and save it: it becomes the validated ground truth.
    page.get_by_role("link", name="Correct mask").click()
    expect(page.get_by_role("heading", name=re.compile("Correct the mask"))).to_be_visible()
    assert unlabelled_inputs(page) == []
    # Edits wait for the starting mask (a late mask must not overwrite them); the status says when.
    expect(page.locator("#editor-status")).to_have_text("Starting from the current mask.", timeout=SLOW)
    # Untrained test models outline everything: start from a blank mask and paint the tumour.
    page.get_by_role("button", name="Clear").click()
    box = page.locator("#mask-layer").bounding_box()
    x, y = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.4
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x + i * box["width"] * 0.02, y + i * box["height"] * 0.01)
    page.mouse.up()
    expect(page.get_by_role("button", name=re.compile("^Undo"))).to_be_enabled()
    page.get_by_label("Eraser").check()
    page.mouse.move(x + 4, y + 4)
    page.mouse.down()
    page.mouse.up()
    page.keyboard.press("Control+z")  # undo the eraser dab
    page.get_by_label("Brush").check()
    # From the keyboard: focus the slice, move the pen, paint a short line with Shift+arrows.
    page.locator("#mask-layer").focus()
    expect(page.locator("#pen")).to_be_visible()
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")
    for _ in range(5):
        page.keyboard.press("Shift+ArrowRight")
    expect(page.locator("#editor-status")).to_have_text("Painted at the pen.")
    screenshot("06-mask-correction")
    page.get_by_role("button", name="Save corrected mask").click()
    expect(page.locator(".messages")).to_contain_text("Corrected mask saved")
    expect(page.locator("#mask-state")).to_have_text("Corrected by a clinician · validated")
    expect(page.locator(".model-card[data-model=ground_truth]")).to_contain_text(f"by {doctor.username}")
    case.refresh_from_db()
    assert case.mask_source == MaskSource.CORRECTED and case.mask_updated_by == doctor
    assert case.segmentation_runs.exclude(mask_file="").count() == 3  # the AI masks are kept
    painted = case_ground_truth_mask(case=case)
    assert painted.shape == (case.scan.height, case.scan.width) and 0 < painted.mean() < 0.2

    # 6. Similar cases: thumbnails, similarity, type, why; a click opens that case.
    similar = page.locator(".similar-card")
    expect(similar.first).to_be_visible(timeout=SLOW)
    assert similar.count() >= 3
    expect(similar.first).to_contain_text("% similar")
    expect(similar.first).to_contain_text("Why:")
    page.wait_for_timeout(300)
    screenshot("07-case-corrected-with-similar-cases")
    first_id = similar.first.get_attribute("data-case")
    similar.first.click()
    expect(page).to_have_url(live_server.url + f"/cases/{first_id}/")
    page.go_back()

    # 7. Record a new diagnosis (autocomplete from the catalogue) and a near-duplicate of an entry.
    name_box = page.get_by_label("Record a diagnosis")
    name_box.fill("pitu")
    expect(page.locator("#diagnosis-options option[value='Pituitary macroadenoma']")).to_have_count(1)
    name_box.fill("Fibrous meningioma, WHO grade 1")
    page.get_by_role("button", name="Record").click()
    expect(page.locator(".messages")).to_contain_text(
        "New diagnosis added to the catalogue: “Fibrous meningioma, WHO grade 1”."
    )
    expect(page.locator("#diagnoses")).to_contain_text("Fibrous meningioma, WHO grade 1")
    page.get_by_label("Record a diagnosis").fill("pituitary macroadenomma")
    page.get_by_role("button", name="Record").click()
    expect(page.locator(".messages")).to_contain_text(
        "matched the existing catalogue entry “Pituitary macroadenoma”"
    )
    screenshot("08-diagnoses-recorded")
    page.get_by_role("link", name="Diagnoses", exact=True).click()
    expect(page.locator("table")).to_contain_text("Fibrous meningioma, WHO grade 1")
    screenshot("09-diagnosis-catalogue")

    # 8. The patient page and the printable report.
    page.goto(live_server.url + f"/cases/{case.pk}/")
    page.get_by_role("link", name="BROWSER-PATIENT").first.click()
    expect(page.get_by_role("heading", name="Patient BROWSER-PATIENT")).to_be_visible()
    expect(page.locator(".case-card")).to_contain_text("Area:")
    expect(page.locator(".case-card")).to_contain_text("Corrected by a clinician · validated")
    screenshot("10-patient-page")
    page.goto(live_server.url + f"/cases/{case.pk}/report/")
    report = page.locator("article.report")
    for text in (
        "Case report",
        "Tumour area",
        "tiny_unet",
        "ensemble",
        "Similar past cases",
        "Fibrous meningioma, WHO grade 1",
    ):
        expect(report).to_contain_text(text)
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    screenshot("11-report")
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    screenshot("12-report-print")
    page.emulate_media(media="screen")

    page.goto(live_server.url + "/")
    expect(page.locator(".case-card").first).to_contain_text(f"Case {case.pk}")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    screenshot("13-case-list")
    assert page.js_errors == []

    # Sign out.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
