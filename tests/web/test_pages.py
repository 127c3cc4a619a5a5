"""The clinician's pages render what the record holds, and their actions call the services."""

import base64
import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from cases.models import Case, CaseDiagnosis, Diagnosis, MaskSource, TypeSource
from cases.selectors import case_ground_truth_mask
from cases.services import case_create
from recommender.services import case_base_build, case_features_compute, diagnosis_record
from segmentation.models import ReviewStatus, SegmentationRun
from segmentation.testing import make_case, make_case_base, synthetic_case_kwargs, synthetic_slice
from tests.cases.builders import dicom_bytes
from tests.web.builders import add_finished_run, current_revision, mask_data_url

pytestmark = pytest.mark.django_db


def _png(response) -> np.ndarray:
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    return np.asarray(
        Image.open(
            io.BytesIO(b"".join(response.streaming_content) if response.streaming else response.content)
        )
    )


def test_the_case_list_shows_cases_newest_first_with_their_mask_state(owner_client, segmented_case):
    newer = make_case(patient="WEB-NEW", seed=1, tumour_type="glioma", ground_truth=True)
    html = owner_client.get("/").content.decode()
    assert html.index(f"Case {newer.pk}<") < html.index(f"Case {segmented_case.pk}<")
    assert "AI mask awaiting review" in html and "Imported ground truth" in html
    assert f'src="/cases/{segmented_case.pk}/thumbnail.png"' in html


def test_the_case_list_searches_and_filters(owner_client, segmented_case):
    glioma = make_case(patient="WEB-GLIOMA", seed=1, tumour_type="glioma", ground_truth=True)
    diagnosis = Diagnosis.objects.create(name="Atypical meningioma", key="atypical meningioma")
    CaseDiagnosis.objects.create(case=segmented_case, diagnosis=diagnosis)

    def ids(query):
        return [row["case"].pk for row in owner_client.get("/" + query).context["rows"]]

    assert ids("?q=web-glio") == [glioma.pk]
    assert ids("?q=MENINGIOMA") == [segmented_case.pk]
    assert ids("?q=méningioma atypical") == [] and ids("?q=atypical") == [segmented_case.pk]
    assert ids("?tumour_type=glioma") == [glioma.pk]
    assert ids("?status=review") == [segmented_case.pk]
    assert ids("?status=imported") == [glioma.pk]
    assert ids("?status=processing") == []


def test_the_case_list_is_paginated(owner_client, media_dir):
    for i in range(21):
        make_case(patient=f"PAGE-{i}", seed=i)
    first, second = owner_client.get("/"), owner_client.get("/?page=2")
    assert len(first.context["rows"]) == 20 and len(second.context["rows"]) == 1
    assert "Page 1 of 2" in first.content.decode()


@pytest.mark.parametrize("name", ["upload/", "patients/", "diagnoses/"])
def test_the_simple_pages_render(owner_client, name):
    assert owner_client.get(f"/{name}").status_code == 200


def test_the_case_page_and_its_state(owner_client, segmented_case):
    html = owner_client.get(f"/cases/{segmented_case.pk}/").content.decode()
    for text in (
        'id="viewer-canvas"',
        'id="opacity"',
        "Filled",
        "Contour",
        "Similar past cases",
        "Record a diagnosis",
        'list="diagnosis-options"',
        "Correct mask",
        "Printable report",
    ):
        assert text in html
    state = owner_client.get(f"/cases/{segmented_case.pk}/state.json").json()
    assert state["status"] == "done" and state["mask_state"]["code"] == "pending"
    runs = {s["model"]: s for s in state["segmentations"]}
    assert set(runs) == {"unet_a", "ensemble"}
    assert runs["unet_a"]["mask_png"] == f"/cases/{segmented_case.pk}/runs/{runs['unet_a']['id']}/mask.png"
    assert runs["unet_a"]["area_px"] > 0 and runs["unet_a"]["area_mm2"] is None
    assert runs["unet_a"]["review_status"] == "pending" and runs["unet_a"]["reviewed_by"] is None


