"""Admins browse the audit trail in the admin and export what the list shows, with its filters, as CSV."""

from __future__ import annotations

import csv
import io

import pytest

from audit.admin import CSV_HEADER
from audit.services import audit_record
from cases.models import Case

pytestmark = pytest.mark.django_db

ADMIN = "/admin/audit/auditentry/"
EXPORT = "/admin/audit/auditentry/export.csv"


@pytest.fixture
def trail(case, viewer, owner):
    """Three entries: the viewer opened the case and downloaded its mask; the owner uploaded it."""
    return [
        audit_record(event="case.viewed", obj=case, user=viewer, detail={"route": "case-detail"}),
        audit_record(event="mask.downloaded", obj=case, user=viewer, detail={"route": "case-mask"}),
        audit_record(event="case.uploaded", obj=case, user=owner, changes={"tumour_type": [None, "glioma"]}),
    ]


def _rows(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-')
    text = b"".join(response.streaming_content).decode()
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == CSV_HEADER
    return list(reader)


def test_the_admin_role_browses_and_filters_the_trail(client, admin, trail, case):
    client.force_login(admin)
    listing = client.get(ADMIN).content.decode()
    assert "case.viewed" in listing and "mask.downloaded" in listing and "Export CSV" in listing
    filtered = client.get(ADMIN, {"event": "case.uploaded"}).content.decode()
    assert "case.uploaded" in filtered and "mask.downloaded</td>" not in filtered
    assert f'{EXPORT}?event=case.uploaded"' in filtered  # the export link carries the filters


def test_the_export_has_a_header_and_one_row_per_entry(client, admin, trail, case, viewer, owner):
    client.force_login(admin)  # itself an entry, auth.signed_in
    rows = _rows(client.get(EXPORT))
    by_event = {row["event"]: row for row in rows}
    assert len(rows) == 4 and set(by_event) == {
        "case.viewed",
        "mask.downloaded",
        "case.uploaded",
        "auth.signed_in",
    }
    viewed = by_event["case.viewed"]
    assert (viewed["actor"], viewed["actor_id"], viewed["object_type"]) == (
        "viewer",
        str(viewer.pk),
        "cases.case",
    )
    assert (viewed["object_id"], viewed["object"]) == (str(case.pk), str(case))
    assert viewed["detail"] == '{"route": "case-detail"}'
    assert by_event["case.uploaded"]["changes"] == '{"tumour_type": [null, "glioma"]}'
    assert by_event["case.uploaded"]["actor"] == "owner"


def test_the_export_honours_the_lists_filters_and_search(client, admin, trail, viewer, owner):
    client.force_login(admin)
    assert [r["event"] for r in _rows(client.get(EXPORT, {"event": "mask.downloaded"}))] == [
        "mask.downloaded"
    ]
    assert {r["actor"] for r in _rows(client.get(EXPORT, {"actor__id__exact": owner.pk}))} == {"owner"}
    assert {r["event"] for r in _rows(client.get(EXPORT, {"q": "viewer"}))} == {
        "case.viewed",
        "mask.downloaded",
    }
    assert _rows(client.get(EXPORT, {"timestamp__year": 1999})) == []


def test_a_bad_filter_sends_back_to_the_list_with_a_message(client, admin, trail):
    client.force_login(admin)
    response = client.get(EXPORT, {"no_such_field": "1"}, follow=True)
    assert response.redirect_chain and "not valid" in response.content.decode()


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(client, admin, db):
    audit_record(
        event="auth.sign_in_failed", model=Case, object_repr="=HYPERLINK(1)", detail={"username": "x"}
    )
    client.force_login(admin)
    (row,) = _rows(client.get(EXPORT, {"event": "auth.sign_in_failed"}))
    assert row["object"] == "'=HYPERLINK(1)"


@pytest.mark.parametrize("persona", ["viewer", "owner", "reviewer"])
def test_only_who_may_view_the_trail_reaches_it(request, client, trail, persona):
    user = request.getfixturevalue(persona)
    user.is_staff = True  # even staff, without audit.view_auditentry
    user.save()
    client.force_login(user)
    assert client.get(ADMIN).status_code == 403
    assert client.get(EXPORT).status_code == 403


def test_signed_out_visitors_are_sent_to_sign_in(client, trail):
    response = client.get(EXPORT)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
