"""Honest results (#32, item 5): no tumour or no brain MRI slice means no type suggestion and no similar
cases, on the page and through the API; an outlier outline is flagged on the page and the report; the type
explanation describes the very cases the similar-cases panel shows.

The runs are made finished (tests/web/builders.add_finished_run), so no TensorFlow loads.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from cases.models import TumourType
from cases.readers import read_image
from cases.rendering import png_bytes
from cases.services import case_prepare, cases_save, patients_get_or_create
from clinic.browse import case_best_mask
from ml.data import load_slices, read_records, split_by_patient
from ml.slice_check import SliceReference
from recommender.analysis import MIN_TUMOUR_SHARE, judge_slice
from recommender.models import AnalysisStatus, CaseAnalysis, CaseFeatures, MaskKind
from recommender.ranking import knn_distribution
from recommender.services import case_analyse, case_base_build
from segmentation.testing import make_case, make_case_base, synthetic_case_kwargs, synthetic_slice
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
NON_BRAIN_DICOM = ("CT_small.dcm", "liver_1frame.dcm")


def _photo_like(size: int = 200) -> np.ndarray:
    """A photograph's kind of picture: a sky-to-ground gradient, a sun, a house, texture everywhere."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:size, :size]
    rgb = np.zeros((size, size, 3))
    rgb[..., 2] = 255 - yy * 0.6
    rgb[..., 1] = 120 + 80 * (yy > size * 0.6)
    rgb[..., 0] = 90 + 0.3 * xx
    rgb[(yy - 40) ** 2 + (xx - 150) ** 2 < 400] = (255, 230, 60)
    rgb[100:160, 30:90] = (180, 40, 40)
    rgb += rng.normal(0, 12, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8).mean(axis=-1)


@pytest.fixture
def base(media_dir, clinician):
    cases = make_case_base(n_per_type=7, user=clinician)  # 21: enough for the outlier percentiles
    assert case_base_build(use_embedding=False)["scaler_cases"] == 21
    return cases


def _case_from_bytes(data: bytes, filename: str, patient: str):
    patient_row = patients_get_or_create(identifiers=[patient])[patient]
    prepared = case_prepare(
        image=read_image(data, filename), data=data, filename=filename, patient=patient_row
    )
    return cases_save([prepared])[0]


def _with_probability(run, prob: np.ndarray) -> None:
    """The run's stored probability map (uint8 PNG, as the pipeline stores it)."""
    run.probability_file.save(
        f"prob{run.pk}.png", ContentFile(png_bytes((prob * 255).astype(np.uint8))), save=True
    )


def _assert_withheld(client, api, case, status: str, text: str) -> None:
    """No type suggestion and no similar cases, with the reason, on the page, the panel, the report and
    through the API."""
    case.refresh_from_db()
    assert case.predicted_tumour_type is None and case.tumour_type is None
    assert not CaseFeatures.objects.filter(case=case).exists()
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert text in page and 'class="message warning" role="alert"' in page
    assert "No suggestion: " + text.lower() in page
    panel = client.get(f"/cases/{case.pk}/similar/")
    assert panel["X-Similar-Status"] == status and 'class="similar-card"' not in panel.content.decode()
    report = client.get(f"/cases/{case.pk}/report/").content.decode()
    assert text in report and "similar-table" not in report
    detail = api.get(f"/api/cases/{case.pk}/").json()
    assert detail["analysis"]["status"] == status and detail["analysis"]["message"] == text
    assert detail["predicted_tumour_type"] is None and detail["predicted_type_sources"] is None
    similar = api.get(f"/api/cases/{case.pk}/similar/").json()
    assert similar["status"] == status and similar["results"] == []


