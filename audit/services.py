"""Writing the audit trail. Everything that records an audited action calls ``audit_record``."""

from __future__ import annotations

from typing import Any

from auditlog.context import auditlog_value
from django.contrib.contenttypes.models import ContentType
from django.db import models

from audit.addresses import client_address
from audit.events import EVENTS
from audit.models import AuditEntry


def audit_record(
    *,
    event: str,
    obj: models.Model | None = None,
    user=None,
    model: type[models.Model] | None = None,
    object_repr: str | None = None,
    changes: dict[str, list[Any]] | None = None,
    detail: dict[str, Any] | None = None,
    request=None,
) -> AuditEntry:
    """Write one entry: ``event`` (a key of ``audit.events.EVENTS``) on ``obj`` by ``user``.

    Who and from which address default to the request being handled (``audit.middleware``): its user as
    authenticated by then (a DRF token included); a command run from a shell has neither. Pass ``request``
    where the entry is about a request the middleware did not see (a signal sent with one). ``changes`` is
    ``{field: [old, new]}``; ``detail`` any other facts. Without an object (e.g. a refused sign-in for an
    unknown name) give ``model`` and ``object_repr``.
    """
    if event not in EVENTS:
        raise ValueError(f"Unknown audit event {event!r}")
    target = type(obj) if obj is not None else model
    if target is None:
        raise ValueError("audit_record needs obj or model")
    context = auditlog_value.get({})
    if request is None:
        request = context.get("request")
        address = context.get("remote_addr")
    else:
        address = client_address(request)
    actor = next(
        (
            candidate
            for candidate in (user, getattr(request, "user", None), context.get("actor"))
            if getattr(candidate, "is_authenticated", False)
        ),
        None,
    )
    pk = obj.pk if obj is not None else None
    return AuditEntry.objects.create(
        event=event,
        action=EVENTS[event][0],
        content_type=ContentType.objects.get_for_model(target),
        object_pk="" if pk is None else str(pk),
        object_id=pk if isinstance(pk, int) else None,
        object_repr=(object_repr if object_repr is not None else str(obj))[:1000],
        changes=changes,
        additional_data=detail,
        actor=actor,
        actor_email=getattr(actor, "email", None) or None,
        remote_addr=address,
        remote_port=context.get("remote_port"),
    )
