"""The token endpoint is throttled per client address, API uploads per user: a 429 problem with
Retry-After."""

import pytest
from rest_framework.test import APIClient

from clinic.api.errors import PROBLEM_CONTENT_TYPE
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _throttled(response) -> bool:
    return (
        response.status_code == 429
        and response["Content-Type"] == PROBLEM_CONTENT_TYPE
        and int(response["Retry-After"]) > 0
    )


def test_the_token_endpoint_answers_a_few_requests_a_minute_per_address(settings, owner):
    settings.TUMORSITE_TOKEN_RATE = "3/minute"
    client = APIClient()
    credentials = {"username": "owner", "password": PASSWORD}
    answers = [client.post("/api/auth/token/", credentials, format="json") for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert _throttled(answers[3])
    # Another address has its own count; the proxies are not trusted, so a forged header changes nothing.
    assert (
        client.post("/api/auth/token/", credentials, format="json", REMOTE_ADDR="10.0.0.9").status_code == 200
    )
    forged = client.post("/api/auth/token/", credentials, format="json", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert _throttled(forged)


def test_uploads_through_the_api_are_counted_per_user_and_reading_is_not(settings, owner, colleague):
    settings.TUMORSITE_UPLOAD_RATE = "2/hour"
    client = APIClient()
    client.force_authenticate(owner)
    uploads = [client.post("/api/cases/", {}, format="multipart") for _ in range(3)]
    assert [u.status_code for u in uploads[:2]] == [400, 400]  # counted even when refused
    assert _throttled(uploads[2])
    assert client.get("/api/cases/").status_code == 200

    other = APIClient()
    other.force_authenticate(colleague)
    assert other.post("/api/cases/", {}, format="multipart").status_code == 400
