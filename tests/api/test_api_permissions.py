import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/cases/"),
    ("post", "/api/cases/"),
    ("get", "/api/cases/1/"),
    ("get", "/api/cases/1/thumbnail.png"),
    ("get", "/api/cases/1/similar/"),
    ("post", "/api/cases/1/diagnoses/"),
    ("post", "/api/segmentations/1/review/"),
    ("get", "/api/segmentations/1/mask.png"),
    ("get", "/api/segmentations/1/probability.png"),
    ("get", "/api/diagnoses/?q=gli"),
    ("get", "/api/schema/"),
    ("get", "/api/docs/"),
]


@pytest.mark.parametrize("method, url", ENDPOINTS)
def test_every_endpoint_refuses_an_anonymous_caller(method, url):
    response = getattr(APIClient(), method)(url)
    assert response.status_code in (401, 403)


@pytest.mark.parametrize("method, url", ENDPOINTS)
def test_a_bad_token_is_refused(method, url):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert getattr(client, method)(url).status_code in (401, 403)


def test_a_token_is_issued_for_valid_credentials_only(clinician):
    client = APIClient()
    response = client.post("/api/auth/token/", {"username": "dr_owner", "password": "pw-owner-123"})
    assert response.status_code == 200 and response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get("/api/cases/").status_code == 200
    assert (
        APIClient().post("/api/auth/token/", {"username": "dr_owner", "password": "wrong"}).status_code == 400
    )


def test_the_openapi_schema_and_swagger_ui_are_served_to_users(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {
        "/api/cases/",
        "/api/cases/{case_id}/",
        "/api/cases/{case_id}/similar/",
        "/api/cases/{case_id}/diagnoses/",
        "/api/diagnoses/",
        "/api/auth/token/",
    } <= set(paths)
    assert client.get("/api/docs/").status_code == 200


def test_run_files_are_served_only_for_known_kinds_and_existing_outputs(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    assert client.get("/api/segmentations/999999/mask.png").status_code == 404
    assert client.get("/api/segmentations/1/weights.png").status_code == 404
