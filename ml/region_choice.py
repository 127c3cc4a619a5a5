"""Which region of a thresholded map is the tumour: the rules the clean-up can use, measured by
cross-validation over the fold bundles (``models/cv``).

A model's map above its threshold often holds more than one region, and the served clean-up keeps one:
the one with the highest probability (``keep_by="peak"``). Most missed slices are a brighter look-alike
kept instead of the tumour (docs/training.md, "Where the misses are"). This module describes each region
(its probabilities, size, place in the head and brightness in the image), and scores rules that choose
one region per slice:

- ``peak`` and ``area``: the clean-up's rules (``own``: each bundle's own of the two, as served);
- ``logistic``: a logistic regression on the regions' descriptions (scikit-learn), trained on the regions
  of the *other* folds' bundles (their own out-of-fold maps) and applied to the held-out fold's;
- ``boosted``: gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``) on the same,
  trained the same way, for what a non-linear rule adds;
- ``oracle``: the region with the best Dice against the expert mask: what any rule of this kind could
  reach at most.

Every fold bundle is scored on its own fold's validation patients, which it never trained on, so each
rule's figures are out of fold. Nothing here changes a served model.

    python -m ml.region_choice --data DIR [--models-dir models/cv] [--bundles unet_cv0 ...]
                               [--cache var/region_choice] --json docs/results/region_choice_cv.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml.data import Slices, load_slices, read_records, split_ids_as_trained
from ml.evaluate import dice_iou
from ml.inference import Segmenter, load_segmenter
from ml.postprocess import largest_region, likeliest_region, region_peaks

_EIGHT = np.ones((3, 3), dtype=bool)

FEATURES = (
    "peak",  # the region's highest probability
    "mean_probability",
    "log_area",  # log(1 + pixels), at the slice's own resolution
    "peak_to_top",  # peak over the slice's highest peak (1 for the peak rule's choice)
    "area_to_largest",  # area over the slice's largest region's
    "peak_rank",  # 0 for the highest peak, 1 for the next, ...
    "n_regions",
    "centre_distance",  # centroid to the head's centre, in head radii
    "lateral",  # |x| of the centroid from the head's centre, in head radii
    "vertical",  # y of the centroid from the head's centre, in head radii (down is positive)
    "depth",  # the deepest pixel's distance to the head's edge, in head radii
    "brightness",  # the region's mean intensity, z-scored in the head
    "contrast",  # the region's mean intensity less that of a ring around it, in the head's sd
    "fill",  # area over its bounding box's
    "asymmetry",  # mean intensity less that of its mirror image across the head's midline, in the head's sd
    "mirror_probability",  # the map's mean over the region's mirror image: a look-alike is often paired
)
RULES = ("peak", "area", "logistic", "boosted", "oracle")


@dataclass
class SliceRegions:
    """The regions of one slice's map: a row of ``FEATURES`` each, and each region's Dice alone against
    the expert mask (``dice``); none when nothing is above the threshold."""

    id: str
    patient_group: str
    tumour_type: str | None
    features: np.ndarray  # (n, len(FEATURES)) float
    dice: np.ndarray  # (n,) float
    # With no region: the Dice of the map's likeliest region (``ml.postprocess.likeliest_region``, what the
    # correction page offers then), None where it offers none.
    likeliest_dice: float | None = None


def head_geometry(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(head mask, centre (y, x), radius) of a slice: above a low threshold, the largest region filled."""
    img = np.asarray(image, dtype=np.float32)
    fg = img > max(float(img.max()) * 0.05, 1e-6)
    head = ndimage.binary_fill_holes(largest_region(fg)) if fg.any() else np.ones(img.shape, dtype=bool)
    centre = np.array(ndimage.center_of_mass(head))
    radius = max(float(np.sqrt(head.sum() / np.pi)), 1.0)
    return head, centre, radius


