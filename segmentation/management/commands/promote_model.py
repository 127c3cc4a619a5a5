"""Serve a candidate in its slot, only if its evaluation shows it is not worse (or forced, with a reason)."""

from django.core.management.base import BaseCommand, CommandError

from segmentation.management.commands.sync_models import announce_synced_versions
from segmentation.services.lifecycle import DEFAULT_MARGIN, LifecycleError, candidate_get, model_promote


class Command(BaseCommand):
    help = (
        "Make the candidate NAME its slot's active version. Refused, with the figures, unless "
        "evaluate_candidate compared it with the version active now and the lower end of the paired 95 % "
        f"interval of the Dice difference is >= -margin (default {DEFAULT_MARGIN}). The previous active "
        "version retires, its file kept (rollback_model returns to it). One model.changed audit entry."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the candidate: slot@hash12, or a slot with one candidate")
        parser.add_argument(
            "--margin",
            type=float,
            default=DEFAULT_MARGIN,
            help=f"the Dice the candidate may lose at the interval's lower end (default {DEFAULT_MARGIN})",
        )
        parser.add_argument(
            "--force", action="store_true", help="promote without (or against) the evaluation; needs --reason"
        )
        parser.add_argument(
            "--reason", default="", help="why (required with --force; kept in the audit trail)"
        )

    def handle(self, *args, **o):
        try:
            candidate = candidate_get(o["name"])
            version = model_promote(
                candidate=candidate, margin=o["margin"], force=o["force"], reason=o["reason"]
            )
        except LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(f"{version.weights_key} now serves {version.slot} ({version.file_path})")
        )
        announce_synced_versions(self.stdout, self.style)
