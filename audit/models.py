"""The audit trail's entries: django-auditlog's log entry plus the event that happened.

Append-only: an entry is written once and never changed or deleted by the application (``save`` of a
stored entry, ``delete`` and the queryset's ``update``/``delete`` raise). The database account of a
hospital's deployment should also lack UPDATE and DELETE on the table (docs/operations.md).
"""

from __future__ import annotations

from auditlog.models import AbstractLogEntry, LogEntryManager
from django.db import models


class AuditEntryImmutable(Exception):
    """Raised on any attempt to change or delete an audit entry."""


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditEntryImmutable("Audit entries cannot be changed.")

    def delete(self):
        raise AuditEntryImmutable("Audit entries cannot be deleted.")

    def _raw_delete(self, using):
        raise AuditEntryImmutable("Audit entries cannot be deleted.")


class AuditEntryManager(LogEntryManager.from_queryset(AuditEntryQuerySet)):
    pass


class AuditEntry(AbstractLogEntry):
    event = models.CharField(
        max_length=64, db_index=True, help_text='what happened, e.g. "case.viewed" (audit.events)'
    )

    objects = AuditEntryManager()

    class Meta(AbstractLogEntry.Meta):
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.event} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditEntryImmutable("Audit entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditEntryImmutable("Audit entries cannot be deleted.")
