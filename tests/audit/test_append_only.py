"""No entry can be changed or deleted through the application: not by the model, not by a queryset, not
in the admin (its change and delete pages and its bulk delete, even for a superuser), not by
django-auditlog's flush command. The failed sign-ins django-axes keeps cannot be deleted in the admin."""

from __future__ import annotations

import pytest
from axes.models import AccessFailureLog
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError

from audit.models import AuditEntry, AuditEntryImmutable
from audit.services import audit_record

pytestmark = pytest.mark.django_db

ADMIN = "/admin/audit/auditentry/"


@pytest.fixture
def entry(case, viewer):
    return audit_record(event="case.viewed", obj=case, user=viewer, detail={"route": "case-detail"})


def _unchanged(entry) -> bool:
    stored = AuditEntry.objects.get(pk=entry.pk)
    return (stored.event, stored.object_repr, stored.actor_id) == (
        entry.event,
        entry.object_repr,
        entry.actor_id,
    )


def test_the_model_refuses_to_change_or_delete_an_entry(entry):
    entry.object_repr = "something else"
    with pytest.raises(AuditEntryImmutable):
        entry.save()
    with pytest.raises(AuditEntryImmutable):
        entry.delete()
    assert AuditEntry.objects.filter(pk=entry.pk, object_repr__startswith="something").count() == 0


def test_a_queryset_refuses_to_update_or_delete_entries(entry):
    with pytest.raises(AuditEntryImmutable):
        AuditEntry.objects.filter(pk=entry.pk).update(event="case.uploaded")
    with pytest.raises(AuditEntryImmutable):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).event == "case.viewed"


def test_the_admin_shows_an_entry_but_refuses_to_change_it_even_to_a_superuser(client, superuser, entry):
    client.force_login(superuser)
    page = client.get(f"{ADMIN}{entry.pk}/change/")
    assert page.status_code == 200 and entry.object_repr in page.content.decode()
    assert 'name="_save"' not in page.content.decode()  # shown read-only
    refused = client.post(f"{ADMIN}{entry.pk}/change/", {"event": "case.uploaded", "object_repr": "x"})
    assert refused.status_code == 403
    assert _unchanged(entry)
    assert client.get(f"{ADMIN}add/").status_code == 403


def test_the_admin_refuses_to_delete_an_entry_even_to_a_superuser(client, superuser, entry):
    client.force_login(superuser)
    assert client.get(f"{ADMIN}{entry.pk}/delete/").status_code == 403
    assert client.post(f"{ADMIN}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_the_admin_has_no_bulk_delete_and_ignores_a_forged_one(client, superuser, entry):
    client.force_login(superuser)
    listing = client.get(ADMIN)
    assert listing.status_code == 200 and "delete_selected" not in listing.content.decode()
    forged = client.post(ADMIN, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"})
    assert forged.status_code == 200 and "Are you sure" not in forged.content.decode()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_auditlogflush_is_ours_and_refuses_whatever_the_options(entry):
    assert get_commands()["auditlogflush"] == "audit"
    for options in (
        {},
        {"yes": True},
        {"yes": True, "truncate": True},
        {"yes": True, "before_date": "2099-01-01"},
    ):
        with pytest.raises(CommandError, match="append-only"):
            call_command("auditlogflush", **options)
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_auditlogflush_explains_itself_and_its_options():
    flush = load_command_class(get_commands()["auditlogflush"], "auditlogflush")
    assert "append-only" in flush.help
    parser = flush.create_parser("manage.py", "auditlogflush")
    assert all(action.help for action in parser._actions)


def test_axes_failed_sign_ins_cannot_be_deleted_in_the_admin(client, superuser, viewer):
    client.post("/accounts/login/", {"username": "viewer", "password": "wrong-one"})
    failure = AccessFailureLog.objects.get()
    client.force_login(superuser)
    assert client.get(f"/admin/axes/accessfailurelog/{failure.pk}/delete/").status_code == 403
    assert (
        client.post(f"/admin/axes/accessfailurelog/{failure.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    client.post(
        "/admin/axes/accessfailurelog/",
        {"action": "delete_selected", "_selected_action": [failure.pk], "post": "yes"},
    )
    assert AccessFailureLog.objects.filter(pk=failure.pk).exists()
