"""Issue #30's "Done when", in a real browser, on a case imported with an expert mask and segmented by the
tiny models: a clinician corrects the mask twice, a reviewer validates an AI mask (the tiny_unet run's),
an admin restores version 1 from the outline history; the expert mask and every version still download
(v4, the restore, has v1's pixels); a viewer sees the case but no edit control, and forged POSTs with the
viewer's session are refused and change nothing; the audit trail names who did each write."""

from __future__ import annotations

import base64
import io
import re
from types import SimpleNamespace

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from PIL import Image
from playwright.sync_api import expect

from audit.models import AuditEntry
from cases.models import Case, CaseDiagnosis, Diagnosis, MaskSource
from segmentation.models import ReviewStatus, RunStatus, SegmentationRun
from segmentation.services import model_versions_sync, segmentation_runs_create_for_case
from segmentation.testing import make_case, synthetic_case_kwargs, synthetic_slice
from tests.browser.helpers import csrf_token, paint_patch, sign_in, sign_out
from tests.conftest import UserFactory, with_roles
from tumorsite.queue import wait_idle

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GZIP_MAGIC = b"\x1f\x8b"
SEGMENTATION_WAIT_S = 600  # tiny models, but a CPU shared with a training run
WRITE_EVENTS = ("mask.corrected", "mask.restored", "run.validated", "run.rejected", "type.recorded",
                "diagnosis.added", "diagnosis.removed")  # fmt: skip


@pytest.fixture
def people(transactional_db):
    """One account per role, each in that role's group only (the admin also staff)."""
    return SimpleNamespace(
        clinician=with_roles(UserFactory(username="dr_clinician"), "clinician"),
        reviewer=with_roles(UserFactory(username="dr_reviewer"), "reviewer"),
        admin=with_roles(UserFactory(username="site_admin", is_staff=True), "admin"),
        viewer=with_roles(UserFactory(username="ward_viewer"), "viewer"),
    )


@pytest.fixture
def record(models_dir, media_dir, people):
    """A case imported with its expert mask (version 1) and a recorded diagnosis, segmented by the tiny
    models (two members and the ensemble, all finished); and the expert mask's pixels."""
    model_versions_sync()
    kwargs = synthetic_case_kwargs("glioma", 30)
    case = make_case(patient="RECORD-PATIENT", tumour_type="glioma", ground_truth=True, **kwargs)
    CaseDiagnosis.objects.create(
        case=case, diagnosis=Diagnosis.objects.create(name="Glioblastoma", key="glioblastoma")
    )
    segmentation_runs_create_for_case(case=case)
    assert wait_idle(timeout=SEGMENTATION_WAIT_S), "the tiny models did not finish"
    runs = SegmentationRun.objects.filter(case=case)
    assert sorted(runs.values_list("status", flat=True)) == [RunStatus.DONE] * 3
    expert = synthetic_slice(
        kwargs["size"], center=kwargs["center"], radius=kwargs["radius"], seed=kwargs["seed"]
    )
    return SimpleNamespace(case=case, expert=expert[1])


def _png_pixels(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("L")) > 127


def _history_rows(page):
    return page.locator("#mask-history tbody tr")


def _correct_twice(page, live_server, case: Case, screenshot) -> None:
    """Two corrections, each painted on a cleared canvas over the lesion: a generous outline, then a
    tighter one."""
    patches = [((0.26, 0.34), (0.46, 0.56)), ((0.31, 0.40), (0.41, 0.50))]
    for n, (top_left, bottom_right) in enumerate(patches, 2):
        page.get_by_role("link", name="Correct mask").click()
        expect(page.get_by_role("heading", name=re.compile("Correct the mask"))).to_be_visible()
        expect(page.locator("#editor-status")).to_have_text("Starting from the current mask.")
        page.get_by_role("button", name="Clear").click()
        paint_patch(page, top_left, bottom_right)
        screenshot(f"record-0{n}-correction-v{n}")
        page.get_by_role("button", name="Save corrected mask").click()
        expect(page).to_have_url(f"{live_server.url}/cases/{case.pk}/")
        expect(page.locator(".messages")).to_contain_text("Corrected mask saved")
        expect(_history_rows(page)).to_have_count(n)
        expect(_history_rows(page).nth(n - 1)).to_have_attribute("aria-current", "true")
        expect(_history_rows(page).nth(n - 1)).to_contain_text("Corrected by a clinician")


def _download(page, link) -> bytes:
    """GET what a link of the page points at, with the page's session; it must answer 200."""
    url = page.evaluate("a => a.href", link.element_handle())
    response = page.request.get(url)
    assert response.status == 200, f"{url}: {response.status}"
    return response.body()


