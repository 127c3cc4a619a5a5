"""POST /api/segmentations/{id}/review/ takes an optional reason; the run's output carries it."""

from __future__ import annotations

import numpy as np
import pytest

from audit.models import AuditEntry
from segmentation.services import REVIEW_REASON_MAX_LENGTH
from segmentation.testing import make_case
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(media_dir, clinician):
    case = make_case(user=clinician, patient="REV-1", size=64)
    mask = np.zeros((64, 64), dtype=bool)
    mask[20:30, 20:30] = True
    return add_finished_run(case, "unet_a", mask)


def test_a_rejection_with_a_reason_is_stored_returned_and_audited(api, clinician, run):
    response = api.post(
        f"/api/segmentations/{run.pk}/review/",
        {"validated": False, "reason": "Outlines the oedema"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["review_status"] == "rejected"
    assert response.json()["review_reason"] == "Outlines the oedema"
    run.refresh_from_db()
    assert run.review_reason == "Outlines the oedema"
    (entry,) = AuditEntry.objects.filter(event__startswith="run.")
    assert (entry.event, entry.actor, entry.object_pk) == ("run.rejected", clinician, str(run.pk))
    assert entry.additional_data["reason"] == "Outlines the oedema"
    detail = api.get(f"/api/cases/{run.case_id}/").json()
    assert detail["segmentations"][0]["review_reason"] == "Outlines the oedema"


def test_the_reason_is_optional(api, run):
    response = api.post(f"/api/segmentations/{run.pk}/review/", {"validated": True}, format="json")
    assert response.status_code == 200 and response.json()["review_reason"] == ""
    assert AuditEntry.objects.get(event__startswith="run.").event == "run.validated"


def test_a_too_long_reason_is_a_400_problem_and_changes_nothing(api, run):
    response = api.post(
        f"/api/segmentations/{run.pk}/review/",
        {"validated": False, "reason": "x" * (REVIEW_REASON_MAX_LENGTH + 1)},
        format="json",
    )
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert "reason" in response.json()["errors"]
    run.refresh_from_db()
    assert run.review_status == "pending" and not AuditEntry.objects.exists()
