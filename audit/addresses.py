"""The client's address: the one function the audit trail, django-axes' lock-out and the throttles use."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_address(request) -> str | None:
    """The address of the client that sent ``request`` (a Django or a DRF request).

    With no proxy in front (``TUMORSITE_TRUSTED_PROXIES`` = 0) it is the connection's own address and
    ``X-Forwarded-For`` is ignored: a client can write anything there. With N trusted proxies, each
    appends the address it received the request from, so the client's is the N-th entry counted from the
    right, the one the outermost trusted proxy saw; whatever stands left of it came from the client. A
    value that is not an IP address falls back to the connection's.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.TUMORSITE_TRUSTED_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded.strip():
        return remote
    entries = [entry.strip() for entry in forwarded.split(",")]
    candidate = _without_port(entries[-min(proxies, len(entries))])
    return candidate if _is_address(candidate) else remote


def _without_port(value: str) -> str:
    """``1.2.3.4:5678`` -> ``1.2.3.4``, ``[::1]:5678`` -> ``::1`` (some proxies write the port too)."""
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