def describe_regions(prob: np.ndarray, image: np.ndarray, threshold: float, *, min_component_px: int = 0):
    """(labels, features): the connected regions (8-connectivity) of ``prob > threshold`` of at least
    ``min_component_px`` pixels, numbered 1..n in ``labels`` (others 0), and their ``FEATURES`` rows."""
    prob = np.asarray(prob, dtype=np.float32)
    labels, n = ndimage.label(prob > threshold, structure=_EIGHT)
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        kept = np.flatnonzero(sizes >= max(min_component_px, 1)) + 1
        relabel = np.zeros(n + 1, dtype=labels.dtype)
        relabel[kept] = np.arange(1, len(kept) + 1)
        labels, n = relabel[labels], len(kept)
    if n == 0:
        return labels, np.zeros((0, len(FEATURES)))
    index = np.arange(1, n + 1)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(float)
    peak = region_peaks(prob, labels, n).astype(float)
    mean_prob = np.asarray(ndimage.mean(prob, labels, index), dtype=float)
    head, centre, radius = head_geometry(image)
    img = np.asarray(image, dtype=np.float32)
    h_mean, h_sd = float(img[head].mean()), float(img[head].std()) + 1e-6
    region_mean = np.asarray(ndimage.mean(img, labels, index), dtype=float)
    brightness = (region_mean - h_mean) / h_sd
    depth_map = ndimage.distance_transform_edt(head)
    depth = np.asarray(ndimage.maximum(depth_map, labels, index), dtype=float) / radius
    centroids = np.array(ndimage.center_of_mass(np.ones_like(prob), labels, index)).reshape(n, 2)
    offset = (centroids - centre) / radius
    ring_px = max(2, round(img.shape[0] / 64))
    contrast, fill = np.zeros(n), np.zeros(n)
    for i, box in enumerate(ndimage.find_objects(labels)):
        y0, y1 = max(box[0].start - ring_px, 0), box[0].stop + ring_px
        x0, x1 = max(box[1].start - ring_px, 0), box[1].stop + ring_px
        region = labels[y0:y1, x0:x1] == i + 1
        ring = ndimage.binary_dilation(region, _EIGHT, iterations=ring_px) & ~region & head[y0:y1, x0:x1]
        inside = img[y0:y1, x0:x1][region].mean()
        contrast[i] = (inside - (img[y0:y1, x0:x1][ring].mean() if ring.any() else h_mean)) / h_sd
        fill[i] = area[i] / ((box[0].stop - box[0].start) * (box[1].stop - box[1].start))
    rank = np.empty(n)
    rank[np.lexsort((-area, -peak))] = np.arange(n)
    # The mirror image across the head's vertical midline: normal anatomy is roughly symmetric, a tumour
    # is not.
    mirror = np.clip(np.round(2 * centre[1] - np.arange(img.shape[1])).astype(int), 0, img.shape[1] - 1)
    asymmetry = (region_mean - np.asarray(ndimage.mean(img[:, mirror], labels, index), dtype=float)) / h_sd
    mirror_prob = np.asarray(ndimage.mean(prob[:, mirror], labels, index), dtype=float)
    features = np.column_stack(
        [
            peak,
            mean_prob,
            np.log1p(area),
            peak / peak.max(),
            area / area.max(),
            rank,
            np.full(n, n),
            np.hypot(offset[:, 0], offset[:, 1]),
            np.abs(offset[:, 1]),
            offset[:, 0],
            depth,
            brightness,
            contrast,
            fill,
            asymmetry,
            mirror_prob,
        ]
    )
    return labels, features


def slice_regions(record, prob, image, truth, threshold: float, *, min_component_px: int = 0) -> SliceRegions:
    labels, features = describe_regions(prob, image, threshold, min_component_px=min_component_px)
    dice = np.array([dice_iou(labels == i + 1, truth)[0] for i in range(len(features))])
    likeliest = likeliest_region(prob) if len(features) == 0 else None
    return SliceRegions(
        record.id,
        record.patient_group,
        record.tumour_type,
        features,
        dice,
        None if likeliest is None else float(dice_iou(likeliest[0], truth)[0]),
    )


def empty_maps(slices: list[SliceRegions], *, below: float = 0.1) -> dict:
    """The slices whose map has no region (the served mask is empty): how many, on how many the correction
    page would offer the likeliest region instead, on how many that region holds the tumour (Dice of at
    least ``below``), and its mean Dice where offered."""
    empty = [s for s in slices if len(s.features) == 0]
    offered = [s.likeliest_dice for s in empty if s.likeliest_dice is not None]
    return {
        "n": len(empty),
        "offered": len(offered),
        "hit": sum(d >= below for d in offered),
        "dice_mean": float(np.mean(offered)) if offered else None,
    }


