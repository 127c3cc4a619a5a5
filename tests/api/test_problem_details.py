"""The one error shape: whatever an API view raises, the answer is an RFC 9457 problem."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.http.request import RequestDataTooBig
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from clinic.api.errors import PROBLEM_CONTENT_TYPE, Conflict


def _answer(exc: Exception, accept: str = "application/json"):
    class Failing(APIView):
        permission_classes = [AllowAny]

        def get(self, request):
            raise exc

    response = Failing.as_view()(APIRequestFactory().get("/api/thing/", HTTP_ACCEPT=accept))
    response.render()
    return response


@pytest.mark.parametrize(
    "exc, status, detail",
    [
        (exceptions.ParseError("Bad JSON."), 400, "Bad JSON."),
        (exceptions.NotAuthenticated(), 403, "Authentication credentials were not provided."),
        (PermissionDenied(), 403, "You do not have permission to perform this action."),
        (Http404("No such case."), 404, "No such case."),
        (exceptions.MethodNotAllowed("PUT"), 405, 'Method "PUT" not allowed.'),
        (Conflict("Only a finished segmentation can be reviewed."), 409, "Only a finished"),
        (
            RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE."),
            413,
            "Request body exceeded",
        ),
        (exceptions.UnsupportedMediaType("text/plain"), 415, 'Unsupported media type "text/plain"'),
        (exceptions.Throttled(wait=30), 429, "Request was throttled"),
        (RuntimeError("a bug"), 500, "The server failed to answer this request"),
    ],
)
def test_every_error_is_a_problem(exc, status, detail):
    response = _answer(exc)
    body = response.data
    assert response.status_code == status and response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert body["type"] == "about:blank" and body["status"] == status and body["instance"] == "/api/thing/"
    assert body["title"] and body["detail"].startswith(detail) and "errors" not in body
    assert "a bug" not in response.content.decode()


def test_a_throttled_caller_is_told_when_to_come_back():
    assert _answer(exceptions.Throttled(wait=30))["Retry-After"] == "30"


def test_field_errors_are_listed_per_field_and_the_first_one_is_the_detail():
    body = _answer(exceptions.ValidationError({"name": ["This field is required."], "k": ["Too big."]})).data
    assert body["status"] == 400 and body["detail"] == "name: This field is required."
    assert body["errors"] == {"name": ["This field is required."], "k": ["Too big."]}
    whole = _answer(exceptions.ValidationError("The two dates disagree.")).data
    assert whole["detail"] == "The two dates disagree."
    assert whole["errors"] == {"non_field_errors": ["The two dates disagree."]}
    nested = _answer(exceptions.ValidationError({"scan": {"width": ["Must be positive."]}})).data
    assert nested["errors"] == {"scan.width": ["Must be positive."]}


def test_a_problem_is_json_even_where_the_view_would_render_html():
    response = _answer(Http404(), accept="text/html")
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE and response.content.startswith(b"{")
