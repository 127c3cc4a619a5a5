"""The audit trail in the admin: browse, filter, search and export as CSV; nothing can be added, changed or
deleted there. The sign-in failures django-axes keeps cannot be deleted either."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

# django-auditlog's admin registers itself for the entry model (ours) when imported; importing it here
# first, whatever the order of INSTALLED_APPS, lets this module replace it.
import auditlog.admin  # noqa: F401
from axes import admin as axes_admin
from axes.models import AccessFailureLog, AccessLog
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone

from audit.events import EVENTS
from audit.models import AuditEntry

CSV_HEADER = [
    "timestamp",
    "event",
    "actor",
    "actor_id",
    "address",
    "object_type",
    "object_id",
    "object",
    "changes",
    "detail",
]
# A spreadsheet runs a cell that starts with one of these as a formula; an entry's text can come from
# anyone (the username tried in a refused sign-in), so such a cell is written with a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class EventFilter(admin.SimpleListFilter):
    title = "event"
    parameter_name = "event"

    def lookups(self, request, model_admin):
        return [(name, f"{name}: {description}") for name, (_, description) in EVENTS.items()]

    def queryset(self, request, queryset):
        return queryset.filter(event=self.value()) if self.value() else queryset


class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: no add, change or delete permission for anyone, superusers included, and no actions."""

    change_list_template = "admin/audit/auditentry/change_list.html"
    date_hierarchy = "timestamp"
    list_display = ["timestamp", "event", "actor", "remote_addr", "object_type", "object_repr"]
    list_filter = [EventFilter, "actor", "content_type"]
    list_select_related = ["actor", "content_type"]
    search_fields = ["object_repr", "object_pk", "actor__username", "event"]
    search_help_text = "Searches the object, its id, the actor's username and the event."
    actions = None
    fields = [
        "timestamp",
        "event",
        "action",
        "actor",
        "actor_email",
        "remote_addr",
        "remote_port",
        "content_type",
        "object_pk",
        "object_repr",
        "changes",
        "additional_data",
    ]
    readonly_fields = fields

    @admin.display(description="object type", ordering="content_type")
    def object_type(self, entry: AuditEntry) -> str:
        return entry.content_type.name if entry.content_type else ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv_view),
            name="audit_auditentry_export",
        )
        return [export, *super().get_urls()]

    def export_csv_view(self, request: HttpRequest):
        """The entries the change list shows with the same query string (filters, date, search), all of
        them rather than one page, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            messages.error(request, "These filters are not valid; the export needs the list's own filters.")
            return HttpResponseRedirect(reverse("admin:audit_auditentry_changelist"))
        entries = changelist.queryset.select_related("actor", "content_type")
        response = StreamingHttpResponse(_csv_lines(entries), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.csv"'
        return response


class _Line:
    """A file-like object that hands back what csv.writer writes (one row at a time, streamed)."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(entries) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_HEADER)
    for entry in entries.iterator(chunk_size=2000):
        yield writer.writerow([_cell(value) for value in _csv_row(entry)])


def _csv_row(entry: AuditEntry) -> list:
    return [
        entry.timestamp.isoformat(),
        entry.event,
        entry.actor.get_username() if entry.actor else "",
        entry.actor_id or "",
        entry.remote_addr or "",
        f"{entry.content_type.app_label}.{entry.content_type.model}" if entry.content_type else "",
        entry.object_pk,
        entry.object_repr,
        json.dumps(entry.changes, sort_keys=True) if entry.changes else "",
        json.dumps(entry.additional_data, sort_keys=True) if entry.additional_data else "",
    ]


def _cell(value) -> str:
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


class AccessFailureLogAdmin(axes_admin.AccessFailureLogAdmin):
    """Each failed sign-in, kept: read-only and not deletable (axes itself trims the oldest)."""

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class AccessLogAdmin(axes_admin.AccessLogAdmin):
    """Each successful sign-in, kept: read-only and not deletable."""

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


admin.site.unregister(AuditEntry)  # auditlog's LogEntryAdmin
admin.site.register(AuditEntry, AuditEntryAdmin)
# The access attempts (the running counts) stay deletable: deleting one lifts a lock-out early
# (docs/operations.md, "Sign-in protection").
for model, model_admin in ((AccessFailureLog, AccessFailureLogAdmin), (AccessLog, AccessLogAdmin)):
    if admin.site.is_registered(model):  # unless AXES_ENABLE_ADMIN is off
        admin.site.unregister(model)
        admin.site.register(model, model_admin)