# --- choosing --------------------------------------------------------------------------------------
def choose(rule: str, regions: SliceRegions, model=None) -> int | None:
    """The index of the region ``rule`` keeps in one slice, or None when there is none."""
    f = regions.features
    if len(f) == 0:
        return None
    col = FEATURES.index
    if rule == "peak":  # highest peak, ties by area: binarize's keep_by="peak"
        return int(np.lexsort((f[:, col("log_area")], f[:, col("peak")]))[-1])
    if rule == "area":
        return int(np.argmax(f[:, col("log_area")]))
    if rule == "oracle":
        return int(np.argmax(regions.dice))
    if rule in ("logistic", "boosted"):
        return int(np.argmax(model.decision_function(f)))
    raise ValueError(f"unknown rule {rule!r}; one of {', '.join(RULES)}")


def fit_rule(rule: str, slices: list[SliceRegions], *, c: float = 1.0, seed: int = 0):
    """A classifier of 'this region holds the tumour' (Dice of the region alone ≥ 0.1) over every region
    of ``slices``: a logistic regression on standardised features (``c``: its inverse regularisation)
    for ``logistic``, shallow gradient-boosted trees for ``boosted``."""
    x = np.concatenate([s.features for s in slices if len(s.features)])
    y = np.concatenate([s.dice >= 0.1 for s in slices if len(s.features)])
    if rule == "logistic":
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
    elif rule == "boosted":
        model = HistGradientBoostingClassifier(
            max_depth=3, learning_rate=0.05, max_iter=200, random_state=seed
        )
    else:
        raise ValueError(f"{rule!r} is not a learned rule; one of logistic, boosted")
    return model.fit(x, y)


def score(rule: str, slices: list[SliceRegions], model=None, *, below: float = 0.1) -> dict:
    """Mean Dice, missed slices (Dice < ``below``) and mean Dice by type when ``rule`` keeps one region
    per slice (an empty map scores 0)."""
    dice = np.array([0.0 if (j := choose(rule, s, model)) is None else float(s.dice[j]) for s in slices])
    types = sorted({s.tumour_type for s in slices if s.tumour_type})
    return {
        "dice_mean": float(dice.mean()),
        "missed": int((dice < below).sum()),
        "n": len(slices),
        "dice_by_type": {t: float(dice[[s.tumour_type == t for s in slices]].mean()) for t in types},
    }


def cross_validate(
    folds: dict[str, list[SliceRegions]], *, c: float = 1.0, own: dict[str, str] | None = None
) -> dict:
    """Each rule on each fold; the learned ones trained on the other folds' regions only. ``own``: each
    fold bundle's own rule (``peak`` or ``area``, as its calibration chose), scored as ``own``."""
    out = {}
    for name, held in folds.items():
        others = [s for other, ss in folds.items() if other != name for s in ss]
        learned = {rule: fit_rule(rule, others, c=c) for rule in ("logistic", "boosted")}
        out[name] = {rule: score(rule, held, learned.get(rule)) for rule in RULES}
        out[name]["empty_maps"] = empty_maps(held)
        if own and name in own:
            out[name]["own"] = {**score(own[name], held), "rule": own[name]}
        out[name]["logistic_coefficients"] = dict(
            zip(FEATURES, np.round(learned["logistic"][-1].coef_[0], 4).tolist(), strict=True)
        )
    return out


def summarise_folds(per_fold: dict) -> dict:
    """Mean and sd over folds of each rule's Dice, and its misses summed (``own`` first, when every fold
    has it)."""
    summary = {}
    for rule in [r for r in ("own", *RULES) if all(r in f for f in per_fold.values())]:
        dice = np.array([f[rule]["dice_mean"] for f in per_fold.values()])
        summary[rule] = {
            "dice_mean": float(dice.mean()),
            "dice_sd": float(dice.std(ddof=1)) if len(dice) > 1 else 0.0,
            "missed": int(sum(f[rule]["missed"] for f in per_fold.values())),
            "n": int(sum(f[rule]["n"] for f in per_fold.values())),
        }
    return summary


