"""How far the ensemble's members agree on a slice, as a warning sign for a doubtful outline.

Each member (U-Net, Attention U-Net, U-Net++) makes its own mask with its own TTA, threshold and
clean-up. Their *agreement* is the mean Dice over every pair of member masks: 1 when all outline the
same pixels, near 0 when they point at different places. Two empty masks agree (Dice 1, the
convention of ``ml.evaluate.dice_iou``); an empty mask against a non-empty one scores about 0.

Members that disagree are often members that missed: when the tumour is faint, one model finds it and
another outlines a brighter look-alike. So a low agreement is a cheap, label-free reason to look at a
mask twice. Whether it is a *useful* reason is measured, not assumed:

    python -m ml.agreement --data ../shared/data/figshare --models-dir models --split val --write
    python -m ml.agreement --data ../shared/data/figshare --models-dir models --split test --json OUT

On the validation split it scores each slice's ensemble mask against the expert's, calls a slice a
failure when its Dice is below ``FAILURE_DICE``, and chooses the agreement below which a mask is
flagged (``flag_below``) by Youden's J (sensitivity + specificity - 1) for catching failures; ``--write``
stores that choice and the validation figures under ``agreement`` in ``<models-dir>/ensemble.json``,
where the web app reads it. On another split it reports how well the stored ``flag_below`` does there.
``ml.calibrate`` rewrites ``ensemble.json`` without this block: re-run ``--write`` after it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu, spearmanr
from tqdm import tqdm

from ml.calibrate import ENSEMBLE_FILE
from ml.data import load_slices, read_records, split_ids_as_trained
from ml.evaluate import dice_iou
from ml.inference import ensemble_proba, load_ensemble, load_segmenter, read_metadata, shipped_bundles

FAILURE_DICE = 0.5  # a slice whose ensemble mask scores below this against the expert's is a failure
FLAG_GRID = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))


def mask_agreement(masks: Sequence[np.ndarray]) -> float | None:
    """Mean Dice over every pair of ``masks`` (bool, same shape); None with fewer than two."""
    masks = [np.asarray(m, bool) for m in masks]
    if len(masks) < 2:
        return None
    if any(m.shape != masks[0].shape for m in masks):
        raise ValueError(f"masks of different shapes: {[m.shape for m in masks]}")
    return float(np.mean([dice_iou(a, b)[0] for a, b in itertools.combinations(masks, 2)]))


def flag_report(agreement: Sequence[float], dice: Sequence[float], flag_below: float) -> dict:
    """How well "agreement < flag_below" picks out the failures (Dice < ``FAILURE_DICE``)."""
    agreement, dice = np.asarray(agreement, float), np.asarray(dice, float)
    flagged, failed = agreement < flag_below, dice < FAILURE_DICE

    def rate(num, den):
        return float(num.sum() / den.sum()) if den.sum() else None

    return {
        "flag_below": float(flag_below),
        "n": len(dice),
        "n_failures": int(failed.sum()),
        "n_flagged": int(flagged.sum()),
        "sensitivity": rate(flagged & failed, failed),  # failures that were flagged
        "specificity": rate(~flagged & ~failed, ~failed),  # good masks left alone
        "precision": rate(flagged & failed, flagged),  # flagged masks that were failures
        "dice_flagged": float(dice[flagged].mean()) if flagged.any() else None,
        "dice_not_flagged": float(dice[~flagged].mean()) if (~flagged).any() else None,
    }


def study(agreement: Sequence[float], dice: Sequence[float], types: Sequence[str]) -> dict:
    """Rank correlation of agreement with Dice, and the area under the ROC curve of low agreement as
    a detector of failures (the chance that a failure agrees less than a success; ties count half)."""

    agreement, dice = np.asarray(agreement, float), np.asarray(dice, float)
    failed = dice < FAILURE_DICE
    auc = None
    if failed.any() and (~failed).any():
        auc = float(
            mannwhitneyu(agreement[~failed], agreement[failed]).statistic / (failed.sum() * (~failed).sum())
        )
    types = np.asarray(types)
    # Undefined (None, not NaN, which JSON cannot hold) when either side is constant.
    rho = float(spearmanr(agreement, dice).statistic) if np.ptp(agreement) and np.ptp(dice) else None
    return {
        "spearman_rho": rho,
        "failure_auc": auc,
        "failure_dice": FAILURE_DICE,
        "dice_mean": float(dice.mean()),
        "failures_by_type": {t: int((failed & (types == t)).sum()) for t in sorted(set(types.tolist()))},
    }


def choose_flag_below(agreement: Sequence[float], dice: Sequence[float], grid=FLAG_GRID) -> float:
    """The grid value with the highest Youden's J for catching failures (ties: the lower value, which
    flags fewer masks)."""

    def youden(t):
        r = flag_report(agreement, dice, t)
        return (r["sensitivity"] or 0.0) + (r["specificity"] or 0.0) - 1.0

    return max(grid, key=lambda t: (round(youden(t), 12), -t))


def per_slice(members, ensemble, slices, *, batch_size: int = 16, progress=None) -> dict:
    """Each slice's member agreement and ensemble Dice, from one pass of every member."""

    if ensemble.tta is not None:
        raise ValueError("the ensemble overrides its members' TTA; agreement uses each member's own masks")
    agreement, dice = [], []
    for start in range(0, len(slices), batch_size):
        images = slices.images[start : start + batch_size]
        per_member = [m.predict_proba(images, batch_size=batch_size) for m in members]
        for i, truth in enumerate(slices.masks[start : start + batch_size]):
            probs = [p[i] for p in per_member]
            agreement.append(mask_agreement([m.binarize(p) for m, p in zip(members, probs, strict=True)]))
            dice.append(dice_iou(ensemble.binarize(ensemble_proba(probs)), truth)[0])
        if progress is not None:
            progress(len(images))
    return {
        "agreement": agreement,
        "dice": dice,
        "tumour_type": [r.tumour_type for r in slices.records],
        "patient_group": [r.patient_group for r in slices.records],
        "id": [r.id for r in slices.records],
    }