def test_the_slice_and_overlay_pictures(owner_client, segmented_case):
    assert _png(owner_client.get(f"/cases/{segmented_case.pk}/slice.png")).shape == (96, 96)
    thumb = _png(owner_client.get(f"/cases/{segmented_case.pk}/thumbnail.png"))
    assert thumb.ndim == 3 and (thumb[:, :, 0] > thumb[:, :, 2] + 100).any()  # a red outline is drawn
    assert _png(owner_client.get(f"/cases/{segmented_case.pk}/overlay.png")).shape == (96, 96, 3)


def test_a_clinician_validates_and_rejects_ai_masks(owner_client, owner, segmented_case):
    unet, ensemble = (
        segmented_case.segmentation_runs.get(model_version__name=n) for n in ("unet_a", "ensemble")
    )
    owner_client.post(f"/runs/{unet.pk}/review/", {"decision": "validate"})
    response = owner_client.post(f"/runs/{ensemble.pk}/review/", {"decision": "reject"}, follow=True)
    assert "The ensemble mask is rejected." in response.content.decode()
    unet.refresh_from_db(), ensemble.refresh_from_db()
    assert (unet.review_status, unet.reviewed_by) == (ReviewStatus.VALIDATED, owner) and unet.reviewed_at
    assert ensemble.review_status == ReviewStatus.REJECTED
    state = owner_client.get(f"/cases/{segmented_case.pk}/state.json").json()
    assert {s["model"]: s["reviewed_by"] for s in state["segmentations"]} == {
        "unet_a": "owner",
        "ensemble": "owner",
    }
    assert state["mask_state"]["code"] == "validated"


def test_saving_a_correction_stores_the_ground_truth_and_marks_it_validated(
    owner_client, owner, segmented_case
):
    drawn = np.zeros((96, 96), bool)
    drawn[30:50, 40:70] = True
    response = owner_client.post(
        f"/cases/{segmented_case.pk}/correct/",
        {"mask": mask_data_url(drawn), "revision": current_revision(segmented_case)},
        follow=True,
    )
    assert "Corrected mask saved" in response.content.decode()
    case = Case.objects.get(pk=segmented_case.pk)
    assert case.mask_source == MaskSource.CORRECTED and case.mask_updated_by == owner and case.mask_updated_at
    assert np.array_equal(case_ground_truth_mask(case=case), drawn)
    assert all(r.mask_file for r in case.segmentation_runs.all())  # the AI masks are kept
    state = owner_client.get(f"/cases/{case.pk}/state.json").json()
    assert state["mask_state"] == {"code": "corrected", "label": "Corrected by a clinician · validated"}
    assert state["ground_truth"]["updated_by"] == "owner" and state["ground_truth"]["area_px"] == 600
    assert np.array_equal(_png(owner_client.get(f"/cases/{case.pk}/best-mask.png")) > 0, drawn)


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "No corrected mask was sent"),
        ("data:image/png;base64,!!!", "damaged"),
        ("data:image/png;base64," + base64.b64encode(b"not a png").decode(), "could not be read"),
    ],
)
def test_a_bad_correction_is_refused_with_a_message(owner_client, segmented_case, value, message):
    response = owner_client.post(
        f"/cases/{segmented_case.pk}/correct/",
        {"mask": value, "revision": current_revision(segmented_case)},
        follow=True,
    )
    assert message in response.content.decode()
    assert Case.objects.get(pk=segmented_case.pk).mask_source is None


def test_an_empty_or_wrongly_sized_correction_is_refused(owner_client, segmented_case):
    revision = current_revision(segmented_case)
    empty = owner_client.post(
        f"/cases/{segmented_case.pk}/correct/",
        {"mask": mask_data_url(np.zeros((96, 96), bool)), "revision": revision},
        follow=True,
    )
    assert "The corrected mask is empty" in empty.content.decode()
    small = owner_client.post(
        f"/cases/{segmented_case.pk}/correct/",
        {"mask": mask_data_url(np.ones((10, 12), bool)), "revision": revision},
        follow=True,
    )
    assert "The corrected mask is 12x10; the slice is 96x96." in small.content.decode()


