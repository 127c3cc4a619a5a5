"""The case page of one slice of a study hands the viewer every slice of the study, in slice order, to
scroll through (issue #32, items 1 and 4); a case alone in its study gets no list."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from cases.services import case_create
from tests.cases.builders import dicom_bytes

pytestmark = pytest.mark.django_db


def _slice(instance: int, z: float) -> bytes:
    pixels = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 5 + instance).astype(np.uint16)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    ds.StudyInstanceUID, ds.InstanceNumber = "1.2.826.0.1.3680043.8.498.77", instance
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, z]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_slice_of_a_study_lists_the_studys_slices_in_order_for_the_viewer(owner, owner_client):
    # Sent out of order: the list follows the position along the slice normal.
    cases = {
        z: case_create(image_file=_slice(n, z), filename="s.dcm", user=owner)
        for n, z in ((1, 5.0), (2, -2.5), (3, 0.0))
    }
    response = owner_client.get(f"/cases/{cases[0.0].pk}/")
    slices = response.context["viewer_slices"]
    assert [s["case_id"] for s in slices] == [cases[-2.5].pk, cases[0.0].pk, cases[5.0].pk]
    assert slices[1]["label"] == f"case {cases[0.0].pk}"
    assert slices[0]["pixels"] == f"/cases/{cases[-2.5].pk}/pixels.f32"
    assert {s["spacing"]["row"] for s in slices} == {0.5}
    assert 'id="viewer-slices"' in response.content.decode()


def test_a_case_alone_in_its_study_gets_no_list(owner, owner_client):
    case = case_create(image_file=_slice(1, 0.0), filename="s.dcm", user=owner)
    response = owner_client.get(f"/cases/{case.pk}/")
    assert response.context["viewer_slices"] is None
    assert 'id="viewer-slices"' not in response.content.decode()
