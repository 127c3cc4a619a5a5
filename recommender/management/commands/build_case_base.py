from django.core.management.base import BaseCommand
from tqdm import tqdm

from recommender.services import case_base_build


class Command(BaseCommand):
    help = (
        "Describe every case of the case base (ground-truth or validated masks) that lacks current features, "
        "then refit the feature scaler and the combined vectors. Run after import_cases or new weights."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-embedding", action="store_true", help="hand-made features only (no segmenter needed)"
        )

    def handle(self, *args, **options):
        bar = tqdm(total=0, unit="case", disable=options["verbosity"] == 0)

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        summary = case_base_build(use_embedding=not options["no_embedding"], progress=progress)
        bar.close()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in summary.items()))
