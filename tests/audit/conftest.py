"""Helpers for the audit trail's tests: the entries an action wrote, and a small world to read."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db.models import Max

from audit.models import AuditEntry
from segmentation.testing import make_case, synthetic_slice
from tests.conftest import UserFactory
from tests.web.builders import add_finished_run


@contextmanager
def written():
    """The entries written inside the ``with`` block, oldest first (a list filled in when it ends)."""
    before = AuditEntry.objects.aggregate(last=Max("id"))["last"] or 0
    found: list[AuditEntry] = []
    yield found
    found.extend(
        AuditEntry.objects.filter(id__gt=before).select_related("actor", "content_type").order_by("id")
    )


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def case(owner):
    """A case imported with its expert mask (mask version 1) and a finished AI run."""
    case = make_case(user=owner, patient="AUDIT-1", tumour_type="glioma", ground_truth=True, size=64)
    _, mask = synthetic_slice(64, center=(30, 30), radius=6, seed=3)
    add_finished_run(case, "unet_audit", mask)
    return case
