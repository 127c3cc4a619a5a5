"""Signing in to the API and what a role is refused there. Which role may call which endpoint is
tests/security/test_roles_matrix.py's table; this file covers tokens and the refusals' shape."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from clinic.api.errors import PROBLEM_CONTENT_TYPE
from clinic.permissions import RolePermission

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/cases/"),
    ("post", "/api/cases/"),
    ("get", "/api/cases/1/"),
    ("post", "/api/cases/1/diagnoses/"),
    ("delete", "/api/cases/1/diagnoses/1/"),
    ("post", "/api/segmentations/1/review/"),
    ("get", "/api/segmentations/1/mask.png"),
    ("get", "/api/schema/"),
]


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


def test_a_token_carries_only_its_accounts_role(django_user_model):
    """An account without a role still signs in (it learns why it is refused), then is refused."""
    django_user_model.objects.create_user("no-role", password="pw-no-role-1")
    client = APIClient()
    token = client.post("/api/auth/token/", {"username": "no-role", "password": "pw-no-role-1"}).json()[
        "token"
    ]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    refused = client.get("/api/cases/")
    assert refused.status_code == 403 and refused["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert "Ask an administrator" in refused.json()["detail"]


def test_a_viewer_reads_but_cannot_write(django_user_model):
    viewer = django_user_model.objects.create_user("api-viewer", password="x")
    viewer.groups.add(Group.objects.get(name="viewer"))
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get("/api/cases/").status_code == 200
    for method, url in [("post", "/api/cases/"), ("post", "/api/segmentations/1/review/")]:
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 403 and response["Content-Type"] == PROBLEM_CONTENT_TYPE, url


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


class _Forgotten(APIView):
    """Answers GET and POST but names a permission for GET only."""

    required_permissions = {"GET": "cases.view_case"}

    def get(self, request):
        return Response({})

    def post(self, request):
        return Response({})


def test_a_method_without_a_named_permission_is_closed_and_one_not_answered_is_a_405(django_user_model):
    admin = django_user_model.objects.create_user("api-admin", password="x", is_staff=True)
    admin.groups.add(Group.objects.get(name="admin"))
    factory = APIRequestFactory()
    view = _Forgotten.as_view(permission_classes=[RolePermission])
    answers = {}
    for method in ("get", "post", "delete"):
        request = getattr(factory, method)("/anywhere/")
        force_authenticate(request, admin)
        answers[method] = view(request).status_code
    assert answers == {"get": 200, "post": 403, "delete": 405}
