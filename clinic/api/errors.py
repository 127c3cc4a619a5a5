"""The one shape of every API error: RFC 9457 problem details, served as ``application/problem+json``.

``problem_exception_handler`` is DRF's EXCEPTION_HANDLER: views raise (DRF's exceptions, ``Http404``,
``Conflict``, ``ContentTooLarge``, the record's ``CaseEditConflict``: a 409 with the case's current ETag)
and never build an error body themselves;
``clinic.api.schema.problem_responses`` declares those errors with the same ``Problem`` body.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from django.http.request import RequestDataTooBig
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler, set_rollback

from cases.revisions import CaseEditConflict

PROBLEM_CONTENT_TYPE = "application/problem+json"

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class ContentTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request is larger than the server accepts."
    default_code = "content_too_large"


class ProblemRenderer(JSONRenderer):
    media_type = PROBLEM_CONTENT_TYPE


class ProblemSerializer(serializers.Serializer):
    """What every error response carries (RFC 9457)."""

    type = serializers.CharField(help_text='"about:blank": the status code says what kind of problem it is')
    title = serializers.CharField(help_text="the status code's reason phrase")
    status = serializers.IntegerField()
    detail = serializers.CharField(help_text="what went wrong, in plain words")
    instance = serializers.CharField(help_text="the path of the request")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="400 only: the messages for each input field (non_field_errors: for the whole input)",
    )


def problem_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's handler first (it maps ``Http404`` and ``PermissionDenied`` and sets the WWW-Authenticate and
    Retry-After headers), then the body in the problem-details shape; anything else is a logged 500."""
    if isinstance(exc, RequestDataTooBig):
        exc = ContentTooLarge(str(exc))
    current_revision = None
    if isinstance(exc, CaseEditConflict):  # a stale If-Match, from any write that edits a case
        current_revision = exc.current
        exc = Conflict(exc.api_detail)
    response = exception_handler(exc, context)
    if current_revision is not None:
        response["ETag"] = f'"{current_revision}"'
    if response is None:
        logger.error("Unhandled error in an API view", exc_info=exc)
        set_rollback()
        response = Response(status=500)
        detail = "The server failed to answer this request; the error was logged."
    else:
        # DRF's body is {"detail": ...} for every exception but a validation error (done below).
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
    request = context.get("request")
    body = {
        "type": "about:blank",
        "title": HTTPStatus(response.status_code).phrase,
        "status": response.status_code,
        "detail": str(detail),
        "instance": request.path if request is not None else "",
    }
    # Members an exception adds to its problem (RFC 9457, section 3.2), e.g. an upload's duplicate_of.
    body.update(getattr(exc, "problem_extensions", None) or {})
    if isinstance(exc, exceptions.ValidationError):
        body["errors"] = field_errors(exc.detail)
        body["detail"] = _first_message(body["errors"])
    response.data = body
    if request is not None:
        # JSON whatever the view renders otherwise (YAML for the schema, HTML for a browser).
        request.accepted_renderer = ProblemRenderer()
        request.accepted_media_type = PROBLEM_CONTENT_TYPE
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def _first_message(errors: dict[str, list[str]]) -> str:
    for field, messages in errors.items():
        if messages:
            return messages[0] if field == api_settings.NON_FIELD_ERRORS_KEY else f"{field}: {messages[0]}"
    return "Invalid input."


def field_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested validation errors as ``{"field" or "field.sub": [messages]}``."""
    if isinstance(detail, dict):
        errors: dict[str, list[str]] = {}
        for key, value in detail.items():
            errors.update(field_errors(value, f"{prefix}.{key}" if prefix else str(key)))
        return errors
    key = prefix or api_settings.NON_FIELD_ERRORS_KEY
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return {key: [str(item) for item in detail]}
        errors = {}
        for i, item in enumerate(detail):
            errors.update(field_errors(item, f"{key}.{i}"))
        return errors
    return {key: [str(detail)]}
