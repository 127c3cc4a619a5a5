"""The fold type classifiers by cross-validation, each alone on its own fold's validation patients.

``make cv-classifiers`` trains one classifier per fold (``models/cv/type_classifier/type_classifier_cvK``
and its variants, a suffix each: ``_w`` class-balanced, ``_r`` looking at the tumour's outline). This
scores every set of five the same way, on the fold each member never trained on, with flip TTA, and
writes the accuracy overall and by type, per fold and as mean and sd over the folds.

A classifier that takes the outline (``--tumour-region``) is scored three ways:

- ``segmenter``: the outline the fold's U-Net (``models/cv/unet_cvK``, which held out the same patients)
  draws, as served: its own test-time augmentation, threshold and clean-up. This is what an upload gets.
- ``expert``: the expert mask, for what a perfect outline would give.
- ``none``: no outline, the whole slice alone, as for a slice the segmenter outlines nothing on.

The maps are the ones ``ml.region_choice`` caches (``fold_maps``), so a second study costs no segmenting.
Nothing here changes a served model.

    python -m ml.type_cv --data DIR [--models-dir models/cv] [--sets "" _w _r] --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ml.data import TUMOUR_TYPES, read_records, split_ids_as_trained
from ml.region_choice import fold_maps
from ml.type_classification import accuracy_by_type, labels_of, load_type_classifier

OUTLINES = ("segmenter", "expert", "none")


def classifier_sets(models_dir: Path, suffixes: list[str] | None, folds: int) -> dict[str, list[Path]]:
    """``{suffix: [the fold classifiers, fold 0 first]}`` for each suffix with all ``folds`` members (the
    given ones, or every one found); a given suffix with a member missing raises ``ValueError``."""
    found = sorted(models_dir.glob("type_classifier/type_classifier_cv0*.keras"))
    names = suffixes if suffixes is not None else [p.stem.removeprefix("type_classifier_cv0") for p in found]
    sets = {}
    for suffix in names:
        paths = [models_dir / f"type_classifier/type_classifier_cv{k}{suffix}.keras" for k in range(folds)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing and suffixes is not None:
            raise ValueError(f"the set {suffix or '(plain)'!r} lacks {', '.join(missing)} in {models_dir}.")
        if not missing:
            sets[suffix] = paths
    if not sets:
        raise ValueError(f"no set of {folds} fold classifiers in {models_dir / 'type_classifier'}.")
    return sets


def score_fold(classifier, model, slices, maps) -> dict[str, dict]:
    """``{outline: accuracy_by_type's figures}`` of one fold classifier on its fold's slices; one
    (``none``) for a classifier that does not read the outline."""
    labels = labels_of(slices.records)
    if not classifier.takes_outline:
        return {"none": accuracy_by_type(classifier.probabilities(slices.images), labels)}
    outlines = {
        "segmenter": [model.binarize(p) for p in maps],
        "expert": slices.masks,
        "none": None,
    }
    return {
        name: accuracy_by_type(classifier.probabilities(slices.images, masks), labels)
        for name, masks in outlines.items()
    }


def summarise(by_fold: list[dict]) -> dict:
    """Mean and sd over folds of the accuracy and of each type's."""
    out = {
        "accuracy_mean": statistics.mean(f["accuracy"] for f in by_fold),
        "accuracy_sd": statistics.stdev(f["accuracy"] for f in by_fold),
    }
    for t in TUMOUR_TYPES:
        values = [f["accuracy_by_type"][t] for f in by_fold if t in f["accuracy_by_type"]]
        if len(values) > 1:
            out[f"{t}_mean"], out[f"{t}_sd"] = statistics.mean(values), statistics.stdev(values)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.type_cv",
        description="Score each set of fold type classifiers (models/cv/type_classifier/type_classifier_cvK"
        "<suffix>) on its own folds' validation patients, one that reads the tumour's outline with the fold "
        "U-Net's outline, the expert's and none. Writes per-fold figures and their mean and sd as JSON.",
    )
    parser.add_argument("--data", required=True, help="dataset folder in the shared layout")
    parser.add_argument("--models-dir", default="models/cv", help="where the fold bundles are")
    parser.add_argument(
        "--sets",
        nargs="*",
        help='classifier name suffixes, "" for the plain set (default: every set with all its folds)',
    )
    parser.add_argument("--folds", type=int, default=5, help="folds per set (default 5)")
    parser.add_argument(
        "--cache", default="var/region_choice", help="folder for the U-Nets' maps (float32 .npz); '' for none"
    )
    parser.add_argument("--json", required=True, help="write the figures here")
    args = parser.parse_args(argv)

    models_dir, data = Path(args.models_dir), Path(args.data)
    try:
        sets = classifier_sets(models_dir, args.sets, args.folds)
    except ValueError as exc:
        parser.error(str(exc))
    segmenters = [models_dir / f"unet_cv{k}.keras" for k in range(args.folds)]
    missing = [p.name for p in segmenters if not p.is_file()]
    if missing:
        parser.error(f"no fold U-Net {', '.join(missing)} in {models_dir}")
    records = read_records(data)
    cache = Path(args.cache) if args.cache else None
    rows: dict[tuple[str, str], list[dict]] = {}
    for k, segmenter in enumerate(segmenters):
        model, slices, maps = fold_maps(data, segmenter, cache)
        ids = [r.id for r in slices.records]
        for suffix, paths in sets.items():
            classifier = load_type_classifier(paths[k])
            split = classifier.metadata.get("training", {}).get("split", {})
            if split.get("fold") != k or split_ids_as_trained(records, split, "val") != ids:
                parser.error(f"{paths[k].name} was not validated on the patients of {segmenter.name}")
            for outline, figures in score_fold(classifier, model, slices, maps).items():
                rows.setdefault((suffix, outline), []).append({"fold": k, "bundle": paths[k].stem, **figures})
    results = []
    for (suffix, outline), by_fold in rows.items():
        s = summarise(by_fold)
        results.append({"set": suffix, "outline": outline, **s, "by_fold": by_fold})
        print(
            f"{'type_classifier_cvK' + suffix:24s} outline {outline:9s} accuracy {s['accuracy_mean']:.3f} "
            f"± {s['accuracy_sd']:.3f}, meningioma {s.get('meningioma_mean', float('nan')):.3f} "
            f"± {s.get('meningioma_sd', float('nan')):.3f}"
        )
    out = {
        "folds": args.folds,
        "segmenters": [p.stem for p in segmenters],
        "n_slices": sum(f["n"] for f in next(iter(rows.values()))),
        "tta": "flip",
        "results": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
