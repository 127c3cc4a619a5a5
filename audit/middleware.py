"""Who is asking and from where, for every entry written while a request is handled."""

from __future__ import annotations

from auditlog.context import auditlog_value
from auditlog.middleware import AuditlogMiddleware
from django.conf import settings

from audit.addresses import client_address


class AuditMiddleware(AuditlogMiddleware):
    """django-auditlog's middleware with the address read as ``audit.addresses.client_address`` reads it
    (auditlog's own takes the left-most ``X-Forwarded-For`` value, which any client can forge).

    The request itself is kept in the context too: an API request authenticated by a token gets its user
    from DRF inside the view, after this middleware ran, so ``audit_record`` reads ``request.user`` when
    it writes. The context is cleared after the response, so nothing run later on the same thread (a
    command, a test) inherits this request's user or address.
    """

    @staticmethod
    def _get_remote_addr(request) -> str | None:
        return client_address(request)

    @staticmethod
    def _get_remote_port(request) -> int | None:
        # Only a trusted proxy's X-Forwarded-Port means anything; the connection's port is not in META.
        if settings.TUMORSITE_TRUSTED_PROXIES <= 0:
            return None
        return AuditlogMiddleware._get_remote_port(request)

    def get_extra_data(self, request) -> dict:
        return {**super().get_extra_data(request), "request": request}

    def __call__(self, request):
        try:
            return super().__call__(request)
        finally:
            auditlog_value.set({})
