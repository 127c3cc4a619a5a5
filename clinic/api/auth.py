"""The token endpoint: DRF's own view, with its answers declared in the schema."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken

from clinic.api.schema import problem_responses


class AuthTokenApi(ObtainAuthToken):
    """A username and password for the token to send as ``Authorization: Token <key>``."""

    @extend_schema_serializer(component_name="AuthTokenOutput")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(
        request=AuthTokenSerializer,
        responses={200: OutputSerializer, **problem_responses(400, 415, public=True)},
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)
