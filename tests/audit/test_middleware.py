"""The audit middleware gives every entry a request writes its user and address, the user of a DRF token
included (authenticated inside the view, after the middleware ran), and nothing to what runs later."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from audit.middleware import AuditMiddleware
from audit.services import audit_record

pytestmark = pytest.mark.django_db


def test_an_entry_written_in_a_view_takes_the_user_authenticated_there(case, viewer):
    """As DRF does with a token: request.user is set inside the view, after the middleware read it."""
    written = []

    def view(request):
        request.user = viewer
        written.append(audit_record(event="case.viewed", obj=case))
        return HttpResponse()

    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.5")
    request.user = AnonymousUser()
    AuditMiddleware(view)(request)
    assert [(e.actor, e.remote_addr) for e in written] == [(viewer, "192.0.2.5")]


def test_an_entry_outside_a_request_inherits_nothing_from_the_last_request(case, viewer):
    """The context is cleared once the middleware answered: a command run afterwards on the same thread
    (here, the test's) writes an entry with no user and no address."""
    client = Client(REMOTE_ADDR="192.0.2.1")
    client.force_login(viewer)
    assert client.get(reverse("case-detail", args=[case.pk])).status_code == 200
    entry = audit_record(event="model.changed", obj=case)
    assert (entry.actor, entry.remote_addr) == (None, None)
