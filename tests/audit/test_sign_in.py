"""Sign-ins and refused sign-ins, on the pages and the token endpoint, each leave one entry: who, from
where, the username tried (never the password) and whether django-axes has locked the name out (the
lock-out after repeated failures, and its entries, are tested in tests/security/test_lockout.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from tests.audit.conftest import written
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

ADDRESS = "10.9.8.7"


def _page(username: str, password: str, path: str = "/accounts/login/"):
    return Client(REMOTE_ADDR=ADDRESS).post(path, {"username": username, "password": password})


def _token(username: str, password: str):
    return APIClient(REMOTE_ADDR=ADDRESS).post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )


def _only(entries):
    assert len(entries) == 1, [(e.event, e.object_repr) for e in entries]
    return entries[0]


@pytest.mark.parametrize(
    ("persona", "sign_in", "expected_status", "via"),
    [
        ("viewer", lambda: _page("viewer", PASSWORD), 302, "page"),
        ("admin", lambda: _page("admin", PASSWORD, "/admin/login/"), 302, "page"),
        ("viewer", lambda: _token("viewer", PASSWORD), 200, "token"),
    ],
    ids=["page", "admin page", "token"],
)
def test_a_sign_in_writes_one_entry_with_the_user_and_address(
    request, persona, sign_in, expected_status, via
):
    user = request.getfixturevalue(persona)
    with written() as entries:
        assert sign_in().status_code == expected_status
    entry = _only(entries)
    assert (entry.event, entry.actor, entry.remote_addr) == ("auth.signed_in", user, ADDRESS)
    assert (entry.content_type.model_class(), entry.object_pk) == (get_user_model(), str(user.pk))
    assert entry.additional_data == {"via": via}


@pytest.mark.parametrize("sign_in", [_page, _token], ids=["page", "token"])
def test_a_wrong_password_writes_one_entry_on_the_user_tried_without_the_password(viewer, sign_in):
    with written() as entries:
        assert sign_in("viewer", "not-the-password").status_code in (200, 400)
    entry = _only(entries)
    assert (entry.event, entry.actor, entry.remote_addr) == ("auth.sign_in_failed", None, ADDRESS)
    assert (entry.content_type.model_class(), entry.object_pk) == (get_user_model(), str(viewer.pk))
    assert entry.additional_data["username"] == "viewer"
    assert entry.additional_data["locked_out"] is False
    stored = str(entry.__dict__)
    assert "not-the-password" not in stored and PASSWORD not in stored


@pytest.mark.parametrize("sign_in", [_page, _token], ids=["page", "token"])
def test_an_unknown_username_is_recorded_as_tried_with_no_user(db, sign_in):
    with written() as entries:
        sign_in("nobody-here", "whatever-1")
    entry = _only(entries)
    assert entry.event == "auth.sign_in_failed"
    assert entry.content_type.model_class() is get_user_model()
    assert (entry.object_pk, entry.object_id, entry.object_repr) == ("", None, "nobody-here")
    assert "whatever-1" not in str(entry.__dict__)
