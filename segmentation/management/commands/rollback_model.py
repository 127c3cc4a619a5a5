"""Return a slot to its previous (retired) version."""

from django.core.management.base import BaseCommand, CommandError

from segmentation.management.commands.sync_models import announce_synced_versions
from segmentation.services.lifecycle import LifecycleError, model_rollback


class Command(BaseCommand):
    help = (
        "Make the slot SLOT's most recently retired version (whose file still holds its weights) active "
        "again; the version active now retires, its file kept. One model.changed audit entry."
    )

    def add_arguments(self, parser):
        parser.add_argument("slot", help="the served name, e.g. unet")
        parser.add_argument("--reason", default="", help="why (kept in the audit trail)")

    def handle(self, *args, slot: str, reason: str, **options):
        try:
            version = model_rollback(slot=slot, reason=reason)
        except LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(f"{version.weights_key} serves {version.slot} again ({version.file_path})")
        )
        announce_synced_versions(self.stdout, self.style)
