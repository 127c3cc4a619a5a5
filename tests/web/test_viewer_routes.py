"""The viewer's data: the slice at full precision (stored units, before any window) with its window
presets, and a run's probability map; both audited like the full image and the masks."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from cases.models import Case
from cases.rendering import png_bytes
from cases.services import case_create
from clinic.views.pictures import viewer_slice, viewer_slices
from segmentation.testing import make_case, synthetic_slice
from tests.audit.conftest import written
from tests.cases.builders import dicom_bytes
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db


def _values(response) -> np.ndarray:
    height, width = int(response["X-Height"]), int(response["X-Width"])
    return np.frombuffer(response.content, dtype="<f4").reshape(height, width)


@pytest.fixture
def dicom_case(owner, media_dir):
    """A 12-bit MR DICOM slice (values 0..3520 after a rescale of 2, -100) with a window and a spacing."""
    image, _ = synthetic_slice(64, center=(30, 30), radius=6)
    raw = image.astype(np.uint16) * 8
    case = case_create(
        image_file=dicom_bytes(raw, rescale=(2, -100), window=(1500, 1000), spacing=(0.5, 0.75)),
        filename="slice.dcm",
        user=owner,
        patient_identifier="VIEWER-1",
    )
    return case, raw.astype(np.float32) * 2 - 100


def test_the_pixels_are_the_stored_values_before_the_dicom_window(owner_client, dicom_case):
    case, expected = dicom_case
    response = owner_client.get(reverse("case-pixels", args=[case.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    # The 8-bit picture is windowed (1000..2000 clipped); these are the rescaled values themselves.
    np.testing.assert_array_equal(_values(response), expected)
    assert response["X-Value-Range"] == f"{expected.min():.9g} {expected.max():.9g}"
    assert (response["X-Units"], response["X-Invert"]) == ("stored value", "0")


def test_the_presets_are_the_dicom_window_the_full_range_and_a_brain_window(owner_client, dicom_case):
    case, expected = dicom_case
    presets = json.loads(owner_client.get(reverse("case-pixels", args=[case.pk]))["X-Windows"])
    assert [p["label"] for p in presets] == ["DICOM window", "Full range", "Brain"]
    assert (presets[0]["center"], presets[0]["width"]) == (1500.0, 1000.0)
    low, high = float(expected.min()), float(expected.max())
    # PS3.3 C.11.2.1.2.1: c - 0.5 - (w - 1)/2 is shown black and c - 0.5 + (w - 1)/2 white.
    full = presets[1]
    assert full["center"] - 0.5 - (full["width"] - 1) / 2 == pytest.approx(low)
    assert full["center"] - 0.5 + (full["width"] - 1) / 2 == pytest.approx(high)
    head = expected[expected > low]
    brain = presets[2]
    assert brain["center"] - 0.5 - (brain["width"] - 1) / 2 == pytest.approx(np.percentile(head, 1))
    assert brain["center"] - 0.5 + (brain["width"] - 1) / 2 == pytest.approx(np.percentile(head, 99))


def test_a_ct_slice_is_in_hounsfield_units_with_the_usual_brain_window(owner_client, owner, media_dir):
    raw = (np.arange(64 * 64).reshape(64, 64) % 2000).astype(np.uint16)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(raw, rescale=(1, -1024), window=None, spacing=None)))
    ds.Modality = "CT"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    case = case_create(image_file=buffer.getvalue(), filename="ct.dcm", user=owner)
    response = owner_client.get(reverse("case-pixels", args=[case.pk]))
    assert response["X-Units"] == "HU"
    np.testing.assert_array_equal(_values(response), raw.astype(np.float32) - 1024)
    presets = json.loads(response["X-Windows"])
    assert presets[-1] == {"label": "Brain", "center": 40.0, "width": 80.0}


def test_a_monochrome1_slice_says_it_is_shown_inverted(owner_client, owner, media_dir):
    raw = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    case = case_create(
        image_file=dicom_bytes(raw, window=None, photometric="MONOCHROME1"), filename="m1.dcm", user=owner
    )
    response = owner_client.get(reverse("case-pixels", args=[case.pk]))
    assert response["X-Invert"] == "1"
    np.testing.assert_array_equal(_values(response), raw.astype(np.float32))  # the values, not flipped


def test_a_png_slice_is_served_as_its_grey_levels(owner_client, segmented_case):
    response = owner_client.get(reverse("case-pixels", args=[segmented_case.pk]))
    image, _ = synthetic_slice(96, center=(48, 48), radius=10, seed=3)
    np.testing.assert_array_equal(_values(response), image.astype(np.float32))
    assert response["X-Units"] == "grey level"
    assert [p["label"] for p in json.loads(response["X-Windows"])] == ["Full range", "Brain"]


def _with_probability(run, probability: np.ndarray):
    run.probability_file.save(
        f"run{run.pk}_prob.png", ContentFile(png_bytes(np.round(probability * 255).astype(np.uint8)))
    )
    return run


def test_the_probability_map_is_served_as_its_stored_png(owner_client, segmented_case):
    run = segmented_case.segmentation_runs.get(model_version__name="ensemble")
    url = reverse("run-probability", args=[segmented_case.pk, run.pk])
    assert owner_client.get(url).status_code == 404  # none stored yet
    probability = np.linspace(0, 1, 96 * 96).reshape(96, 96)
    _with_probability(run, probability)
    response = owner_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    served = np.asarray(Image.open(io.BytesIO(response.content)))
    np.testing.assert_array_equal(served, np.round(probability * 255).astype(np.uint8))


def test_a_run_of_another_case_is_not_found(owner_client, segmented_case, owner):
    other = make_case(user=owner, patient="WEB-2", seed=4)
    run = segmented_case.segmentation_runs.first()
    assert owner_client.get(reverse("run-probability", args=[other.pk, run.pk])).status_code == 404


def test_the_viewer_slice_names_the_primary_models_probability_and_the_spacing(segmented_case, settings):
    settings.TUMORSITE_PRIMARY_MODEL = "ensemble"
    entry = viewer_slice(segmented_case)
    assert entry["probability"] is None  # no map stored yet
    run = _with_probability(
        segmented_case.segmentation_runs.get(model_version__name="ensemble"), np.zeros((96, 96))
    )
    entry = viewer_slice(segmented_case)
    assert entry["probability"] == reverse("run-probability", args=[segmented_case.pk, run.pk])
    assert entry["pixels"] == reverse("case-pixels", args=[segmented_case.pk])
    assert entry["mask"] == reverse("case-best-mask", args=[segmented_case.pk])
    assert entry["spacing"] == {"row": None, "col": None}
    assert (entry["width"], entry["height"]) == (96, 96)


def test_a_studys_slice_list_takes_four_queries_whatever_its_length(owner, django_assert_max_num_queries):
    """Each slice's entry as viewer_slice makes it; the primary model and every case's runs fetched once."""
    cases = []
    for seed in range(5):
        case = make_case(user=owner, patient="WEB-STACK", seed=seed)
        _, lesion = synthetic_slice(96, center=(48, 48), radius=10, seed=seed)
        if seed % 2:
            _with_probability(add_finished_run(case, "ensemble", lesion, ensemble=True), np.zeros((96, 96)))
        cases.append(Case.objects.get(pk=case.pk))
    expected = [viewer_slice(case) for case in cases]
    assert [bool(e["probability"]) for e in expected] == [False, True, False, True, False]
    with django_assert_max_num_queries(4):
        assert viewer_slices(cases) == expected


def test_a_slice_without_an_outline_names_no_mask(owner):
    case = make_case(user=owner, patient="WEB-3", seed=5)
    assert viewer_slice(case)["mask"] is None


def test_both_reads_are_audited_for_a_viewer(segmented_case, viewer):
    run = _with_probability(segmented_case.segmentation_runs.first(), np.zeros((96, 96)))
    client = Client()
    client.force_login(viewer)
    with written() as entries:
        assert client.get(reverse("case-pixels", args=[segmented_case.pk])).status_code == 200
        assert client.get(reverse("run-probability", args=[segmented_case.pk, run.pk])).status_code == 200
    assert [(e.event, e.object_pk, e.actor) for e in entries] == [
        ("image.downloaded", str(segmented_case.pk), viewer),
        ("mask.downloaded", str(run.pk), viewer),
    ]


def test_a_second_ai_run_leaves_the_first_runs_map_where_it_was(owner_client, segmented_case):
    """Each run's map has its own address: the heat-map of one model never shows another's."""
    first = _with_probability(
        segmented_case.segmentation_runs.get(model_version__name="unet_a"), np.ones((96, 96))
    )
    _, lesion = synthetic_slice(96, center=(20, 20), radius=5, seed=3)
    second = _with_probability(add_finished_run(segmented_case, "unet_b", lesion), np.zeros((96, 96)))
    one = owner_client.get(reverse("run-probability", args=[segmented_case.pk, first.pk])).content
    two = owner_client.get(reverse("run-probability", args=[segmented_case.pk, second.pk])).content
    assert np.asarray(Image.open(io.BytesIO(one))).min() == 255
    assert np.asarray(Image.open(io.BytesIO(two))).max() == 0
