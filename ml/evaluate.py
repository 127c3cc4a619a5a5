"""Evaluation at each image's own resolution, per image, averaged (see ``ml.losses`` for empty masks).

Uncertainty: slices of one patient are not independent, so confidence intervals resample whole
patient groups with replacement (a cluster bootstrap; Efron & Tibshirani, *An Introduction to the
Bootstrap*, 1993, ch. 13 on dependent data) and take the 2.5th and 97.5th percentiles of the
slice-weighted mean Dice. A paired interval for two models' difference resamples the same groups for
both, so it answers "is model A better than model B on patients like these?".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ml.data import TUMOUR_TYPES, Slices
from ml.postprocess import binarize

SMOOTH = 1e-6


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    inter = np.logical_and(pred, truth).sum()
    total = pred.sum() + truth.sum()
    return float((2 * inter + SMOOTH) / (total + SMOOTH)), float((inter + SMOOTH) / (total - inter + SMOOTH))


def summarise(scores: Sequence[tuple[float, float]], types: Sequence[str | None]) -> dict:
    dices = np.array([s[0] for s in scores], float)
    ious = np.array([s[1] for s in scores], float)
    out = {
        "dice_mean": float(dices.mean()) if len(dices) else float("nan"),
        "iou_mean": float(ious.mean()) if len(ious) else float("nan"),
        "dice_by_type": {},
        "iou_by_type": {},
        "n_by_type": {},
        "n": len(dices),
    }
    for t in TUMOUR_TYPES:
        sel = np.array([x == t for x in types], bool)
        if sel.any():
            out["dice_by_type"][t] = float(dices[sel].mean())
            out["iou_by_type"][t] = float(ious[sel].mean())
            out["n_by_type"][t] = int(sel.sum())
    return out


def group_bootstrap_ci(
    values: Sequence[float], groups: Sequence[str], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` when whole ``groups`` are resampled with replacement.

    ``values`` may be per-slice Dice scores, or per-slice differences between two models (paired).
    Seeded, so a re-run gives the same interval.
    """
    values = np.asarray(values, float)
    if len(values) != len(groups):
        raise ValueError(f"{len(values)} values but {len(groups)} groups")
    if len(values) == 0:
        return float("nan"), float("nan")
    names, index = np.unique(np.asarray(groups, object).astype(str), return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=len(names))
    counts = np.bincount(index, minlength=len(names)).astype(float)
    draws = np.random.default_rng(seed).integers(0, len(names), size=(n_boot, len(names)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def misses(
    dices: Sequence[float],
    types: Sequence[str | None],
    groups: Sequence[str],
    *,
    below: float = 0.1,
    predicted_px: Sequence[int] | None = None,
    overlap_px: Sequence[int] | None = None,
) -> dict:
    """The slices a model all but misses (Dice under ``below``): how many, of which tumour type, and from
    how many patient groups, with the mean Dice of the other slices. Given each slice's predicted pixels
    and their overlap with the truth, also how they were missed (``how``): ``empty`` (nothing outlined),
    ``elsewhere`` (an outline that does not touch the tumour) or ``grazing`` (one that overlaps it, but
    little).

    Such slices weigh heavily in the mean: on validation the ensemble's 17 misses of 385 cost it 0.035 of
    Dice. Typically the tumour is faint and a brighter look-alike elsewhere gets the mask (README).
    """
    dices = np.asarray(dices, float)
    hit = dices < below
    by_type = {t: int(sum(1 for h, x in zip(hit, types, strict=True) if h and x == t)) for t in TUMOUR_TYPES}
    result = {
        "below": below,
        "n": int(hit.sum()),
        "of": len(dices),
        "by_type": {t: n for t, n in by_type.items() if n},
        "patient_groups": len({g for h, g in zip(hit, groups, strict=True) if h}),
        "dice_mean_of_the_rest": float(dices[~hit].mean()) if (~hit).any() else float("nan"),
    }
    if predicted_px is not None and overlap_px is not None:
        predicted, overlap = np.asarray(predicted_px), np.asarray(overlap_px)
        empty = hit & (predicted == 0)
        elsewhere = hit & (predicted > 0) & (overlap == 0)
        result["how"] = {
            "empty": int(empty.sum()),
            "elsewhere": int(elsewhere.sum()),
            "grazing": int((hit & ~empty & ~elsewhere).sum()),
        }
    return result


def evaluate_masks(
    predict: Callable[[list[np.ndarray]], list[np.ndarray]],
    slices: Slices,
    *,
    batch_size: int = 16,
    progress=None,
) -> dict:
    """Run ``predict`` (images -> bool masks at their sizes) over ``slices`` in batches and score it."""
    scores, predicted_px, overlap_px, elapsed = [], [], [], 0.0
    for start in range(0, len(slices), batch_size):
        images = slices.images[start : start + batch_size]
        t0 = time.perf_counter()
        masks = predict(images)
        elapsed += time.perf_counter() - t0
        truths = slices.masks[start : start + batch_size]
        scores += [dice_iou(m, t) for m, t in zip(masks, truths, strict=True)]
        predicted_px += [int(np.count_nonzero(m)) for m in masks]
        overlap_px += [
            int(np.count_nonzero(np.logical_and(m, t))) for m, t in zip(masks, truths, strict=True)
        ]
        if progress is not None:
            progress(len(images))
    result = summarise(scores, [r.tumour_type for r in slices.records])
    groups = [r.patient_group for r in slices.records]
    result["dice_ci95"] = list(group_bootstrap_ci([s[0] for s in scores], groups))
    result["n_patient_groups"] = len(set(groups))
    result["ms_per_slice"] = 1000.0 * elapsed / max(len(slices), 1)
    result["dice_per_slice"] = [s[0] for s in scores]
    result["iou_per_slice"] = [s[1] for s in scores]
    result["predicted_px_per_slice"] = predicted_px
    result["overlap_px_per_slice"] = overlap_px
    return result


# Clean-up candidates, simplest first (a tie keeps the earlier): none, the largest component, the
# component holding the highest probability (see ml.postprocess).
CLEANUPS = (
    {"keep_largest": False, "keep_by": "area"},
    {"keep_largest": True, "keep_by": "area"},
    {"keep_largest": True, "keep_by": "peak"},
)


def threshold_grid(lowest: float, highest: float = 0.70, step: float = 0.05) -> tuple[float, ...]:
    """``lowest``, ``lowest + step``, ... up to ``highest``, rounded to 2 decimals."""
    return tuple(float(t) for t in np.round(np.arange(lowest, highest + step / 2, step), 2))


THRESHOLDS = threshold_grid(0.10)


def _dice_table(probs: Sequence[np.ndarray], truths: Sequence[np.ndarray], thresholds, cleanups):
    """The candidate settings, cleanup-major as ``choose_postprocess`` tries them, and each one's Dice on
    each slice (a ``len(settings) x len(probs)`` array), so a choice on any subset of slices needs no
    further binarising."""

    settings = [(dict(cleanup), float(thr)) for cleanup in cleanups for thr in thresholds]
    table = np.array(
        [
            [dice_iou(binarize(p, thr, **cleanup), t)[0] for p, t in zip(probs, truths, strict=True)]
            for cleanup, thr in settings
        ],
        float,
    ).reshape(len(settings), len(probs))
    return settings, table


def _best_setting(means: np.ndarray) -> int:
    """Index of the best mean Dice; a tie (within 1e-9) keeps the earlier, i.e. the simpler, setting."""
    best = 0
    for i, d in enumerate(means):
        if d > means[best] + 1e-9:
            best = i
    return best


def choose_postprocess(
    probs: Sequence[np.ndarray], truths: Sequence[np.ndarray], thresholds=THRESHOLDS, cleanups=CLEANUPS
) -> dict:
    """Pick the threshold and clean-up that maximise mean Dice (call on validation data only).

    Returns ``{"threshold", "keep_largest", "keep_by", "val_dice"}``.
    """
    settings, table = _dice_table(probs, truths, thresholds, cleanups)
    means = table.mean(axis=1)
    best = _best_setting(means)
    cleanup, thr = settings[best]
    return {"threshold": thr, **cleanup, "val_dice": float(means[best])}


# The candidates before keep_by existed: thresholds 0.30-0.70, every component or the largest.
EARLIER_CANDIDATES = (threshold_grid(0.30), CLEANUPS[:2])


def cross_validate_choice(
    probs: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    groups: Sequence[str],
    candidates: dict[str, tuple],
    *,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out mean Dice of choosing the post-processing among each named set of candidates.

    ``candidates`` maps a name to ``(thresholds, cleanups)``. The patient groups are dealt at random
    into ``folds`` folds, ``repeats`` times; each fold is scored with the settings that
    ``choose_postprocess`` picks on the other folds. Every slice is scored ``repeats`` times, and the
    mean over all of them is returned per name: an estimate of what the choice is worth on patients it
    was not made on (call it on validation data only).
    """
    tables = {name: dice_table(probs, truths, *cands) for name, cands in candidates.items()}
    held_out = cross_validate_tables(tables, groups, folds=folds, repeats=repeats, seed=seed)
    return {name: float(values.mean()) for name, values in held_out.items()}


def dice_table(
    probs: Sequence[np.ndarray], truths: Sequence[np.ndarray], thresholds=THRESHOLDS, cleanups=CLEANUPS
) -> np.ndarray:
    """Each candidate setting's Dice on each slice, ``len(cleanups) * len(thresholds) x len(probs)``; stack
    the tables of several probability maps of the same slices (e.g. with and without zoom TTA) to let
    ``cross_validate_tables`` choose among them too."""
    return _dice_table(probs, truths, thresholds, cleanups)[1]


def cross_validate_tables(
    tables: dict[str, np.ndarray], groups: Sequence[str], *, folds: int = 5, repeats: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per slice, the held-out Dice of choosing a row of each table (candidates x slices) on the other
    folds of patient groups, averaged over ``repeats`` random deals (the same deals for every table, so
    two tables' results can be compared slice by slice, e.g. with ``group_bootstrap_ci``)."""
    groups = np.asarray(groups).astype(str)
    names = np.unique(groups)
    if len(names) < folds:
        raise ValueError(f"{len(names)} patient groups cannot make {folds} folds.")
    rng = np.random.default_rng(seed)
    held_out = {name: np.zeros(len(groups)) for name in tables}
    for _ in range(repeats):
        for fold in np.array_split(rng.permutation(names), folds):
            test = np.isin(groups, fold)
            for name, table in tables.items():
                held_out[name][test] += table[_best_setting(table[:, ~test].mean(axis=1)), test]
    return {name: values / repeats for name, values in held_out.items()}