def test_masks_download_as_png_and_nifti_with_the_spacing(owner_client, segmented_case):
    scan = segmented_case.scan
    scan.pixel_spacing_mm, scan.pixel_spacing_col_mm = 0.5, 0.7
    scan.save()
    run = segmented_case.segmentation_runs.get(model_version__name="unet_a")
    png = owner_client.get(f"/cases/{segmented_case.pk}/runs/{run.pk}/mask.png")
    assert png["Content-Disposition"] == f'attachment; filename="case{segmented_case.pk}_unet_a_mask.png"'
    mask = _png(png) > 0
    assert mask.sum() == run.area_px

    nifti = owner_client.get(f"/cases/{segmented_case.pk}/runs/{run.pk}/mask.nii.gz")
    assert nifti["Content-Disposition"].endswith('.nii.gz"')
    image = nib.Nifti1Image.from_bytes(gzip.decompress(nifti.content))
    assert image.shape == (96, 96, 1) and image.header.get_zooms() == pytest.approx((0.7, 0.5, 1.0))
    assert image.header.get_xyzt_units()[0] == "mm"
    assert np.array_equal(np.asarray(image.dataobj)[:, :, 0].T > 0, mask)
    assert owner_client.get(f"/cases/{segmented_case.pk}/mask.png").status_code == 404  # no ground truth yet


def test_a_nifti_without_spacing_says_the_unit_is_unknown(owner_client, media_dir):
    case = make_case(patient="GT", seed=2, ground_truth=True, tumour_type="glioma")
    image = nib.Nifti1Image.from_bytes(
        gzip.decompress(owner_client.get(f"/cases/{case.pk}/mask.nii.gz").content)
    )
    assert image.header.get_zooms() == (1.0, 1.0, 1.0) and image.header.get_xyzt_units()[0] == "unknown"
    assert np.asarray(image.dataobj).sum() == case_ground_truth_mask(case=case).sum()


def test_recording_diagnoses_says_what_happened_in_the_catalogue(owner_client, owner, segmented_case):
    url = f"/cases/{segmented_case.pk}/diagnoses/"
    new = owner_client.post(
        url, {"name": "Pituitary  macroadénoma", "revision": current_revision(segmented_case)}, follow=True
    ).content.decode()
    assert "New diagnosis added to the catalogue: “Pituitary macroadénoma”." in new
    entry = Diagnosis.objects.get()
    assert (
        entry.added_automatically and entry.created_by == owner and entry.first_case_id == segmented_case.pk
    )

    other = make_case(patient="WEB-2", seed=4)
    near = owner_client.post(
        f"/cases/{other.pk}/diagnoses/",
        {"name": "pituitary macroadenomma", "revision": current_revision(other)},
        follow=True,
    ).content.decode()
    assert "“pituitary macroadenomma” matched the existing catalogue entry “Pituitary macroadénoma”" in near
    assert Diagnosis.objects.count() == 1 and entry.case_diagnoses.count() == 2
    refused = owner_client.post(
        url, {"name": " ?! ", "revision": current_revision(segmented_case)}, follow=True
    )
    assert "A diagnosis needs" in refused.content.decode()

    catalogue = owner_client.get("/diagnoses/").content.decode()
    assert "Pituitary macroadénoma" in catalogue and "added from a case" in catalogue
    detail = owner_client.get(f"/diagnoses/{entry.pk}/").content.decode()
    assert f"Case {segmented_case.pk}<" in detail and f"Case {other.pk}<" in detail