def test_a_healthy_slice_gets_no_type_and_no_similar_cases(base, owner_client, api):
    # A head with no lesion: the ensemble's mask is empty, another model outlined 30 pixels of noise and the
    # ensemble's probability map has a faint blob (what made the kidney's 650-px outline).
    image, _ = synthetic_slice(96, radius=0, seed=11)
    case = _case_from_bytes(png_bytes(image), "healthy.png", "HEALTHY")
    speck = np.zeros((96, 96), bool)
    speck[40:45, 40:46] = True
    add_finished_run(case, "unet_a", speck)
    ensemble = add_finished_run(case, "ensemble", np.zeros((96, 96), bool), ensemble=True)
    faint = np.zeros((96, 96))
    faint[30:60, 30:60] = 0.3
    _with_probability(ensemble, faint)

    assert case_analyse(case=case) is None
    assert CaseAnalysis.objects.get(case=case).status == AnalysisStatus.NO_TUMOUR
    # The outline the thumbnail and the correction page start from is the ensemble's (empty), never a
    # region of its probability map that no displayed mask contains.
    assert not case_best_mask(case).any()
    response = owner_client.get(reverse("case-best-mask", args=[case.pk]))
    assert response.status_code == 200
    assert not np.asarray(Image.open(io.BytesIO(response.content))).any()
    _assert_withheld(owner_client, api, case, "no_tumour", "No tumour found by the models")