def main(argv=None) -> None:

    parser = argparse.ArgumentParser(
        description="Measure how well low agreement between the ensemble's members flags failed masks; "
        "on the validation split, choose the agreement below which the web app flags a mask."
    )
    parser.add_argument("--data", required=True, help="the training data folder (shared layout)")
    parser.add_argument("--models-dir", default="models", help="the shipped bundles and ensemble.json")
    parser.add_argument(
        "--split",
        choices=["val", "test"],
        default="val",
        help="patient-group split, as the bundles were trained (default val)",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="with --split val: store the chosen flag_below and the figures in ensemble.json",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the figures and every slice's values here")
    args = parser.parse_args(argv)
    if args.write and args.split != "val":
        parser.error("--write chooses on the validation split only: use --split val")

    bundles = shipped_bundles(args.models_dir)
    if len(bundles) < 2:
        raise SystemExit(f"{args.models_dir} holds {len(bundles)} bundle(s): agreement needs two or more.")
    ensemble_path = Path(args.models_dir) / ENSEMBLE_FILE
    if not ensemble_path.is_file():
        raise SystemExit(f"{ensemble_path} is missing: run `python -m ml.calibrate` first.")
    split = read_metadata(bundles[0])["training"]["split"]
    slices = load_slices(args.data, split_ids_as_trained(read_records(args.data), split, args.split))
    members = [load_segmenter(p) for p in bundles]
    ensemble = load_ensemble(args.models_dir, members)
    with tqdm(total=len(slices), desc=f"agreement ({args.split})", unit="slice", disable=None) as bar:
        rows = per_slice(members, ensemble, slices, progress=bar.update)

    meta = json.loads(ensemble_path.read_text())
    stored = meta.get("agreement", {}).get("flag_below")
    flag_below = choose_flag_below(rows["agreement"], rows["dice"]) if args.split == "val" else stored
    report = {
        "split": args.split,
        "members": [m.name for m in members],
        **study(rows["agreement"], rows["dice"], rows["tumour_type"]),
    }
    if flag_below is not None:
        report["flag"] = flag_report(rows["agreement"], rows["dice"], flag_below)
    print(json.dumps(report, indent=2))
    if args.split != "val" and stored is None:
        print(
            f"{ensemble_path} holds no agreement.flag_below: run --split val --write first.", file=sys.stderr
        )
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "slices": rows}, indent=2) + "\n")
    if args.write:
        meta["agreement"] = {
            "flag_below": flag_below,
            "chosen_on": "val",
            "rule": f"Youden's J for Dice < {FAILURE_DICE}",
            "val": {k: v for k, v in report.items() if k != "split"},
        }
        ensemble_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        print(f"wrote agreement.flag_below = {flag_below} to {ensemble_path}")


if __name__ == "__main__":
    main()
