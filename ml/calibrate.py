"""Post-processing chosen on the validation split only: flip TTA, zoom TTA, threshold, clean-up.

``train`` calls ``calibrate`` when it finishes. ``python -m ml.calibrate`` re-runs the choice for the
bundles in a models folder (for example after changing the candidates) and chooses the ensemble's
own settings, written to ``<models-dir>/ensemble.json``. The split comes from each bundle's metadata,
so the test split is never looked at.

A fold bundle (``ml.train --fold K``) is calibrated on its own fold's validation patients, which are also
the patients its cross-validation figure is measured on, so that figure includes the choice.
``--nested-folds`` measures what the choice is worth: each fold scored with the settings chosen on the
other folds' out-of-fold maps (``calibrate_across_folds``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ml.data import Slices, load_slices, read_records, split_ids_as_trained
from ml.evaluate import (
    CLEANUPS,
    EARLIER_CANDIDATES,
    THRESHOLDS,
    _best_setting,
    choose_postprocess,
    cross_validate_tables,
    dice_iou,
    dice_table,
    group_bootstrap_ci,
    summarise,
)
from ml.inference import (
    Ensemble,
    combine_views,
    ensemble_proba,
    file_sha256,
    load_segmenter,
    read_metadata,
    shipped_bundles,
)
from ml.postprocess import binarize

ENSEMBLE_FILE = "ensemble.json"


# Test-time zoom candidates (``Segmenter.predict_proba``'s ``scales``): none, zooming in by 15 %, and
# zooming both in and out by 15 %. Chosen per model on the validation split, like flip TTA.
SCALE_CHOICES = ((1.0,), (1.0, 1.15), (0.87, 1.0, 1.15))


def _candidate_probs(predictor, images, tta_choices, scale_choices):
    """``(tta, scales, probabilities)`` for every candidate, each view predicted once: a flipped view
    is shared by every candidate that uses it. An ensemble (no ``view_proba``) is asked as it is."""

    if not hasattr(predictor, "view_proba"):
        for tta in tta_choices:
            yield tta, None, predictor.predict_proba(images, tta=tta)
        return
    plain, flipped = {}, {}
    for tta in tta_choices:
        for scales in scale_choices:
            views = []
            for s in scales:
                if s not in plain:
                    plain[s] = predictor.view_proba(images, scale=s, tta=False)
                if tta and s not in flipped:
                    flipped[s] = predictor.view_proba(images, scale=s, flip_only=True)
                views.append(
                    [((p + q) / 2.0, w) for (p, w), (q, _) in zip(plain[s], flipped[s], strict=True)]
                    if tta
                    else plain[s]
                )
            yield tta, scales, combine_views(views)


def calibrate(predictor, val: Slices, *, tta_choices=(False, True), scale_choices=SCALE_CHOICES) -> dict:
    """Pick flip TTA, zoom TTA (``SCALE_CHOICES``), threshold and clean-up (``ml.evaluate.CLEANUPS``) that
    maximise mean validation Dice; score the pick. A tie keeps the earlier, cheaper candidate."""
    return _calibrate(predictor, val, tta_choices, scale_choices)[0]


def _calibrate(
    predictor, val: Slices, tta_choices=(False, True), scale_choices=SCALE_CHOICES
) -> tuple[dict, list]:
    """``calibrate``'s choice and the chosen setting's validation probabilities."""
    return _choose(val, _candidate_probs(predictor, val.images, tta_choices, scale_choices))


def _choose(val: Slices, candidates) -> tuple[dict, list]:
    """The best of ``(tta, scales, probabilities)`` candidates on ``val``, and its probabilities."""
    best = None
    for tta, scales, probs in candidates:
        post = choose_postprocess(probs, val.masks)
        if best is None or post["val_dice"] > best[2]["val_dice"] + 1e-9:
            best = (tta, scales, post, probs)
    tta, scales, post, probs = best
    cleanup = {"keep_largest": post["keep_largest"], "keep_by": post["keep_by"], "min_component_px": 0}
    scores = [
        dice_iou(binarize(p, post["threshold"], **cleanup), t) for p, t in zip(probs, val.masks, strict=True)
    ]
    choice = {
        "threshold": post["threshold"],
        "tta": tta,
        "postprocess": cleanup,
        "val_metrics": summarise(scores, [r.tumour_type for r in val.records]),
    }
    if scales is not None:
        choice["tta_scales"] = list(scales)
    return choice, probs


def tta_text(choice: dict) -> str:
    """How a bundle's test-time augmentation reads in a log line."""
    zoom = choice.get("tta_scales") or [1.0]
    return f"flip tta {choice['tta']}" + (
        f", zoom {'/'.join(f'{s:g}' for s in zoom)}" if len(zoom) > 1 else ""
    )