@pytest.mark.parametrize("name", NON_BRAIN_DICOM)
def test_a_non_brain_dicom_gets_no_type_and_no_similar_cases(base, owner_client, api, settings, name):
    settings.TUMORSITE_SLICE_REFERENCE = str(REPO / "models" / "slice_reference.json")  # the real one
    case = _case_from_bytes((PYDICOM_FILES / name).read_bytes(), name, f"BODY-{name}")
    # The models "found" something in the belly: a plausible blob, as on the abdomen of the issue.
    blob = np.zeros((case.scan.height, case.scan.width), bool)
    blob[case.scan.height // 3 : case.scan.height // 2, case.scan.width // 3 : case.scan.width // 2] = True
    add_finished_run(case, "ensemble", blob, ensemble=True)

    assert case_analyse(case=case) is None
    assert CaseAnalysis.objects.get(case=case).status == AnalysisStatus.NOT_BRAIN_MRI
    _assert_withheld(
        owner_client,
        api,
        case,
        "not_brain_mri",
        "This does not look like a brain MRI slice the models were trained on",
    )


def test_the_shipped_reference_flags_non_brain_images_and_passes_real_brain_slices(figshare_dir):
    data = json.loads((REPO / "models" / "slice_reference.json").read_text())
    reference = SliceReference.from_json(data)
    for name in NON_BRAIN_DICOM:
        pixels = read_image((PYDICOM_FILES / name).read_bytes(), name).pixels
        assert reference.is_unlike(pixels), name
    assert reference.is_unlike(_photo_like())
    # Validation patients (never fitted on): the level is the training slices' 99th percentile, so only a
    # few in a hundred may be flagged.
    val = load_slices(figshare_dir, split_by_patient(read_records(figshare_dir), seed=42)["val"][:100])
    flagged = sum(reference.is_unlike(image) for image in val.images)
    assert flagged <= 5, flagged
    assert data["min_tumour_share"] == pytest.approx(MIN_TUMOUR_SHARE, rel=0.05)


def test_an_outlier_outline_is_flagged_on_the_page_and_the_report(base, owner_client, api):
    kwargs = synthetic_case_kwargs("glioma", 577)
    usual = make_case(patient="USUAL", **kwargs)
    _, lesion = synthetic_slice(96, center=kwargs["center"], radius=kwargs["radius"], seed=577)
    add_finished_run(usual, "ensemble", lesion, ensemble=True)
    assert case_analyse(case=usual) is not None
    assert CaseAnalysis.objects.get(case=usual).flags == []
    assert "Check this outline" not in owner_client.get(f"/cases/{usual.pk}/").content.decode()

    huge = make_case(patient="HUGE", **synthetic_case_kwargs("glioma", 578))
    outline = np.zeros((96, 96), bool)
    outline[15:80, 20:75] = True  # most of the head: larger than any expert outline of the base
    add_finished_run(huge, "ensemble", outline, ensemble=True)
    assert case_analyse(case=huge) is not None
    codes = [f["code"] for f in CaseAnalysis.objects.get(case=huge).flags]
    assert "outlier_log_area_frac" in codes
    for url in (f"/cases/{huge.pk}/", f"/cases/{huge.pk}/report/"):
        html = owner_client.get(url).content.decode()
        assert (
            'data-flag="outlier_log_area_frac"' in html
            and "Unusual outline: its size relative to the head" in html
        )
    assert "outlier_log_area_frac" in [
        f["code"] for f in api.get(f"/api/cases/{huge.pk}/").json()["analysis"]["flags"]
    ]


def test_the_type_explanation_describes_the_cases_the_panel_shows(base, owner_client, api):
    kwargs = synthetic_case_kwargs("pituitary", 590)
    case = make_case(patient="EXPLAIN", **kwargs)
    _, lesion = synthetic_slice(96, center=kwargs["center"], radius=kwargs["radius"], seed=590)
    add_finished_run(case, "ensemble", lesion, ensemble=True)
    case_analyse(case=case)
    case.refresh_from_db()
    assert case.predicted_tumour_type is not None
    sources = case.predicted_type_sources

    panel = owner_client.get(f"/cases/{case.pk}/similar/")
    rows = panel.context["rows"]
    shown = [(r["match"].case_id, r["match"].tumour_type, r["match"].distance) for r in rows]
    # Same cases, same order, same count as the vote that made the suggestion...
    assert [c for c, _, _ in shown] == [n["case"] for n in sources["neighbours"]]
    assert panel.content.decode().count('class="similar-card"') == len(sources["neighbours"])
    # ...and the vote the explanation quotes is the one these cases give.
    vote = knn_distribution([d for _, _, d in shown], [t for _, t, _ in shown], k=len(shown))
    assert vote == pytest.approx(sources["similar_cases"], abs=1e-3)
    page = owner_client.get(f"/cases/{case.pk}/").content.decode()
    leader = max(sorted(sources["similar_cases"]), key=sources["similar_cases"].get)
    assert f"From similar cases: {TumourType(leader).label}" in page
    assert f"(the {len(shown)} shown below: " in page
    for tumour_type in {t for _, t, _ in shown}:
        label = TumourType(tumour_type).label
        assert f"{sum(t == tumour_type for _, t, _ in shown)} {label}" in page
    voters = api.get(f"/api/cases/{case.pk}/").json()["predicted_type_sources"]["neighbours"]
    assert [v["case"] for v in voters] == [c for c, _, _ in shown]
    report = owner_client.get(f"/cases/{case.pk}/report/")
    assert [r["match"].case_id for r in report.context["similar"]] == [c for c, _, _ in shown]


def test_a_recorded_type_gets_the_ranked_similar_cases(base, owner_client):
    case = make_case(patient="RECORDED", tumour_type="glioma", **synthetic_case_kwargs("glioma", 591))
    _, lesion = synthetic_slice(
        96, **{k: v for k, v in synthetic_case_kwargs("glioma", 591).items() if k != "size"}
    )
    add_finished_run(case, "ensemble", lesion, ensemble=True)
    case_analyse(case=case)
    panel = owner_client.get(f"/cases/{case.pk}/similar/")
    assert panel["X-Similar-Status"] == "ready" and len(panel.context["rows"]) == 6
    assert 'data-similar="suggestion"' not in panel.content.decode()


@pytest.fixture
def api(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    return client


def test_an_ai_speck_below_half_the_smallest_training_tumour_is_no_tumour_unless_validated():
    image, _ = synthetic_slice(96, radius=0)
    speck = np.zeros((96, 96), bool)
    speck[50:52, 50:52] = True  # 4 of 9216 px: 0.00043 of the slice, under MIN_TUMOUR_SHARE
    assert 4 / speck.size < MIN_TUMOUR_SHARE
    assert judge_slice(image, speck, MaskKind.PRIMARY)[0] == AnalysisStatus.NO_TUMOUR
    assert judge_slice(image, speck, MaskKind.VALIDATED)[0] == AnalysisStatus.TUMOUR
    assert judge_slice(image, np.zeros_like(speck), MaskKind.VALIDATED)[0] == AnalysisStatus.NO_TUMOUR
    blob = np.zeros((96, 96), bool)
    blob[40:50, 40:50] = True
    assert judge_slice(image, blob, MaskKind.PRIMARY)[0] == AnalysisStatus.TUMOUR
