"""Train a segmenter and register it as a candidate model version (thin wrapper over ``ml.train``)."""

import tempfile
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ml.train import add_training_arguments, config_from_options, set_threads, train
from segmentation.services import models_dir
from segmentation.services.lifecycle import LifecycleError, candidate_register


class Command(BaseCommand):
    help = (
        "Train a segmenter on data in the shared layout (cases.csv, images/, masks/), split by patient "
        "group; write <name>.keras and <name>.json to --output-dir (default: <models dir>/candidates) and "
        "register the bundle as a CANDIDATE for the slot <name> (or --replaces): it serves nothing until "
        "evaluate_candidate and promote_model (docs/training.md, Model lifecycle). Re-running the same "
        "--name resumes from its last epoch. --like models/<name>.json trains a model of a shipped "
        "bundle's shape from scratch."
    )

    def add_arguments(self, parser):
        add_training_arguments(
            parser,
            data_default=str(settings.TUMORSITE_DATA),
            output_default=str(Path(settings.TUMORSITE_MODELS_DIR) / "candidates"),
        )
        parser.add_argument(
            "--from-record",
            action="store_true",
            help="train on the clinical record instead: every case with an imported or "
            "clinician-corrected mask, exported with export_cases to a temporary folder",
        )
        parser.add_argument(
            "--replaces",
            metavar="NAME",
            help="register the candidate for the served slot NAME (default: --name)",
        )
        parser.add_argument(
            "--no-register", action="store_true", help="write the bundle only; record no candidate"
        )

    def handle(self, *args, **o):
        if Path(o["output_dir"]).resolve() == models_dir().resolve():
            # sync_models serves the top of the models directory: a bundle written there could replace
            # a served model without any comparison.
            raise CommandError(
                f"--output-dir {o['output_dir']} is the models directory, whose bundles sync_models "
                f"serves; write to another folder (default {models_dir() / 'candidates'}): the bundle is "
                "registered as a candidate and served only after promote_model."
            )
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
        try:
            candidate = candidate_register(path=Path(result["path"]), slot=o["replaces"])
        except LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"registered candidate {candidate.name} for slot {candidate.slot} (not served); next: "
            f"manage.py evaluate_candidate {candidate.name} --data DIR, then promote_model {candidate.name}"
        )