def cleanup_text(post: dict) -> str:
    """How a bundle's clean-up reads in a log line."""
    return (
        f"keep one component by {post.get('keep_by', 'area')}"
        if post.get("keep_largest")
        else "every component"
    )


def validation_slices(data_dir: str | Path, split_meta: dict) -> Slices:
    return load_slices(data_dir, split_ids_as_trained(read_records(data_dir), split_meta, "val"))


def _split_key(split_meta: dict) -> tuple:
    return tuple(split_meta.get(k) for k in ("by", "stratified_by", "seed", "val_fraction", "test_fraction"))


def apply_choice(meta: dict, choice: dict) -> dict:
    """A copy of a bundle's metadata with ``calibrate``'s choice (threshold, TTA, clean-up) and its
    validation metrics in place of the old ones."""
    meta = dict(meta)
    meta["threshold"], meta["tta"], meta["postprocess"] = (
        choice["threshold"],
        choice["tta"],
        choice["postprocess"],
    )
    if "tta_scales" in choice:
        meta["tta_scales"] = choice["tta_scales"]
    meta.setdefault("metrics", {})["val"] = choice["val_metrics"]
    return meta


def report_cross_validation(bundles, val: Slices, *, folds: int, repeats: int) -> None:
    """Print what the validation-chosen settings are worth on held-out validation patient groups (each
    fold scored with the settings chosen on the others), for each bundle and the ensemble:

    - the post-processing: the current candidates (``ml.evaluate.THRESHOLDS`` x ``CLEANUPS``) against
      the earlier ones, on the maps without zoom TTA (each model keeps its flip-TTA choice);
    - zoom TTA: choosing among ``SCALE_CHOICES`` as well against no zoom, with the current candidates,
      and a paired 95 % interval of the difference that resamples patient groups. The ensemble's
      members share one zoom setting here.
    """

    members = [load_segmenter(p) for p in bundles]
    candidates = {"current": (THRESHOLDS, CLEANUPS), "earlier": EARLIER_CANDIDATES}
    groups = [r.patient_group for r in val.records]

    def describe(thresholds, cleanups):
        rules = ", ".join(cleanup_text(c) for c in cleanups)
        return f"thresholds {thresholds[0]:.2f}-{thresholds[-1]:.2f}; {rules}"

    print(
        f"{folds}-fold x {repeats} by patient group over {len(set(groups))} validation groups "
        f"({len(val)} slices); "
        + "; ".join(f"{name} = {describe(*cands)}" for name, cands in candidates.items())
        + "; zoom = also choosing among "
        + ", ".join("/".join(f"{s:g}" for s in c) for c in SCALE_CHOICES)
    )
    by_model = {
        m.name: {
            scales: probs for _, scales, probs in _candidate_probs(m, val.images, (m.tta,), SCALE_CHOICES)
        }
        for m in members
    }
    by_model["ensemble"] = {
        scales: [
            ensemble_proba(list(ps)) for ps in zip(*(by_model[m.name][scales] for m in members), strict=True)
        ]
        for scales in SCALE_CHOICES
    }
    for name, by_scales in by_model.items():
        plain = by_scales[SCALE_CHOICES[0]]
        tables = {key: dice_table(plain, val.masks, *cands) for key, cands in candidates.items()}
        tables["zoom"] = np.vstack([dice_table(by_scales[s], val.masks) for s in SCALE_CHOICES])
        held_out = cross_validate_tables(tables, groups, folds=folds, repeats=repeats)
        current, earlier, zoom = (held_out[k].mean() for k in ("current", "earlier", "zoom"))
        lo, hi = group_bootstrap_ci(held_out["zoom"] - held_out["current"], groups)
        print(
            f"{name}: current {current:.4f}, earlier {earlier:.4f}, difference {current - earlier:+.4f}; "
            f"zoom {zoom:.4f}, difference {zoom - current:+.4f} (95% CI {lo:+.4f} to {hi:+.4f})",
            flush=True,
        )