def test_the_clinician_confirms_or_changes_the_tumour_type(owner_client, segmented_case):
    sources = {
        "similar_cases": {"glioma": 0.6, "meningioma": 0.4},
        "classifier": {"glioma": 0.866, "meningioma": 0.1, "pituitary": 0.034},
        "classifier_weight": 0.75,
    }
    Case.objects.filter(pk=segmented_case.pk).update(
        predicted_tumour_type="glioma",
        predicted_confidence=0.8,
        tumour_type="glioma",
        tumour_type_source=TypeSource.PREDICTED,
        predicted_type_sources=sources,
    )
    html = owner_client.get(f"/cases/{segmented_case.pk}/").content.decode()
    assert "Suggested (not recorded): <strong>Glioma</strong>, confidence 80%" in html
    # A prediction is never shown as recorded, nor chosen in the form for the clinician.
    assert '<strong id="type-current">not recorded yet</strong>' in html
    assert '<option value="" selected>Choose a type…</option>' in html
    assert '<option value="glioma" selected>' not in html
    refused = owner_client.post(
        f"/cases/{segmented_case.pk}/tumour-type/",
        {"tumour_type": "", "revision": current_revision(segmented_case)},
        follow=True,
    )
    assert "Choose a tumour type before saving." in refused.content.decode()
    assert Case.objects.get(pk=segmented_case.pk).tumour_type_source == TypeSource.PREDICTED
    what = "From similar cases: Glioma 60% · image classifier: Glioma 87% (weighs 75%)"
    assert what in html
    assert what in owner_client.get(f"/cases/{segmented_case.pk}/report/").content.decode()
    assert owner_client.get(f"/cases/{segmented_case.pk}/state.json").json()["type_sources"] == what
    response = owner_client.post(
        f"/cases/{segmented_case.pk}/tumour-type/",
        {"tumour_type": "meningioma", "revision": current_revision(segmented_case)},
        follow=True,
    )
    assert "Tumour type recorded: Meningioma." in response.content.decode()
    case = Case.objects.get(pk=segmented_case.pk)
    assert (case.tumour_type, case.tumour_type_source) == ("meningioma", TypeSource.CLINICIAN)
    html = response.content.decode()
    assert '<strong id="type-current">Meningioma</strong>' in html
    assert '<option value="meningioma" selected>' in html and '<option value="" selected>' not in html
    assert (
        "Unknown tumour type"
        in owner_client.post(
            f"/cases/{case.pk}/tumour-type/", {"tumour_type": "x", "revision": case.revision}, follow=True
        ).content.decode()
    )


def test_the_patient_page_shows_each_case_with_its_area(owner_client, segmented_case):
    later = make_case(patient="WEB-1", seed=5, ground_truth=True, tumour_type="glioma")
    response = owner_client.get(f"/patients/{segmented_case.patient_id}/")
    rows = response.context["timeline"]
    assert [r["case"].pk for r in rows] == [segmented_case.pk, later.pk]  # oldest first
    assert (
        rows[0]["area"]["area_px"]
        == segmented_case.segmentation_runs.get(model_version__name="ensemble").area_px
    )
    assert rows[1]["area"]["area_px"] == case_ground_truth_mask(case=later).sum()
    assert "px</strong>" in response.content.decode()
    chart = response.context["chart"]
    assert chart["unit"] == "pixels" and [b["case_id"] for b in chart["bars"]] == [
        segmented_case.pk,
        later.pk,
    ]
    assert max(b["percent"] for b in chart["bars"]) == 100


def test_the_report_lists_the_models_the_measurements_and_the_diagnoses(owner_client, segmented_case, owner):
    diagnosis_record(case=segmented_case, name="Meningioma WHO grade I", user=owner)
    html = owner_client.get(f"/cases/{segmented_case.pk}/report/").content.decode()
    for text in (
        "Case report: case",
        "Tumour area",
        "unet_a",
        "ensemble",
        "Pending review",
        "Meningioma WHO grade I",
        "Similar past cases",
        f"/cases/{segmented_case.pk}/overlay.png",
        'media="print"',
    ):
        assert text in html
    assert "agreement between the models" not in html  # the fixture's runs recorded none

    SegmentationRun.objects.filter(case=segmented_case, model_version__name="ensemble").update(
        agreement=0.31, agreement_flagged=True
    )
    html = owner_client.get(f"/cases/{segmented_case.pk}/report/").content.decode()
    assert "agreement between the models 0.31: the models disagree, check this outline" in html


