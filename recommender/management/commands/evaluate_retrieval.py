import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ml.data import read_records, split_by_patient
from recommender.evaluation import evaluate


class Command(BaseCommand):
    help = (
        "Run each slice of DIR (shared layout) through the upload pipeline (primary segmentation, features, "
        "type vote (kNN blended with the type classifier), similar cases) against the case base, without "
        "storing it; print and write the metrics."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--data", required=True, help="folder in the shared layout (cases.csv, images/, masks/)"
        )
        parser.add_argument("--json", required=True, help="where to write the metrics")
        parser.add_argument("--k", type=int, default=10, help="cut-off of precision@k and mAP@k (default 10)")
        parser.add_argument(
            "--split",
            choices=["train", "val", "test"],
            help="only this split of ml.data.split_by_patient (the segmenters' split)",
        )
        parser.add_argument("--seed", type=int, default=42, help="split seed (the training default)")
        parser.add_argument(
            "--ground-truth-masks",
            action="store_true",
            help="use the folder's masks instead of the primary model's (retrieval alone)",
        )
        parser.add_argument("--limit", type=int, help="at most this many queries (a quick look)")
        parser.add_argument(
            "--classifier-weights",
            type=float,
            nargs="+",
            metavar="W",
            default=[],
            help="also score these shares of the type classifier in the type vote (0 = kNN alone, "
            "1 = classifier alone), in the same pass; choose on --split val",
        )

    def handle(self, *args, **options):
        data = Path(options["data"])
        if any(not 0.0 <= w <= 1.0 for w in options["classifier_weights"]):
            raise CommandError("--classifier-weights must lie in [0, 1].")
        ids = None
        if options["split"]:
            ids = split_by_patient(read_records(data), seed=options["seed"])[options["split"]]

        bar = tqdm(total=0, unit="slice", disable=options["verbosity"] == 0)

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        try:
            result = evaluate(
                data_dir=data,
                k=options["k"],
                ids=ids,
                limit=options["limit"],
                ground_truth_masks=options["ground_truth_masks"],
                classifier_weights=options["classifier_weights"],
                progress=progress,
            )
        except (RuntimeError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        Path(options["json"]).write_text(json.dumps(result, indent=2) + "\n")
        self.stdout.write(json.dumps(result, indent=2))
