"""django-auditlog's ``auditlogflush`` deletes audit entries (or truncates the table); here it refuses.

Django runs the command of the first app in INSTALLED_APPS that defines it: ``audit`` comes before
``auditlog`` for that reason.
"""

import datetime

from django.core.management.base import BaseCommand, CommandError

REFUSAL = (
    "The audit trail is append-only: this site never deletes audit entries, so auditlogflush is disabled. "
    "Keeping the trail for as long as the hospital's retention policy says is the database "
    "administrator's task, with the database's own tools (docs/operations.md, 'Audit trail')."
)


class Command(BaseCommand):
    help = (
        "Disabled: django-auditlog's command to delete audit entries. It refuses whatever the options, "
        "because the audit trail is append-only."
    )

    def add_arguments(self, parser):
        # auditlog's own options, accepted so that any use of the command gets the explanation.
        parser.add_argument("-y", "--yes", action="store_true", help="Ignored: nothing is deleted.")
        parser.add_argument(
            "-b",
            "--before-date",
            type=datetime.date.fromisoformat,
            help="Ignored: nothing is deleted (an ISO 8601 date).",
        )
        parser.add_argument("-t", "--truncate", action="store_true", help="Ignored: nothing is truncated.")

    def handle(self, *args, **options):
        raise CommandError(REFUSAL)
