"""Train the tumour-type classifier (thin wrapper over ``ml.type_classification``)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml.data import AUGMENTATIONS
from ml.encoders import ENCODERS
from ml.training.loop import set_threads
from ml.type_classification import add_arguments, config_from_args, train_type_classifier


class Command(BaseCommand):
    help = (
        "Train the tumour-type classifier (meningioma, glioma, pituitary) on data in the shared layout, "
        "split by patient group as the segmenters are; write <name>.keras and <name>.json (default: where "
        "TUMORSITE_TYPE_CLASSIFIER points). Seed it from a segmenter's encoder with --init-from "
        "models/unet.keras. Re-running the same --name resumes from its last epoch."
    )

    def add_arguments(self, parser):
        add_arguments(parser, ENCODERS, AUGMENTATIONS)
        parser.add_argument(
            "--data",
            default=str(settings.TUMORSITE_DATA),
            help="folder in the shared layout (default: TUMORSITE_DATA)",
        )
        default_dir = (
            Path(settings.TUMORSITE_TYPE_CLASSIFIER).parent
            if settings.TUMORSITE_TYPE_CLASSIFIER
            else Path(settings.TUMORSITE_MODELS_DIR) / "type_classifier"
        )
        parser.add_argument(
            "--output-dir", default=str(default_dir), help=f"where the bundle goes (default {default_dir})"
        )

    def handle(self, *args, **o):
        data = Path(o["data"])
        if not (data / "cases.csv").is_file():
            raise CommandError(f"{data} has no cases.csv: pass --data DIR in the shared layout.")
        if o["threads"]:
            set_threads(o["threads"])
        try:
            result = train_type_classifier(
                config_from_args(o), log=self.stdout.write, verbose=1 if self.stdout.isatty() else 2
            )
        except (ValueError, RuntimeError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        val = result["metrics"]["val"]
        self.stdout.write(
            self.style.SUCCESS(
                f"{result['name']}: validation accuracy {val['accuracy']:.4f} ({val['n']} slices), by type "
                + ", ".join(f"{t} {a:.3f}" for t, a in val["accuracy_by_type"].items())
            )
        )
        if Path(result["path"]).resolve() != Path(settings.TUMORSITE_TYPE_CLASSIFIER or "").resolve():
            self.stdout.write(
                f"TUMORSITE_TYPE_CLASSIFIER points elsewhere; set it to {result['path']} to use this one"
            )
