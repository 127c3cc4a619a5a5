import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ml.data import kfold_by_patient, read_records, split_by_patient
from recommender import tuning
from recommender.services import embedding_model_version
from segmentation.models import ModelVersion
from segmentation.services import primary_model_version


class Command(BaseCommand):
    help = (
        "Choose the combined vector's weights (discriminant, features, embedding) and the embedding model by "
        "k-fold cross-validation by patient group on the training + validation patients (the test patients "
        "are never read). Prints type accuracy and mAP@k for every setting, best first, and writes them as "
        "JSON. By default the queries are outlined and embedded by the served primary model (run "
        "`sync_models` first), which trained on most of these patients; --fold-models describes each fold "
        "with the U-Net that held it out instead. The slow describing pass is cached (--cache)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--data", required=True, help="folder in the shared layout (cases.csv, images/, masks/)"
        )
        parser.add_argument("--json", required=True, help="where to write every setting's scores")
        parser.add_argument(
            "--folds", type=int, default=5, help="cross-validation folds by patient group (default 5)"
        )
        parser.add_argument("--seed", type=int, default=42, help="split and fold seed (the training default)")
        parser.add_argument(
            "--k", type=int, default=10, help="neighbours in the vote and results ranked (default 10)"
        )
        parser.add_argument(
            "--w-discriminant",
            type=float,
            nargs="+",
            default=[1.0],
            metavar="W",
            help="discriminant block weights to try (default 1)",
        )
        parser.add_argument(
            "--w-features",
            type=float,
            nargs="+",
            default=[1.0],
            metavar="W",
            help="hand-made feature block weights to try (default 1)",
        )
        parser.add_argument(
            "--w-embedding",
            type=float,
            nargs="+",
            default=[0.0, 0.3, 0.6, 1.0, 1.5],
            metavar="W",
            help="embedding block weights to try (default 0 0.3 0.6 1 1.5)",
        )
        parser.add_argument(
            "--embedding-models",
            nargs="+",
            metavar="NAME",
            help="active model versions whose bottleneck to try as the embedding "
            "(default: the one build_case_base uses)",
        )
        parser.add_argument(
            "--fold-models",
            nargs="+",
            metavar="KERAS",
            help="segmenter bundles trained with --fold K, one per fold (the same --folds and --seed): each "
            "fold's queries are outlined and embedded by the one that held the fold out, and the base's "
            "embeddings for that fold come from it too, so no query is described by a model that trained "
            "on it (instead of the primary model and --embedding-models)",
        )
        parser.add_argument(
            "--cache",
            default="var/tune_retrieval.npz",
            help="cache of the described slices (default var/tune_retrieval.npz)",
        )
        parser.add_argument(
            "--balanced-vote",
            choices=["off", "on", "both"],
            default="off",
            help="the kNN type vote as served (off), corrected by each type's share of the base so a rare "
            "type is not outvoted for being rare (on), or both, each setting scored either way",
        )
        parser.add_argument(
            "--classifier-folds",
            nargs="+",
            metavar="KERAS",
            help="type classifier bundles trained with --fold K, one per fold (the same --folds and "
            "--seed): each query is also typed by the one that held its fold out, blended with the kNN "
            "vote at each --classifier-weights, as the served suggestion is; one that reads the tumour's "
            "outline (--tumour-region) gets the query's outline from --fold-models",
        )
        parser.add_argument(
            "--maps-cache",
            default="var/region_choice",
            help="folder caching the fold models' maps of their folds for the outlines a classifier reads "
            "(default var/region_choice, shared with python -m ml.region_choice; '' for none)",
        )
        parser.add_argument(
            "--classifier-weights",
            type=float,
            nargs="+",
            default=[0.0, 0.25, 0.5, 0.75, 1.0],
            metavar="W",
            help="the classifier's shares to score with --classifier-folds (default 0 0.25 0.5 0.75 1; "
            "0 is the kNN vote alone)",
        )
        parser.add_argument("--limit", type=int, help="at most this many slices (a quick look)")

    def handle(self, *args, **o):
        data = Path(o["data"])
        if not (data / "cases.csv").is_file():
            raise CommandError(f"{data} has no cases.csv: pass --data DIR in the shared layout.")
        if o["folds"] < 2:
            raise CommandError("--folds must be at least 2.")
        records = read_records(data)
        split = split_by_patient(records, seed=o["seed"])
        wanted = set(split["train"]) | set(split["val"])
        records = [r for r in records if r.id in wanted]
        # Dealt over every development patient, as ml.train --fold K deals them, then cut to --limit.
        folds = kfold_by_patient(records, k=o["folds"], seed=o["seed"])
        if o["limit"]:
            records = records[: o["limit"]]
            kept = {r.id for r in records}
            folds = [[i for i in fold if i in kept] for fold in folds]
        if o["fold_models"]:
            if o["embedding_models"]:
                raise CommandError(
                    "--fold-models embeds with the fold models: it takes no --embedding-models."
                )
            described, names, described_by = self._describe_by_fold(data, records, folds, o)
        else:
            described, names, described_by = self._describe(data, records, o)
        settings_ = tuning.grid(o["w_discriminant"], o["w_features"], o["w_embedding"])
        classifier, classifier_weights = None, []
        if o["classifier_folds"]:
            if any(not 0.0 <= w <= 1.0 for w in o["classifier_weights"]):
                raise CommandError("--classifier-weights must lie in [0, 1].")
            try:
                classifier = tuning.out_of_fold_classifier(
                    data,
                    folds,
                    [Path(p) for p in o["classifier_folds"]],
                    segmenters=[Path(p) for p in o["fold_models"] or []],
                    maps_cache=Path(o["maps_cache"]) if o["maps_cache"] else None,
                )
            except (ValueError, FileNotFoundError) as exc:
                raise CommandError(str(exc)) from exc
            classifier_weights = list(dict.fromkeys(o["classifier_weights"]))

        balanced = {"off": [False], "on": [True], "both": [False, True]}[o["balanced_vote"]]
        runs = [
            (name, weights, corrected)
            for name in names or [None]
            for weights in settings_
            if name is not None or not weights["embedding"]
            for corrected in balanced
        ]
        fitted: dict = {}  # each fold's scaler fit, shared by every weight setting of one embedding
        results = [
            tuning.cross_validate(
                described,
                folds,
                weights,
                embedding=name,
                k=o["k"],
                fitted=fitted,
                balanced=corrected,
                classifier=classifier,
                classifier_weights=classifier_weights,
            )
            for name, weights, corrected in tqdm(runs, unit="setting", disable=o["verbosity"] == 0)
        ]
        results.sort(key=lambda r: (-r["type_accuracy"], -r["map"]))
        for r in results:
            w = r["weights"]
            self.stdout.write(
                f"w_d {w['discriminant']:<4} w_f {w['features']:<4} w_e {w['embedding']:<4} "
                f"{r['embedding_model'] or '(no embedding)':<32} "
                f"{'balanced ' if r['balanced_vote'] else ''}accuracy {r['type_accuracy']:.4f} "
                f"(meningioma {r['type_accuracy_by_type'].get('meningioma', float('nan')):.4f}) "
                f"mAP {r['map']:.4f} folds {r['type_accuracy_by_fold']}"
            )
            for w, blend in r.get("by_classifier_weight", {}).items():
                self.stdout.write(
                    f"    with the out-of-fold classifier at w {w}: accuracy {blend['type_accuracy']:.4f} "
                    f"(meningioma {blend['type_accuracy_by_type'].get('meningioma', float('nan')):.4f}) "
                    f"folds {blend['type_accuracy_by_fold']}"
                )
        out = {
            "folds": o["folds"],
            "seed": o["seed"],
            "k": o["k"],
            "n_slices": len(records),
            "patients": "train + val of ml.data.split_by_patient",
            "described_by": described_by,
            "classifier_folds": [Path(p).name for p in o["classifier_folds"] or []],
            "results": results,
        }
        Path(o["json"]).write_text(json.dumps(out, indent=2) + "\n")

    def _describe(self, data: Path, records: list, o: dict) -> tuple[tuning.Described, list, str]:
        """The slices described by the primary model's masks, with each embedding model's embeddings."""
        primary = primary_model_version()
        if primary is None:
            raise CommandError("No segmentation model is registered: run `manage.py sync_models`.")
        if o["embedding_models"]:
            versions = list(
                ModelVersion.objects.segmenters().filter(
                    name__in=o["embedding_models"], is_active=True, is_ensemble=False
                )
            )
            missing = set(o["embedding_models"]) - {v.name for v in versions}
            if missing:
                raise CommandError(f"not an active single model: {', '.join(sorted(missing))}")
        else:
            default = embedding_model_version()
            versions = [default] if default is not None else []
        key = tuning.cache_key(
            [r.id for r in records], primary.weights_key, [v.weights_key for v in versions]
        )
        described = self._cached(
            o,
            key,
            f"ground-truth and {primary.name} masks",
            len(records),
            lambda progress: tuning.describe_records(
                data, records, primary=primary, embed_versions=versions, progress=progress
            ),
        )
        return described, [v.weights_key for v in versions], f"the primary model {primary.weights_key}"

    def _describe_by_fold(
        self, data: Path, records: list, folds: list, o: dict
    ) -> tuple[tuning.Described, list, str]:
        """The slices described as each fold sees them, by the fold model that held it out."""
        bundles = [Path(p) for p in o["fold_models"]]
        try:
            _, names = tuning.fold_bundles(data, folds, bundles)
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        key = tuning.cache_key([r.id for r in records], "by fold", names)
        described = self._cached(
            o,
            key,
            "ground-truth masks and each fold model's",
            len(records),
            lambda progress: tuning.describe_by_fold(data, records, folds, bundles, progress=progress),
        )
        # One embedding per fold: cross_validate takes the list as one setting.
        return described, [names], f"each fold's own model: {', '.join(names)}"

    def _cached(self, o: dict, key: str, what: str, n: int, describe):
        cache = Path(o["cache"])
        described = tuning.Described.load(cache, key)
        if described is not None:
            self.stdout.write(f"using the described slices cached in {cache}")
            return described
        self.stdout.write(f"describing {n} slices ({what})…")
        bar = tqdm(total=n, unit="slice", disable=o["verbosity"] == 0)
        described = describe(lambda done, total: bar.update(done - bar.n))
        bar.close()
        cache.parent.mkdir(parents=True, exist_ok=True)
        described.save(cache, key)
        return described
