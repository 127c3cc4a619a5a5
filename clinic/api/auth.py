"""The token endpoint: DRF's own view, with its answers declared in the schema.

It is throttled per client address, refuses a username locked out by django-axes (429, with the
cool-off in Retry-After) and replaces an expired token with a new one. A token handed out is a sign-in
(``auth.signed_in`` in the audit trail); a refused one is recorded by the audit app's receiver of
``user_login_failed``, which django.contrib.auth sends for the page and this endpoint alike.
"""

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from audit.services import audit_record
from clinic.api.authentication import SignInLockedOut, TokenRateThrottle, token_get_or_rotate
from clinic.api.schema import problem_responses


class AuthTokenApi(ObtainAuthToken):
    """A username and password for the token to send as ``Authorization: Token <key>``. A token lasts
    ``TUMORSITE_TOKEN_TTL_HOURS``; asking again after that gives a new one."""

    throttle_classes = [TokenRateThrottle]
    # Anyone may ask (DRF's view has no permission classes at all); said explicitly so that the schema
    # marks credentials optional here rather than required.
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="AuthTokenOutput")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(
        request=AuthTokenSerializer,
        responses={200: OutputSerializer, **problem_responses(400, 415, 429, public=True)},
    )
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError:
            # django-axes flags the request it refused (or the failure that reached the limit).
            if getattr(request, "axes_locked_out", False):
                raise SignInLockedOut(wait=settings.AXES_COOLOFF_TIME.total_seconds()) from None
            raise
        user = serializer.validated_data["user"]
        with transaction.atomic():
            token = token_get_or_rotate(user=user)
            audit_record(
                event="auth.signed_in", obj=user, user=user, request=request, detail={"via": "token"}
            )
        return Response({"token": token.key})