# --- maps of the fold bundles ----------------------------------------------------------------------
def fold_maps(data: Path, bundle: Path, cache: Path | None) -> tuple[Segmenter, Slices, list[np.ndarray]]:
    """A fold bundle, its own fold's validation slices and its maps of them, as served (the bundle's own
    test-time augmentation), cached as float32 in ``cache``, keyed by the bundle's file time."""
    model = load_segmenter(bundle, runtime="auto")
    records = read_records(data)
    ids = split_ids_as_trained(records, model.metadata.get("training", {}).get("split", {}), "val")
    slices = load_slices(data, ids)
    stamp = f"{bundle.stem}_{bundle.stat().st_mtime_ns}_{len(ids)}"
    cached = cache / f"{stamp}.npz" if cache else None
    if cached and cached.is_file():
        with np.load(cached) as stored:  # one array per slice: slices differ in size
            maps = [stored[f"m{i}"] for i in range(len(slices))]
    else:
        maps = []
        for start in range(0, len(slices), 16):
            maps.extend(model.predict_proba(slices.images[start : start + 16]))
            print(f"  {bundle.stem}: {len(maps)}/{len(slices)} maps", file=sys.stderr, flush=True)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cached, **{f"m{i}": np.asarray(m, np.float32) for i, m in enumerate(maps)})
    return model, slices, maps


def fold_regions(data: Path, bundle: Path, cache: Path | None) -> list[SliceRegions]:
    """The regions of a fold bundle's maps on its own fold's validation slices (``fold_maps``)."""
    model, slices, maps = fold_maps(data, bundle, cache)
    return [
        slice_regions(r, p, img, t, model.threshold, min_component_px=model.postprocess["min_component_px"])
        for r, p, img, t in zip(slices.records, maps, slices.images, slices.masks, strict=True)
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.region_choice",
        description="Score the rules that choose one region of a thresholded map (peak, area, a "
        "logistic regression and boosted trees on the regions' descriptions, the oracle) by "
        "cross-validation over the fold bundles: each bundle on its own fold's validation patients, "
        "the learned rules trained on the other bundles' regions. Writes per-fold figures and their "
        "mean and sd as JSON.",
    )
    parser.add_argument("--data", required=True, help="dataset folder in the shared layout")
    parser.add_argument("--models-dir", default="models/cv", help="where the fold bundles are")
    parser.add_argument(
        "--bundles", nargs="*", help="fold bundle names (default: every <name>.keras in --models-dir)"
    )
    parser.add_argument(
        "--cache", default="var/region_choice", help="folder for the maps (float32 .npz); '' for none"
    )
    parser.add_argument("--c", type=float, default=1.0, help="the regression's inverse regularisation")
    parser.add_argument("--json", required=True, help="write the figures here")
    args = parser.parse_args(argv)

    models_dir, data = Path(args.models_dir), Path(args.data)
    names = args.bundles or sorted(p.stem for p in models_dir.glob("*.keras"))
    if len(names) < 2:
        parser.error(f"need at least two fold bundles to cross-validate; found {names or 'none'}")
    missing = [n for n in names if not (models_dir / f"{n}.keras").is_file()]
    if missing:
        parser.error(f"no bundle {', '.join(missing)} in {models_dir}")
    cache = Path(args.cache) if args.cache else None
    folds = {n: fold_regions(data, models_dir / f"{n}.keras", cache) for n in names}
    own = {}
    for n in names:  # the clean-up each bundle's calibration chose, when it keeps one region
        post = json.loads((models_dir / f"{n}.json").read_text()).get("postprocess") or {}
        if post.get("keep_largest"):
            own[n] = post.get("keep_by", "area")
    per_fold = cross_validate(folds, c=args.c, own=own)
    summary = summarise_folds(per_fold)
    for rule, s in summary.items():
        print(f"{rule:9s} Dice {s['dice_mean']:.4f} ± {s['dice_sd']:.4f}, missed {s['missed']} of {s['n']}")
    e = {k: sum(f["empty_maps"][k] for f in per_fold.values()) for k in ("n", "offered", "hit")}
    print(
        f"empty maps: {e['n']}; the likeliest region offered on {e['offered']}, "
        f"holding the tumour on {e['hit']}"
    )
    out = {
        "bundles": names,
        "features": list(FEATURES),
        "c": args.c,
        "folds": per_fold,
        "summary": summary,
        "empty_maps": e,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
