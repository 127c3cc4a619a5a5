"""Train the tumour-type classifier and register it as a candidate (thin wrapper over
``ml.type_classification``)."""

import tempfile
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ml.data import AUGMENTATIONS
from ml.encoders import ENCODERS
from ml.training.loop import set_threads
from ml.type_classification import add_arguments, config_from_args, train_type_classifier
from segmentation.services import models_dir
from segmentation.services.lifecycle import LifecycleError, candidate_register


class Command(BaseCommand):
    help = (
        "Train the tumour-type classifier (meningioma, glioma, pituitary) on data in the shared layout, "
        "split by patient group as the segmenters are; write <name>.keras and <name>.json to --output-dir "
        "(default: <models dir>/candidates) and register the bundle as a CANDIDATE for the slot "
        "type_classifier: the type suggestion keeps the active classifier until evaluate_candidate and "
        "promote_model (docs/training.md, Model lifecycle). Seed it from a segmenter's encoder with "
        "--init-from models/unet.keras. --from-record trains on the record's cases typed by a clinician or "
        "by the dataset instead. Re-running the same --name resumes from its last epoch."
    )

    def add_arguments(self, parser):
        add_arguments(parser, ENCODERS, AUGMENTATIONS)
        parser.add_argument(
            "--data",
            default=str(settings.TUMORSITE_DATA),
            help="folder in the shared layout (default: TUMORSITE_DATA)",
        )
        default_dir = Path(settings.TUMORSITE_MODELS_DIR) / "candidates"
        parser.add_argument(
            "--output-dir", default=str(default_dir), help=f"where the bundle goes (default {default_dir})"
        )
        parser.add_argument(
            "--from-record",
            action="store_true",
            help="train on the clinical record instead: every case with a trusted outline whose tumour type "
            "a clinician entered or the dataset gave (never a suggested one), exported with export_cases "
            "--trusted-types to a temporary folder",
        )
        parser.add_argument(
            "--no-register", action="store_true", help="write the bundle only; record no candidate"
        )

    def handle(self, *args, **o):
        served = settings.TUMORSITE_TYPE_CLASSIFIER
        output = Path(o["output_dir"]).resolve()
        if output == models_dir().resolve() or (served and output == Path(served).resolve().parent):
            # A bundle written there could replace the served classifier without any comparison.
            raise CommandError(
                f"--output-dir {o['output_dir']} holds served models; write to another folder (default "
                f"{models_dir() / 'candidates'}): the bundle is registered as a candidate and serves only "
                "after promote_model."
            )
        if o["threads"]:
            set_threads(o["threads"])
        cfg = config_from_args(o)
        if o["from_record"]:
            with tempfile.TemporaryDirectory(prefix="tumorsite-record-") as tmp:
                call_command("export_cases", tmp, "--trusted-types", "--no-progress", stdout=self.stdout)
                return self._train(replace(cfg, data_dir=tmp), o)
        return self._train(cfg, o)

    def _train(self, cfg, o: dict) -> None:
        data = Path(cfg.data_dir)
        if not (data / "cases.csv").is_file():
            raise CommandError(f"{data} has no cases.csv: pass --data DIR in the shared layout.")
        try:
            result = train_type_classifier(
                cfg, log=self.stdout.write, verbose=1 if self.stdout.isatty() else 2
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
        if o["no_register"]:
            return
        try:
            candidate = candidate_register(path=Path(result["path"]))
        except LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"registered candidate {candidate.name} for slot {candidate.slot} (not served); next: "
            f"manage.py evaluate_candidate {candidate.name} --data DIR, then promote_model {candidate.name}"
        )
