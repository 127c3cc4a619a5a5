"""Repeated wrong passwords lock the username out from that address, on the sign-in page and on the token
endpoint, until the cool-off ends; every attempt is recorded (who, when, from where), by django-axes and in
the audit trail."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from rest_framework.test import APIClient

from audit.models import AuditEntry
from clinic.api.errors import PROBLEM_CONTENT_TYPE
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

WRONG_IN_A_ROW = 30
LOGIN = "/accounts/login/"
TOKEN = "/api/auth/token/"


def _sign_in(client, password, address="10.0.0.7"):
    return client.post(LOGIN, {"username": "owner", "password": password}, REMOTE_ADDR=address)


def _ask_token(client, password, address="10.0.0.7"):
    return client.post(TOKEN, {"username": "owner", "password": password}, format="json", REMOTE_ADDR=address)


def _trail_of_failures(owner) -> list[tuple[str, str, bool]]:
    """The audit trail's refused sign-ins of owner, oldest first: (username tried, address, locked out)."""
    entries = AuditEntry.objects.filter(event="auth.sign_in_failed", object_pk=str(owner.pk)).order_by("id")
    return [(e.additional_data["username"], e.remote_addr, e.additional_data["locked_out"]) for e in entries]


def _expected_trail(attempts: int) -> list[tuple[str, str, bool]]:
    """``attempts`` refusals of owner from 10.0.0.7: the limit-th locks the name out, as do all after it."""
    limit = settings.AXES_FAILURE_LIMIT
    return [("owner", "10.0.0.7", n + 1 >= limit) for n in range(attempts)]


def _end_the_cool_off():
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time
        - settings.AXES_COOLOFF_TIME
        - timedelta(minutes=1)
    )


def test_wrong_passwords_lock_the_sign_in_page_until_the_cool_off_ends(client, owner):
    statuses = [_sign_in(client, f"guess-{n}").status_code for n in range(WRONG_IN_A_ROW)]
    limit = settings.AXES_FAILURE_LIMIT
    assert statuses[: limit - 1] == [200] * (limit - 1)  # the form again, with its error
    assert set(statuses[limit - 1 :]) == {429}

    refused = _sign_in(client, PASSWORD)
    assert refused.status_code == 429
    assert "Sign-in locked" in refused.content.decode() and "Try again in" in refused.content.decode()
    assert "_auth_user_id" not in client.session

    _end_the_cool_off()
    assert _sign_in(client, PASSWORD).status_code == 302
    assert client.session["_auth_user_id"] == str(owner.pk)
    assert not AccessAttempt.objects.exists()  # a success clears the count


def test_the_lock_holds_that_username_from_that_address_only(client, owner):
    for n in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, f"guess-{n}")
    assert _sign_in(client, PASSWORD).status_code == 429
    assert _sign_in(client, PASSWORD, address="10.0.0.8").status_code == 302


def test_every_failed_sign_in_is_recorded_with_the_username_and_the_address(client, owner):
    for n in range(WRONG_IN_A_ROW):
        _sign_in(client, f"guess-{n}")
    _sign_in(client, PASSWORD)

    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.path_info) == ("owner", "10.0.0.7", LOGIN)
    assert attempt.failures_since_start == WRONG_IN_A_ROW + 1  # the right password while locked counts too
    failures = AccessFailureLog.objects.filter(username="owner", ip_address="10.0.0.7")
    assert failures.count() == WRONG_IN_A_ROW + 1
    assert failures.filter(locked_out=True).count() == WRONG_IN_A_ROW + 1 - (settings.AXES_FAILURE_LIMIT - 1)
    assert "guess-" not in attempt.post_data  # the passwords tried are not kept
    # The audit trail shows each of them too, the right password refused while locked out included.
    assert _trail_of_failures(owner) == _expected_trail(WRONG_IN_A_ROW + 1)
    assert not AuditEntry.objects.filter(event="auth.signed_in").exists()


def test_wrong_passwords_lock_the_token_endpoint_with_a_problem_until_the_cool_off_ends(owner):
    client = APIClient()
    statuses = [_ask_token(client, f"guess-{n}").status_code for n in range(WRONG_IN_A_ROW)]
    limit = settings.AXES_FAILURE_LIMIT
    assert statuses[: limit - 1] == [400] * (limit - 1)
    assert set(statuses[limit - 1 :]) == {429}

    refused = _ask_token(client, PASSWORD)
    assert refused.status_code == 429 and refused["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert refused["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    assert refused.json()["detail"].startswith(
        "Too many failed sign-ins for this username from this address."
    )
    assert "token" not in refused.json()

    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.path_info) == ("owner", "10.0.0.7", TOKEN)
    assert AccessFailureLog.objects.filter(username="owner", path_info=TOKEN).count() == WRONG_IN_A_ROW + 1
    assert _trail_of_failures(owner) == _expected_trail(WRONG_IN_A_ROW + 1)

    _end_the_cool_off()
    assert _ask_token(client, PASSWORD).status_code == 200
    assert AuditEntry.objects.filter(event="auth.signed_in", object_pk=str(owner.pk)).count() == 1


def test_the_attempts_show_in_the_admin_and_cannot_be_edited_there(client, owner, admin):
    for n in range(3):
        _sign_in(client, f"guess-{n}")
    client.force_login(admin)
    attempt = AccessAttempt.objects.get()
    page = client.get("/admin/axes/accessattempt/")
    assert page.status_code == 200 and "10.0.0.7" in page.content.decode()
    assert client.get("/admin/axes/accessfailurelog/").status_code == 200
    assert client.get("/admin/axes/accessattempt/add/").status_code == 403
    client.post(f"/admin/axes/accessattempt/{attempt.pk}/change/", {"username": "someone-else"})
    attempt.refresh_from_db()
    assert attempt.username == "owner"
