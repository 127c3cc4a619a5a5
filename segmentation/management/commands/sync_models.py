from django.core.management.base import BaseCommand

from segmentation.models import ModelVersion
from segmentation.services import model_versions_sync, models_dir
from segmentation.signals import model_versions_synced


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
        announce_synced_versions(self.stdout, self.style)


def announce_synced_versions(stdout, style) -> None:
    """After new weights are registered: send ``model_versions_synced`` and print what its receivers
    return (e.g. that the similar-case base was described with the old weights)."""
    for _receiver, warning in model_versions_synced.send(sender=ModelVersion):
        if warning:
            stdout.write(style.WARNING(warning[0].upper() + warning[1:] + "."))
