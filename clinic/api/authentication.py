"""Who may call the API and how often: tokens that expire, the throttles, the client's address.

The lock-out after repeated failed sign-ins is django-axes' (settings ``AXES_*``); the address it counts
is ``client_address`` (audit.addresses), the same one the throttles count and the audit trail records.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle

from audit.addresses import client_address

TOKEN_ENDPOINT = "/api/auth/token/"


class TokenExpired(exceptions.APIException):
    """401 whatever the first authentication class is: DRF would turn an AuthenticationFailed into 403 when
    the session comes first (it does, so that a request without credentials keeps its 403)."""

    status_code = 401
    default_code = "token_expired"
    auth_header = "Token"


class SignInLockedOut(exceptions.Throttled):
    """429 with Retry-After: too many failed sign-ins for this username from this address."""

    default_detail = "Too many failed sign-ins for this username from this address."
    extra_detail_singular = extra_detail_plural = "Try again in {wait} seconds."
    default_code = "signin_locked_out"


def token_ttl() -> timedelta:
    return timedelta(hours=settings.TUMORSITE_TOKEN_TTL_HOURS)


def token_is_expired(token: Token) -> bool:
    return token.created <= timezone.now() - token_ttl()


@transaction.atomic
def token_get_or_rotate(*, user) -> Token:
    """The user's token; an expired one is replaced by a new key (the old one stops working)."""
    token, created = Token.objects.select_for_update().get_or_create(user=user)
    if not created and token_is_expired(token):
        token.delete()
        token = Token.objects.create(user=user)
    return token


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token older than ``TUMORSITE_TOKEN_TTL_HOURS``."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_is_expired(token):
            raise TokenExpired(
                f"This token expired (tokens last {settings.TUMORSITE_TOKEN_TTL_HOURS} hours): "
                f"POST your username and password to {TOKEN_ENDPOINT} for a new one."
            )
        return user, token


class _SettingRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is the Django setting ``rate_setting``, read on each request (DRF reads
    ``DEFAULT_THROTTLE_RATES`` once, at import)."""

    rate_setting: str

    def get_rate(self) -> str:
        return getattr(settings, self.rate_setting)


class TokenRateThrottle(_SettingRateThrottle):
    """Token requests per client address, signed in or not."""

    scope = "token"
    rate_setting = "TUMORSITE_TOKEN_RATE"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class UploadRateThrottle(_SettingRateThrottle):
    """Case uploads (POST) per user; reading is not counted."""

    scope = "upload"
    rate_setting = "TUMORSITE_UPLOAD_RATE"

    def get_cache_key(self, request, view) -> str | None:
        if request.method != "POST" or not request.user.is_authenticated:
            return None  # not throttled here (an anonymous upload is refused anyway)
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
