"""The patient's history plots studies by date, not slices (issue #32, item 3): one bar per study, its
largest tumour area over its slices; the page lists each study's slices in slice order."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from cases.services import case_create, case_ground_truth_set
from tests.cases.builders import dicom_bytes

pytestmark = pytest.mark.django_db


def _slice(*, study_uid: str, study_date: str, instance: int) -> bytes:
    pixels = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 5 + instance).astype(np.uint16)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))  # spacing 0.5 x 0.75 mm: 0.375 mm² a pixel
    ds.StudyInstanceUID, ds.StudyDate, ds.InstanceNumber = study_uid, study_date, instance
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, 3.0 * instance]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _outlined(data: bytes, user, tumour_px: int):
    case = case_create(image_file=data, filename="s.dcm", user=user)
    mask = np.zeros((6, 8), bool)
    mask.flat[:tumour_px] = True
    case_ground_truth_set(case=case, mask=mask, user=user)
    return case


def test_the_patient_page_plots_one_bar_per_study_by_study_date_with_its_largest_area(owner, owner_client):
    # The later study is sent first: the chart follows the study dates, not the upload order.
    later = [
        _outlined(_slice(study_uid="1.2.3.20", study_date="20240301", instance=i), owner, px)
        for i, px in ((3, 4), (1, 10), (2, 6))
    ]
    earlier = [
        _outlined(_slice(study_uid="1.2.3.10", study_date="20230115", instance=i), owner, px)
        for i, px in ((1, 8), (2, 16))
    ]
    assert len({c.patient_id for c in later + earlier}) == 1
    response = owner_client.get(f"/patients/{later[0].patient_id}/")
    assert response.status_code == 200
    chart = response.context["chart"]
    assert chart["unit"] == "mm²"
    bars = [(str(b["date"]), b["slices"], b["case_id"], b["value"]) for b in chart["bars"]]
    assert bars == [
        ("2023-01-15", 2, earlier[1].pk, pytest.approx(16 * 0.375)),
        ("2024-03-01", 3, later[1].pk, pytest.approx(10 * 0.375)),
    ]
    assert [b["percent"] for b in chart["bars"]] == [100, pytest.approx(62.5)]
    studies = response.context["studies"]
    assert [[row["case"].slice_number for row in s["rows"]] for s in studies] == [[1, 2], [1, 2, 3]]
    assert {s["dated_by"] for s in studies} == {"study date"}
    html = response.content.decode()
    assert "Study of 15 Jan 2023" in html and "Study of 1 Mar 2024" in html
    assert "2 studies and 5 slices" in html