def _what_a_write_would_change(case: Case) -> dict:
    case.refresh_from_db()
    return {
        "revision": case.revision,
        "mask_version": case.mask_version_id,
        "versions": case.mask_versions.count(),
        "type": (case.tumour_type, case.tumour_type_source),
        "reviews": dict(SegmentationRun.objects.filter(case=case).values_list("pk", "review_status")),
        "diagnoses": list(case.case_diagnoses.values_list("diagnosis_id", flat=True)),
        "writes": AuditEntry.objects.filter(event__in=WRITE_EVENTS).count(),
    }


def _png_image(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_corrections_review_restore_downloads_and_a_read_only_viewer(
    page, live_server, people, record, screenshot
):
    case = record.case
    case_url = f"{live_server.url}/cases/{case.pk}/"
    tiny_unet = SegmentationRun.objects.get(case=case, model_version__name="tiny_unet")

    # 1. The clinician corrects the imported mask twice; no review control for this role.
    sign_in(page, live_server, people.clinician.username)
    page.goto(case_url)
    expect(page.locator(".model-card[data-model=tiny_unet]")).to_contain_text("Pending review")
    expect(page.get_by_role("button", name=re.compile("^(Validate|Reject) the"))).to_have_count(0)
    expect(_history_rows(page)).to_have_count(1)
    expect(_history_rows(page).first).to_contain_text("Imported with the dataset")
    ground_truth = page.locator(".model-card[data-model=ground_truth] .badge")
    expect(ground_truth).to_have_text("Imported with the dataset")
    screenshot("record-01-case-imported")
    _correct_twice(page, live_server, case, screenshot)
    expect(ground_truth).to_have_text("Validated (corrected by a clinician)")
    sign_out(page)

    # 2. The reviewer validates the tiny_unet mask.
    sign_in(page, live_server, people.reviewer.username)
    page.goto(case_url)
    tiny_card = page.locator(".model-card[data-model=tiny_unet]")
    tiny_card.get_by_role("button", name="Validate").click()
    expect(page.locator(".messages")).to_contain_text("The tiny_unet mask is validated.")
    expect(page.locator(".model-card[data-model=tiny_unet]")).to_contain_text(
        f"Validated by a clinician — {people.reviewer.username}"
    )
    screenshot("record-04-reviewed")
    sign_out(page)

    # 3. The admin restores version 1, the expert mask, from the outline history.
    sign_in(page, live_server, people.admin.username)
    page.goto(case_url)
    expect(_history_rows(page)).to_have_count(3)
    page.get_by_role("button", name="Restore version 1").click()
    expect(page.locator(".messages")).to_contain_text("Version 1 restored as version 4")
    rows = _history_rows(page)
    expect(rows).to_have_count(4)
    expect(rows.nth(3)).to_have_attribute("aria-current", "true")
    expect(rows.nth(3)).to_contain_text("Restored by a clinician from an earlier version (version 1)")
    expect(rows.nth(3)).to_contain_text(people.admin.username)
    expect(rows.nth(3)).to_contain_text("In use · feeds the similar-case base")
    for n in (1, 2, 3):  # the others are no longer in use, and can be restored in turn
        expect(rows.nth(n - 1)).not_to_have_attribute("aria-current", "true")
        expect(page.get_by_role("button", name=f"Restore version {n}")).to_be_visible()
    expect(page.get_by_role("button", name="Restore version 4")).to_have_count(0)
    expect(page.locator(".model-card[data-model=ground_truth]")).to_contain_text(people.admin.username)
    # The outline in use is the expert mask's pixels, but a clinician chose it: not "imported" any more.
    expect(ground_truth).to_have_text("Validated (restored by a clinician)")
    screenshot("record-05-restored")

    # 4. Every version and the expert mask download from the page's links.
    masks = {}
    for n in (1, 2, 3, 4):
        body = _download(page, page.get_by_label(f"Version {n} as PNG"))
        assert body.startswith(PNG_SIGNATURE), f"version {n} is not a PNG"
        masks[n] = _png_pixels(body)
        nifti = _download(page, page.get_by_label(f"Version {n} as NIfTI"))
        assert nifti.startswith(GZIP_MAGIC), f"version {n}'s NIfTI is not gzipped"
    in_use = _download(page, page.get_by_label("Download the ground truth mask as PNG"))
    assert in_use.startswith(PNG_SIGNATURE)
    assert masks[1].shape == record.expert.shape == (case.scan.height, case.scan.width)
    assert np.array_equal(masks[1], record.expert)  # the imported expert mask, untouched
    assert np.array_equal(masks[4], masks[1])  # the restore
    assert np.array_equal(_png_pixels(in_use), masks[1])  # what the case uses now
    assert masks[2].any() and masks[3].any()
    assert not np.array_equal(masks[2], masks[3])
    assert not np.array_equal(masks[2], masks[1]) and not np.array_equal(masks[3], masks[1])
    assert masks[2].sum() > masks[3].sum()  # the generous outline, then the tighter one
    assert (masks[3] & record.expert).any() and (masks[2] & record.expert).any()  # both over the lesion
    sign_out(page)

    # 5. The viewer sees the case, its history and its downloads, and no edit control.
    sign_in(page, live_server, people.viewer.username)
    page.goto(case_url)
    expect(page.get_by_role("heading", name=f"Case {case.pk}")).to_be_visible()
    expect(page.locator(".model-card[data-model=tiny_unet]")).to_contain_text("Validated by a clinician")
    expect(_history_rows(page)).to_have_count(4)
    expect(page.get_by_label("Version 1 as PNG")).to_be_visible()
    expect(page.locator("#diagnoses")).to_contain_text("Glioblastoma")
    expect(page.get_by_role("link", name="Correct mask")).to_have_count(0)
    expect(page.locator("#tumour-type form, #type-select")).to_have_count(0)
    expect(page.locator("#diagnoses form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Restore version"))).to_have_count(0)
    expect(page.locator("#mask-history form")).to_have_count(0)
    expect(page.locator("#models form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^(Validate|Reject)"))).to_have_count(0)
    screenshot("record-06-viewer")
    assert _download(page, page.get_by_label("Version 2 as PNG")).startswith(PNG_SIGNATURE)

    # ...and the writes themselves refuse the viewer's session, with a valid CSRF token, changing nothing.
    before = _what_a_write_would_change(case)
    glioblastoma = Diagnosis.objects.get(key="glioblastoma")
    attempt = SegmentationRun.objects.get(case=case, model_version__name="tiny_attention_unet")
    mask_data_url = "data:image/png;base64," + base64.b64encode(_png_image(masks[3])).decode()
    token = csrf_token(page)
    forged = {
        f"/cases/{case.pk}/correct/": {"mask": mask_data_url},
        f"/cases/{case.pk}/masks/2/restore/": {},
        f"/cases/{case.pk}/tumour-type/": {"tumour_type": "meningioma"},
        f"/runs/{attempt.pk}/review/": {"decision": "reject", "reason": "forged"},
        f"/runs/{tiny_unet.pk}/review/": {"decision": "reject"},
        f"/cases/{case.pk}/diagnoses/": {"name": "Astrocytoma"},
        f"/cases/{case.pk}/diagnoses/{glioblastoma.pk}/remove/": {},
    }
    for path, fields in forged.items():
        response = page.request.post(
            live_server.url + path,
            form={"csrfmiddlewaretoken": token, "revision": str(case.revision), **fields},
            headers={"Referer": case_url},
            max_redirects=0,
        )
        assert response.status == 403, f"{path}: {response.status}"
        text = response.text()
        # The role's refusal, not a CSRF failure: the request itself was a valid form post.
        assert "no role that allows this page or action" in text, f"{path}: {text[:300]}"
    after = _what_a_write_would_change(case)
    assert after == before
    assert after["versions"] == 4
    page.reload()
    expect(_history_rows(page)).to_have_count(4)
    assert page.js_errors == []

    # 6. The record and the audit trail: who did each write.
    assert case.mask_version.number == 4 and case.mask_version.source == MaskSource.RESTORED
    assert case.mask_version.restored_from.number == 1
    tiny_unet.refresh_from_db()
    assert tiny_unet.review_status == ReviewStatus.VALIDATED and tiny_unet.reviewed_by == people.reviewer
    on_case = AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Case), object_pk=str(case.pk)
    ).order_by("timestamp", "pk")
    corrected = list(on_case.filter(event="mask.corrected"))
    assert [(e.actor, e.additional_data["version"]) for e in corrected] == [
        (people.clinician, 2),
        (people.clinician, 3),
    ]
    (restored,) = on_case.filter(event="mask.restored")
    assert restored.actor == people.admin
    assert restored.additional_data == {"version": 4, "restored_from": 1}
    (validated,) = AuditEntry.objects.filter(event="run.validated")
    assert validated.actor == people.reviewer and validated.object_pk == str(tiny_unet.pk)
    assert validated.additional_data["case"] == case.pk
    assert AuditEntry.objects.filter(event__in=WRITE_EVENTS).count() == 4
