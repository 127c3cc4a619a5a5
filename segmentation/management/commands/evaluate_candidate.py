"""Score a candidate against its slot's active version on the same held-out patients."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from segmentation.services.lifecycle import (
    MIN_RECORD_SLICES,
    HeldOut,
    LifecycleError,
    candidate_evaluate,
    candidate_evaluate_on_record,
    candidate_get,
    dump,
    evaluation_table,
)


class Command(BaseCommand):
    help = (
        "Score the candidate NAME (slot@hash12, or a slot with one candidate) and its slot's active version "
        "on the same held-out slices of --data: the patients of --split held out from BOTH models as each "
        "was trained (default: test), or fold --fold K of --folds N by patient group. Prints per-model "
        "mean Dice and the paired difference (candidate - active, per slice) with a 95 % interval that "
        "resamples whole patient groups; stores the result on the candidate (promote_model reads it). "
        "--from-record scores them instead on the outlines clinicians drew in the record after both models "
        "were trained."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "name", help="the candidate: slot@hash12 as register_candidate printed, or its slot"
        )
        parser.add_argument(
            "--data",
            default=str(settings.TUMORSITE_DATA),
            help="dataset folder in the shared layout: cases.csv, images/, masks/ (default: TUMORSITE_DATA)",
        )
        parser.add_argument(
            "--split",
            choices=["val", "test"],
            default="test",
            help="score the patients of this split held out from both models (default: test)",
        )
        parser.add_argument(
            "--fold",
            type=int,
            help="score fold K (0-based) of --folds N by patient group instead of a split; only held out "
            "if neither model was trained on it (e.g. fold models)",
        )
        parser.add_argument("--folds", type=int, default=5, help="number of folds for --fold (default 5)")
        parser.add_argument(
            "--from-record",
            action="store_true",
            help="score on the record's clinician-drawn outlines (corrected or restored masks) set after "
            "both models were trained, instead of --data; refused with fewer than --min-slices",
        )
        parser.add_argument(
            "--min-slices",
            type=int,
            default=MIN_RECORD_SLICES,
            help=f"with --from-record: the fewest outlines to compare on (default {MIN_RECORD_SLICES})",
        )
        parser.add_argument("--limit", type=int, help="score at most N slices (a quick look, not a decision)")
        parser.add_argument("--json", dest="json_out", metavar="PATH", help="also write the result here")

    def handle(self, *args, **o):
        try:
            candidate = candidate_get(o["name"])
            if o["from_record"]:
                if o["fold"] is not None:
                    raise LifecycleError("--from-record scores the record's outlines; it takes no --fold.")
                evaluation = candidate_evaluate_on_record(
                    candidate=candidate, min_slices=o["min_slices"], limit=o["limit"]
                )
                return self._report(evaluation, o)
            held_out = HeldOut(
                split=o["split"], fold=o["fold"], folds=o["folds"] if o["fold"] is not None else None
            )
            evaluation = candidate_evaluate(
                candidate=candidate, data_dir=Path(o["data"]), held_out=held_out, limit=o["limit"]
            )
        except LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        self._report(evaluation, o)

    def _report(self, evaluation: dict, o: dict) -> None:
        self.stdout.write(evaluation_table(evaluation))
        if o["json_out"]:
            dump(evaluation, Path(o["json_out"]))
            self.stdout.write(self.style.SUCCESS(f"wrote {o['json_out']}"))
