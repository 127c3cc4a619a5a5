"""Sign-ins, as django.contrib.auth and django-axes announce them, written to the audit trail."""

from __future__ import annotations

# django-axes' own receivers first: a failed sign-in has been counted, and the request flagged as locked
# out, by the time ours reads it (receivers run in the order they were connected).
import axes.signals  # noqa: F401
from django.contrib.auth import get_user_model

from audit.services import audit_record


def record_signed_in(sender, request, user, **kwargs) -> None:
    """A sign-in on a page (the site's or the admin's): one ``auth.signed_in``. The token endpoint, which
    signs no session in, records its own."""
    audit_record(event="auth.signed_in", obj=user, user=user, request=request, detail={"via": "page"})


def record_sign_in_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    """A refused sign-in, page or token, wrong password or locked out: one ``auth.sign_in_failed``.

    The username tried is kept (the object is that user when the name exists); the password never is.
    ``locked_out`` says that django-axes refuses this username from this address now (this attempt
    reached the limit, or came while the lock-out lasts).
    """
    User = get_user_model()
    username = str(credentials.get(User.USERNAME_FIELD) or credentials.get("username") or "")
    user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first() if username else None
    detail = {
        "username": username,
        "path": getattr(request, "path", None),
        "locked_out": bool(getattr(request, "axes_locked_out", False)),
    }
    if user is not None:
        audit_record(event="auth.sign_in_failed", obj=user, request=request, detail=detail)
    else:
        audit_record(
            event="auth.sign_in_failed", model=User, object_repr=username, request=request, detail=detail
        )
