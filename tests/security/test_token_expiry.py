"""API tokens expire after TUMORSITE_TOKEN_TTL_HOURS: an expired one gets a 401 problem saying so, and the
token endpoint hands out a fresh one."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.api.errors import PROBLEM_CONTENT_TYPE
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _token(client) -> str:
    response = client.post("/api/auth/token/", {"username": "owner", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()["token"]


def _get_cases(key: str):
    return APIClient().get("/api/cases/", HTTP_AUTHORIZATION=f"Token {key}")


def _age(key: str, hours: float) -> None:
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=hours))


def test_a_token_works_until_it_expires_then_gets_a_401_problem(settings, owner):
    settings.TUMORSITE_TOKEN_TTL_HOURS = 24
    key = _token(APIClient())
    _age(key, 23.9)
    assert _get_cases(key).status_code == 200

    _age(key, 24.1)
    expired = _get_cases(key)
    assert expired.status_code == 401 and expired["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert expired["WWW-Authenticate"] == "Token"
    detail = expired.json()["detail"]
    assert "expired" in detail and "24 hours" in detail and "/api/auth/token/" in detail


def test_asking_again_replaces_an_expired_token_and_keeps_a_live_one(settings, owner):
    client = APIClient()
    key = _token(client)
    assert _token(client) == key  # still live: the same token

    _age(key, settings.TUMORSITE_TOKEN_TTL_HOURS + 1)
    fresh = _token(client)
    assert fresh != key
    assert _get_cases(fresh).status_code == 200
    assert _get_cases(key).status_code == 403  # the old key is gone, like any unknown token
