"""Train a segmenter and register it as a model version (thin wrapper over ``ml.train``)."""

import tempfile
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ml.train import add_training_arguments, config_from_options, set_threads, train
from segmentation.management.commands.sync_models import announce_synced_versions
from segmentation.services import model_versions_sync, models_dir


class Command(BaseCommand):
    help = (
        "Train a segmenter on data in the shared layout (cases.csv, images/, masks/), split by patient "
        "group; write <name>.keras and <name>.json to --output-dir (default: the models directory) and, "
        "there only, register the model version. Re-running the same --name resumes from its last epoch. "
        "--like models/<name>.json trains a model of a shipped bundle's shape from scratch."
    )

    def add_arguments(self, parser):
        add_training_arguments(
            parser,
            data_default=str(settings.TUMORSITE_DATA),
            output_default=str(settings.TUMORSITE_MODELS_DIR),
        )
        parser.add_argument(
            "--from-record",
            action="store_true",
            help="train on the clinical record instead: every case with an imported or "
            "clinician-corrected mask, exported with export_cases to a temporary folder",
        )
        parser.add_argument("--no-register", action="store_true", help="do not register the model version")

    def handle(self, *args, **o):
        try:
            cfg = config_from_options(o, o["data"])  # a bad option fails here, before any export or data read
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        if o["from_record"]:
            with tempfile.TemporaryDirectory(prefix="tumorsite-record-") as tmp:
                call_command("export_cases", tmp, "--no-progress", stdout=self.stdout)
                return self._train(replace(cfg, data_dir=tmp), o)
        return self._train(cfg, o)

    def _train(self, cfg, o: dict):
        if o["threads"]:
            set_threads(o["threads"])

        data = Path(cfg.data_dir)
        if not (data / "cases.csv").is_file():
            raise CommandError(f"{data} has no cases.csv: pass --data DIR in the shared layout.")
        try:
            result = train(cfg, log=self.stdout.write, verbose=1 if self.stdout.isatty() else 2)
        except (ValueError, RuntimeError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        val = result["metrics"]["val"]
        self.stdout.write(
            self.style.SUCCESS(
                f"{result['name']}: validation Dice {val['dice_mean']:.4f}, IoU {val['iou_mean']:.4f} "
                f"({val['n']} slices), threshold {result['threshold']}"
            )
        )
        if o["no_register"]:
            return
        output_dir = Path(o["output_dir"])
        if output_dir.resolve() != models_dir().resolve():
            # Registering syncs a whole folder: from another one it would repoint same-named versions at
            # the candidate and deactivate every served bundle that is not in that folder.
            self.stdout.write(
                f"not registered: {output_dir} is not the models directory ({models_dir()}). Compare it "
                f"(python -m ml.calibrate --compare {Path(result['path'])}), then copy "
                f"{result['name']}.keras and {result['name']}.json there and run manage.py sync_models "
                "to serve it."
            )
            return
        model_versions_sync(directory=output_dir)
        self.stdout.write(f"registered model version {result['name']}")
        announce_synced_versions(self.stdout, self.style)