def _stacked_tables(predictor, val: Slices):
    """Every flip/zoom candidate's probabilities and one table of Dice per (candidate, threshold,
    clean-up) row and slice, in ``calibrate``'s order (so the first best row is ``calibrate``'s choice)."""

    probs = [p for _, _, p in _candidate_probs(predictor, val.images, (False, True), SCALE_CHOICES)]
    tables = [dice_table(p, val.masks) for p in probs]
    return probs, tables


def _chosen(probs, tables):
    """The in-sample choice's probabilities and per-slice Dice."""

    table = np.vstack(tables)
    row = _best_setting(table.mean(axis=1))
    return probs[row // len(tables[0])], table[row]


def _row_setting(row: int) -> dict:
    """The flip and zoom TTA, threshold and clean-up of a row of ``_stacked_tables``' stacked table: the
    flip/zoom candidates in ``_candidate_probs``' order, each with ``dice_table``'s settings."""
    per = len(THRESHOLDS) * len(CLEANUPS)
    candidate, setting = divmod(row, per)
    tta, scales = divmod(candidate, len(SCALE_CHOICES))
    cleanup, threshold = divmod(setting, len(THRESHOLDS))
    return {
        "tta": bool(tta),
        "tta_scales": list(SCALE_CHOICES[scales]),
        "threshold": THRESHOLDS[threshold],
        "postprocess": dict(CLEANUPS[cleanup]),
    }


def nested_fold_choice(tables: list[np.ndarray]) -> list[int]:
    """For each fold's table (the same candidate rows; that fold's slices as columns), the row with the best
    mean Dice over the *other* folds' slices pooled; a tie keeps the earlier, simpler row."""
    return [
        _best_setting(np.hstack([t for j, t in enumerate(tables) if j != k]).mean(axis=1))
        for k in range(len(tables))
    ]


def calibrate_across_folds(bundles: list[Path], data_dir: str | Path, *, runtime: str = "openvino") -> dict:
    """For fold bundles (``ml.train --fold K``, one per fold), each on its own fold's validation patients:
    mean Dice and slices missed (Dice < 0.1) with the settings chosen there (``in_sample``, as its own
    calibration chose) and with those chosen on the other folds (``nested``). Writes nothing."""
    folds = []
    for path in bundles:
        split = read_metadata(path).get("training", {}).get("split", {})
        if split.get("fold") is None:
            raise SystemExit(f"{path.name} was not trained on a cross-validation fold (--fold K).")
        val = validation_slices(data_dir, split)
        _, tables = _stacked_tables(load_segmenter(path, runtime=runtime), val)
        folds.append((path.stem, split["fold"], np.vstack(tables)))
        print(
            f"{path.stem}: fold {split['fold']}, {len(val)} slices, {len(tables)} flip/zoom candidates",
            flush=True,
        )
    if len({fold for _, fold, _ in folds}) < len(folds) or len(folds) < 2:
        raise SystemExit("--nested-folds needs one bundle per fold, at least two folds.")

    def scored(table: np.ndarray, row: int) -> dict:
        return {
            "dice": float(table[row].mean()),
            "missed": int((table[row] < 0.1).sum()),
            **_row_setting(row),
        }

    chosen = nested_fold_choice([table for _, _, table in folds])
    return {
        "runtime": runtime,
        "candidates": int(folds[0][2].shape[0]),
        "bundles": [
            {
                "bundle": name,
                "fold": fold,
                "n": int(table.shape[1]),
                "in_sample": scored(table, _best_setting(table.mean(axis=1))),
                "nested": scored(table, row),
            }
            for (name, fold, table), row in sorted(zip(folds, chosen, strict=True), key=lambda x: x[0][1])
        ],
    }


def compare_bundles(
    candidate: Path, bundles: list[Path], val: Slices, *, folds: int = 5, repeats: int = 3
) -> dict:
    """Whether ``candidate`` (a bundle) should replace the shipped bundle of its architecture.

    Both are calibrated by the same code on the validation split (flip and zoom TTA, threshold,
    clean-up). For each, and for the ensemble with each in that place, it reports the in-sample
    validation Dice of the choice and the held-out Dice of choosing on the other ``folds`` folds of
    patient groups (``repeats`` deals, the same for both), with paired 95 % intervals of the
    difference that resample patient groups. The ensemble's members keep their in-sample flip/zoom
    choices in both ensembles; only its threshold and clean-up are chosen per fold. Writes nothing.
    """

    bundles = [p for p in bundles if p.resolve() != Path(candidate).resolve()]

    def architecture(path):
        return read_metadata(path).get("spec", {}).get("architecture")

    arch = architecture(candidate)
    replaced = [p for p in bundles if architecture(p) == arch]
    if len(replaced) != 1:
        raise SystemExit(
            f"{candidate} is a {arch}; the models folder holds {len(replaced)} bundles of that "
            "architecture, and a comparison needs exactly one."
        )
    if _split_key(read_metadata(candidate)["training"]["split"]) != _split_key(
        read_metadata(replaced[0])["training"]["split"]
    ):
        raise SystemExit(
            f"{candidate} was trained on another split than {replaced[0]}: they cannot be compared."
        )
    groups = [r.patient_group for r in val.records]
    types = np.array([r.tumour_type for r in val.records], object)
    chosen = {}
    for path in [*bundles, Path(candidate)]:
        probs, tables = _stacked_tables(load_segmenter(path), val)
        chosen[path] = (_chosen(probs, tables), np.vstack(tables))
        print(f"{path}: {len(tables)} flip/zoom candidates scored", flush=True)
    rows = {}
    for label, swap in (("shipped", replaced[0]), ("candidate", Path(candidate))):
        (_, in_sample), table = chosen[swap]
        members = [swap if p == replaced[0] else p for p in bundles]
        ens_probs = [ensemble_proba(list(ps)) for ps in zip(*(chosen[p][0][0] for p in members), strict=True)]
        ens_table = dice_table(ens_probs, val.masks)
        rows[label] = {
            "single": (in_sample, table),
            "ensemble": (ens_table[_best_setting(ens_table.mean(1))], ens_table),
        }
    # The paths alone stop naming the compared weights once the candidate is copied over the shipped bundle.
    report = {
        "candidate": str(candidate),
        "shipped": str(replaced[0]),
        "folds": folds,
        "repeats": repeats,
        "sha256": {"candidate": file_sha256(candidate), "shipped": file_sha256(replaced[0])},
    }
    for kind in ("single", "ensemble"):
        held_out = cross_validate_tables(
            {label: rows[label][kind][1] for label in rows}, groups, folds=folds, repeats=repeats
        )
        out = {}
        for label in rows:
            in_sample = rows[label][kind][0]
            out[label] = {
                "in_sample": float(in_sample.mean()),
                "held_out": float(held_out[label].mean()),
                "held_out_by_type": {
                    t: float(held_out[label][types == t].mean()) for t in sorted(set(types))
                },
            }
        for key, a, b in (
            ("in_sample", rows["candidate"][kind][0], rows["shipped"][kind][0]),
            ("held_out", held_out["candidate"], held_out["shipped"]),
        ):
            lo, hi = group_bootstrap_ci(a - b, groups)
            out[f"difference_{key}"] = {"mean": float((a - b).mean()), "ci95": [lo, hi]}
        report[kind] = out
        name = arch if kind == "single" else "ensemble"
        for label in rows:
            o = out[label]
            by_type = ", ".join(f"{t} {d:.4f}" for t, d in o["held_out_by_type"].items())
            print(
                f"{name} ({label}): validation Dice {o['in_sample']:.4f} in-sample, "
                f"{o['held_out']:.4f} held-out "
                f"({by_type})"
            )
        for key in ("in_sample", "held_out"):
            d = out[f"difference_{key}"]
            print(
                f"{name}: candidate - shipped, {key.replace('_', '-')}: {d['mean']:+.4f} "
                f"(95% CI {d['ci95'][0]:+.4f} to {d['ci95'][1]:+.4f})",
                flush=True,
            )
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Choose flip and zoom TTA, threshold and clean-up on the validation split."
    )
    parser.add_argument("--data", required=True, help="the training data folder (shared layout)")
    parser.add_argument("--models-dir", default="models", help="the bundles to calibrate (default models)")
    parser.add_argument("--ensemble-only", action="store_true", help="leave the bundles as they are")
    parser.add_argument(
        "--cv-folds",
        type=int,
        metavar="K",
        help="write nothing; instead report, for each bundle and the ensemble, the held-out "
        "validation Dice of choosing the settings on the other K-1 folds of patient "
        "groups: the post-processing with this release's candidates against the earlier "
        "ones, and zoom TTA against none",
    )
    parser.add_argument(
        "--cv-repeats",
        type=int,
        default=3,
        help="with --cv-folds or --compare: random fold deals (default 3)",
    )
    parser.add_argument(
        "--compare",
        metavar="KERAS",
        help="write nothing; instead compare this bundle with the bundle of its architecture in "
        "--models-dir, both calibrated by the same code, alone and in the ensemble: "
        "in-sample and held-out validation Dice (--cv-folds, default 5) and paired intervals",
    )
    parser.add_argument(
        "--nested-folds",
        action="store_true",
        help="write nothing to the bundles; instead, for the fold bundles in --models-dir (one per fold, "
        "each trained with --fold K), report each fold's Dice with the settings chosen on its own "
        "validation patients and with those chosen on the other folds' (--json)",
    )
    parser.add_argument(
        "--json", metavar="OUT", help="with --compare or --nested-folds: also write its figures to this file"
    )
    args = parser.parse_args(argv)

    bundles = shipped_bundles(args.models_dir)
    if not bundles:
        raise SystemExit(f"No bundles in {args.models_dir}.")
    if args.nested_folds:
        report = calibrate_across_folds(bundles, args.data)
        for b in report["bundles"]:
            print(
                f"{b['bundle']}: Dice {b['in_sample']['dice']:.4f} with its own choice, "
                f"{b['nested']['dice']:.4f} with the other folds' (threshold {b['nested']['threshold']}, "
                f"{tta_text(b['nested'])}, {cleanup_text(b['nested']['postprocess'])})"
            )
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return None
    split_meta = read_metadata(bundles[0])["training"]["split"]
    val = validation_slices(args.data, split_meta)
    if args.compare:
        if not Path(args.compare).is_file() or not Path(args.compare).with_suffix(".json").is_file():
            raise SystemExit(f"{args.compare}: no such bundle (a .keras file with its .json beside it).")
        report = compare_bundles(
            Path(args.compare), bundles, val, folds=args.cv_folds or 5, repeats=args.cv_repeats
        )
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return None
    if args.cv_folds:
        return report_cross_validation(bundles, val, folds=args.cv_folds, repeats=args.cv_repeats)
    chosen = {}  # each recalibrated bundle's validation probabilities at its new settings
    for path in [] if args.ensemble_only else bundles:
        meta = read_metadata(path)
        if _split_key(meta["training"]["split"]) != _split_key(split_meta):
            raise SystemExit(f"{path.name} was trained on another split; calibrate it on its own.")
        choice, chosen[path] = _calibrate(load_segmenter(path), val)
        path.with_suffix(".json").write_text(
            json.dumps(apply_choice(meta, choice), indent=2, sort_keys=True) + "\n"
        )
        print(
            f"{path.stem}: val Dice {choice['val_metrics']['dice_mean']:.4f} with threshold "
            f"{choice['threshold']}, {tta_text(choice)}, {cleanup_text(choice['postprocess'])}",
            flush=True,
        )
    members = [load_segmenter(p) for p in bundles]  # re-read: their JSON may have just changed
    if len(chosen) == len(bundles):  # the members' maps at their new settings are already here
        probs = [ensemble_proba(list(ps)) for ps in zip(*(chosen[p] for p in bundles), strict=True)]
    else:
        probs = Ensemble(members).predict_proba(val.images)  # members keep their own TTA
    choice, _ = _choose(val, [(None, None, probs)])
    ensemble = apply_choice(
        {
            "name": "ensemble",
            "members": [m.name for m in members],
            "description": "mean of the members' probability maps",
            "training": {"split": split_meta},
        },
        choice,
    )
    ensemble_path = Path(args.models_dir) / ENSEMBLE_FILE
    had_flag = ensemble_path.is_file() and "agreement" in json.loads(ensemble_path.read_text() or "{}")
    ensemble_path.write_text(json.dumps(ensemble, indent=2, sort_keys=True) + "\n")
    if had_flag:  # chosen for the old masks: gone with them
        print(
            "ensemble.json: the agreement flag was chosen for the old masks and is dropped; "
            "choose it again with `python -m ml.agreement --data DIR --write`"
        )
    print(
        f"ensemble: val Dice {choice['val_metrics']['dice_mean']:.4f} with threshold {choice['threshold']}, "
        f"{tta_text(choice)}, {cleanup_text(choice['postprocess'])}"
    )


if __name__ == "__main__":
    main()
