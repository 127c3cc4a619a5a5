"""Record a trained bundle as a candidate for a served slot; nothing served changes."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from segmentation.services.lifecycle import LifecycleError, candidate_register


class Command(BaseCommand):
    help = (
        "Record the bundle PATH.keras (+ PATH.json beside it) as a candidate for the served slot NAME "
        "(--replaces; default: the bundle's own name, and type_classifier for a type classifier's). Its "
        "files are copied to <models dir>/candidates/<slot>-<hash12>.keras|.json, which sync_models never "
        "serves; nothing served changes. Next: evaluate_candidate, then promote_model (docs/training.md, "
        "Model lifecycle)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the bundle's .keras file (its .json must sit beside it)")
        parser.add_argument(
            "--replaces",
            metavar="NAME",
            help="the served slot this candidate may replace (default: the name in its .json; a type "
            "classifier's slot is type_classifier)",
        )

    def handle(self, *args, path: str, replaces: str | None, **options):
        try:
            candidate = candidate_register(path=Path(path), slot=replaces)
        except LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"registered candidate {candidate.name} for slot {candidate.slot} ({candidate.file_path}); "
                f"next: manage.py evaluate_candidate {candidate.name} --data DIR"
            )
        )