def test_a_missing_case_is_a_404(owner_client):
    assert owner_client.get("/cases/999999/").status_code == 404
    assert owner_client.get("/cases/999999/state.json").status_code == 404


def test_an_imported_case_has_no_segmentation_to_wait_for(owner_client, media_dir):
    case = make_case(patient="IMPORTED", seed=6, ground_truth=True, tumour_type="meningioma")
    state = owner_client.get(f"/cases/{case.pk}/state.json").json()
    assert state["status"] == "none" and state["segmentations"] == []
    assert state["mask_state"]["code"] == "imported" and state["ground_truth"]["source"] == "imported"


def test_a_dicom_case_shows_its_slice_and_areas_in_mm2(owner_client, owner, media_dir):
    image, lesion = synthetic_slice(96, center=(40, 50), radius=9)
    case = case_create(
        image_file=dicom_bytes(image.astype(np.uint16) * 16, spacing=(0.5, 0.75)),
        filename="slice.dcm",
        user=owner,
        patient_identifier="DICOM-1",
    )
    add_finished_run(case, "unet_a", lesion)
    assert _png(owner_client.get(f"/cases/{case.pk}/slice.png")).shape == (96, 96)
    assert "pixel spacing 0.500 mm" in owner_client.get(f"/cases/{case.pk}/").content.decode()
    state = owner_client.get(f"/cases/{case.pk}/state.json").json()
    assert state["spacing_known"] and state["segmentations"][0]["area_mm2"] == pytest.approx(
        lesion.sum() * 0.375
    )
    report = owner_client.get(f"/cases/{case.pk}/report/").content.decode()
    assert f"{lesion.sum() * 0.375:.1f} mm²" in report


def test_thumbnails_are_revalidated_not_redrawn_until_the_case_changes(owner_client, owner, segmented_case):
    url = f"/cases/{segmented_case.pk}/thumbnail.png"
    tag = owner_client.get(url)["ETag"]
    assert owner_client.get(url, HTTP_IF_NONE_MATCH=tag).status_code == 304
    run = segmented_case.segmentation_runs.first()
    owner_client.post(f"/runs/{run.pk}/review/", {"decision": "validate"})
    assert owner_client.get(url, HTTP_IF_NONE_MATCH=tag).status_code == 200


def test_the_similar_cases_panel_shows_each_match_with_its_outline_state(owner_client, media_dir):
    make_case_base(n_per_type=3)
    case_base_build(use_embedding=False)
    query = make_case(
        patient="QUERY", ground_truth=True, tumour_type="glioma", **synthetic_case_kwargs("glioma", 77)
    )
    pending = owner_client.get(f"/cases/{query.pk}/similar/")
    assert pending["X-Similar-Status"] == "pending" and "being described" in pending.content.decode()

    case_features_compute(case=query, use_embedding=False)
    response = owner_client.get(f"/cases/{query.pk}/similar/")
    assert response["X-Similar-Status"] == "ready"
    rows = response.context["rows"]
    assert len(rows) == 6 and rows[0]["match"].tumour_type == "glioma"
    assert all(r["case"].patient_id != query.patient_id for r in rows)
    html = response.content.decode()
    assert (
        html.count('class="similar-card"') == 6
        and "% similar" in html
        and "Why: same tumour type (glioma)" in html
    )
    assert "Imported ground truth" in html and "Glioma" in html
    report = owner_client.get(f"/cases/{query.pk}/report/").content.decode()
    assert report.count("Imported ground truth") >= 5
