"""Post-processing chosen on the validation split only: flip TTA or not, threshold, clean-up.

``train`` calls ``calibrate`` when it finishes. ``python -m ml.calibrate`` re-runs the choice for the
bundles in a models folder (for example after changing the candidates) and chooses the ensemble's
own settings, written to ``<models-dir>/ensemble.json``. The split comes from each bundle's metadata,
so the test split is never looked at.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ml.data import Slices, load_slices, read_records, split_by_patient
from ml.evaluate import choose_postprocess, dice_iou, summarise
from ml.postprocess import binarize

ENSEMBLE_FILE = "ensemble.json"


def calibrate(predictor, val: Slices, *, tta_choices=(False, True)) -> dict:
    """Pick TTA, threshold and clean-up (``ml.evaluate.CLEANUPS``) that maximise mean validation Dice;
    score the pick."""
    best = None
    for tta in tta_choices:
        probs = predictor.predict_proba(val.images, tta=tta)
        post = choose_postprocess(probs, val.masks)
        if best is None or post["val_dice"] > best[1]["val_dice"] + 1e-9:
            best = (tta, post, probs)
    tta, post, probs = best
    cleanup = {"keep_largest": post["keep_largest"], "keep_by": post["keep_by"], "min_component_px": 0}
    scores = [dice_iou(binarize(p, post["threshold"], **cleanup), t) for p, t in zip(probs, val.masks)]
    return {"threshold": post["threshold"], "tta": tta, "postprocess": cleanup,
            "val_metrics": summarise(scores, [r.tumour_type for r in val.records])}


def cleanup_text(post: dict) -> str:
    """How a bundle's clean-up reads in a log line."""
    return f"keep one component by {post.get('keep_by', 'area')}" if post.get("keep_largest") else "every component"


def validation_slices(data_dir: str | Path, split_meta: dict) -> Slices:
    records = read_records(data_dir)
    ids = split_by_patient(records, seed=split_meta.get("seed", 42),
                           val_fraction=split_meta.get("val_fraction", 0.15),
                           test_fraction=split_meta.get("test_fraction", 0.15))["val"]
    return load_slices(data_dir, ids)


def _split_key(split_meta: dict) -> tuple:
    return tuple(split_meta.get(k) for k in ("by", "stratified_by", "seed", "val_fraction", "test_fraction"))


def _apply(meta: dict, choice: dict) -> dict:
    meta = dict(meta)
    meta["threshold"], meta["tta"], meta["postprocess"] = choice["threshold"], choice["tta"], choice["postprocess"]
    meta.setdefault("metrics", {})["val"] = choice["val_metrics"]
    return meta


def report_cross_validation(bundles, val: Slices, *, folds: int, repeats: int) -> None:
    """Print what choosing the post-processing is worth on held-out validation patient groups, for the
    current candidates (``ml.evaluate.THRESHOLDS`` x ``CLEANUPS``) against the earlier ones. Each model
    (and the ensemble) keeps its own TTA setting."""
    from ml.evaluate import CLEANUPS, EARLIER_CANDIDATES, THRESHOLDS, cross_validate_choice
    from ml.inference import Ensemble, load_segmenter

    members = [load_segmenter(p) for p in bundles]
    candidates = {"current": (THRESHOLDS, CLEANUPS), "earlier": EARLIER_CANDIDATES}
    groups = [r.patient_group for r in val.records]
    def describe(thresholds, cleanups):
        rules = ", ".join(cleanup_text(c) for c in cleanups)
        return f"thresholds {thresholds[0]:.2f}-{thresholds[-1]:.2f}; {rules}"

    print(f"{folds}-fold x {repeats} by patient group over {len(set(groups))} validation groups ({len(val)} slices); "
          + "; ".join(f"{name} = {describe(*cands)}" for name, cands in candidates.items()))
    for model in [*members, Ensemble(members)]:
        held_out = cross_validate_choice(model.predict_proba(val.images), val.masks, groups, candidates,
                                         folds=folds, repeats=repeats)
        print(f"{model.name}: current {held_out['current']:.4f}, earlier {held_out['earlier']:.4f}, "
              f"difference {held_out['current'] - held_out['earlier']:+.4f}", flush=True)


def main(argv=None) -> None:
    from ml.inference import Ensemble, load_segmenter, read_metadata, shipped_bundles

    parser = argparse.ArgumentParser(description="Choose TTA, threshold and clean-up on the validation split.")
    parser.add_argument("--data", required=True, help="the training data folder (shared layout)")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--ensemble-only", action="store_true", help="leave the bundles as they are")
    parser.add_argument("--cv-folds", type=int, metavar="K",
                        help="write nothing; instead report, for each bundle and the ensemble, the held-out "
                             "validation Dice of choosing the post-processing on the other K-1 folds of "
                             "patient groups, with this release's candidates and with the earlier ones")
    parser.add_argument("--cv-repeats", type=int, default=3, help="with --cv-folds: random fold deals (default 3)")
    args = parser.parse_args(argv)

    bundles = shipped_bundles(args.models_dir)
    if not bundles:
        raise SystemExit(f"No bundles in {args.models_dir}.")
    split_meta = read_metadata(bundles[0])["training"]["split"]
    val = validation_slices(args.data, split_meta)
    if args.cv_folds:
        return report_cross_validation(bundles, val, folds=args.cv_folds, repeats=args.cv_repeats)
    for path in [] if args.ensemble_only else bundles:
        meta = read_metadata(path)
        if _split_key(meta["training"]["split"]) != _split_key(split_meta):
            raise SystemExit(f"{path.name} was trained on another split; calibrate it on its own.")
        choice = calibrate(load_segmenter(path), val)
        path.with_suffix(".json").write_text(json.dumps(_apply(meta, choice), indent=2, sort_keys=True) + "\n")
        print(f"{path.stem}: val Dice {choice['val_metrics']['dice_mean']:.4f} with threshold "
              f"{choice['threshold']}, tta {choice['tta']}, {cleanup_text(choice['postprocess'])}")
    members = [load_segmenter(p) for p in bundles]
    choice = calibrate(Ensemble(members), val, tta_choices=(None,))  # members keep their own TTA
    ensemble = _apply({"name": "ensemble", "members": [m.name for m in members],
                       "description": "mean of the members' probability maps", "training": {"split": split_meta}},
                      choice)
    (Path(args.models_dir) / ENSEMBLE_FILE).write_text(json.dumps(ensemble, indent=2, sort_keys=True) + "\n")
    print(f"ensemble: val Dice {choice['val_metrics']['dice_mean']:.4f} with threshold {choice['threshold']}, "
          f"tta {choice['tta']}, {cleanup_text(choice['postprocess'])}")


if __name__ == "__main__":
    main()
