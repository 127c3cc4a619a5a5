"""The reviewer's reason: given on the page's reject form, kept with the review, audited, and shown on the
case page's state and in the report."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from audit.models import AuditEntry
from segmentation.services import REVIEW_REASON_MAX_LENGTH

pytestmark = pytest.mark.django_db

REASON = "Misses the enhancing rim <b>lateral</b>"


def _ensemble(case):
    return case.segmentation_runs.get(model_version__name="ensemble")


def test_a_rejection_with_a_reason_is_kept_audited_and_shown(owner_client, owner, segmented_case):
    run = _ensemble(segmented_case)
    response = owner_client.post(f"/runs/{run.pk}/review/", {"decision": "reject", "reason": f"  {REASON} "})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.review_status == "rejected" and run.review_reason == REASON

    (entry,) = AuditEntry.objects.filter(event__startswith="run.")
    assert entry.event == "run.rejected" and entry.actor == owner and entry.object_pk == str(run.pk)
    assert entry.additional_data == {"case": segmented_case.pk, "model": "ensemble", "reason": REASON}

    state = owner_client.get(f"/cases/{segmented_case.pk}/state.json").json()
    reasons = {seg["model"]: seg["review_reason"] for seg in state["segmentations"]}
    assert reasons == {"ensemble": REASON, "unet_a": ""}
    report = owner_client.get(f"/cases/{segmented_case.pk}/report/").content.decode()
    assert "Reason: Misses the enhancing rim &lt;b&gt;lateral&lt;/b&gt;" in report


def test_a_rejection_without_a_reason_and_a_validation_are_audited_once_each(owner_client, segmented_case):
    run = _ensemble(segmented_case)
    owner_client.post(f"/runs/{run.pk}/review/", {"decision": "reject"})
    owner_client.post(f"/runs/{run.pk}/review/", {"decision": "validate"})
    run.refresh_from_db()
    assert run.review_status == "validated" and run.review_reason == ""
    events = list(
        AuditEntry.objects.filter(event__startswith="run.").order_by("pk").values_list("event", flat=True)
    )
    assert events == ["run.rejected", "run.validated"]


def test_a_too_long_reason_is_refused_with_a_message_and_nothing_changes(owner_client, segmented_case):
    run = _ensemble(segmented_case)
    response = owner_client.post(
        f"/runs/{run.pk}/review/", {"decision": "reject", "reason": "x" * (REVIEW_REASON_MAX_LENGTH + 1)}
    )
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert f"limited to {REVIEW_REASON_MAX_LENGTH} characters" in message
    run.refresh_from_db()
    assert run.review_status == "pending" and run.review_reason == ""
    assert not AuditEntry.objects.filter(event__startswith="run.").exists()
