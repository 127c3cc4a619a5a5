from django.core.management.base import BaseCommand

from segmentation.services import model_versions_sync, models_dir


class Command(BaseCommand):
    help = "Register every <name>.keras + <name>.json bundle in TUMORSITE_MODELS_DIR, and the ensemble."

    def add_arguments(self, parser):
        parser.add_argument("--dir", help="models directory (default: TUMORSITE_MODELS_DIR)")

    def handle(self, *args, **options):
        versions = model_versions_sync(directory=options["dir"])
        if not versions:
            self.stdout.write(
                self.style.WARNING(f"No model bundles found in {options['dir'] or models_dir()}.")
            )
        for v in versions:
            members = f" = mean({', '.join(v.members)})" if v.is_ensemble else f" ({v.file_path})"
            self.stdout.write(f"{v.name}: {v.architecture}{members}")
        warn_if_case_base_stale(self.stdout, self.style)


def warn_if_case_base_stale(stdout, style) -> None:
    """After new weights are registered: say so when the case base's embeddings came from old ones."""
    from recommender.services import case_base_staleness

    reason = case_base_staleness()
    if reason:
        stdout.write(style.WARNING(reason[0].upper() + reason[1:] + "."))
