"""Turning a probability map into a mask.

1. Threshold at the model's own threshold, chosen on its validation split at training time.
2. Drop connected components (8-connectivity) smaller than ``min_component_px``.
3. Optionally keep one component only (``keep_largest``): each Figshare slice has one tumour. Which
   one is ``keep_by``: ``"area"``, the largest (the default, and the only rule before it was a
   choice), or ``"peak"``, the one holding the highest probability (ties broken by area). A model
   that outlines the tumour with confidence and a larger look-alike (often the other side of the
   brain, or a bright vessel) with less is mended by ``"peak"``; whether to keep one, and by which
   rule, is decided on the validation split and stored in the model's JSON.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)
KEEP_BY = ("area", "peak")


def binarize(
    prob: np.ndarray,
    threshold: float = 0.5,
    *,
    min_component_px: int = 0,
    keep_largest: bool = False,
    keep_by: str = "area",
) -> np.ndarray:
    """Bool mask of ``prob > threshold`` after the clean-up steps above."""
    if keep_by not in KEEP_BY:
        raise ValueError(f"keep_by must be one of {', '.join(KEEP_BY)}; got {keep_by!r}.")
    prob = np.asarray(prob)
    mask = prob > threshold
    if not (min_component_px or keep_largest) or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = sizes >= max(min_component_px, 1)
    if keep_largest and keep.any():
        if keep_by == "area":  # the largest component passes any size floor another one passes
            return largest_region(mask, structure=_EIGHT)
        candidates = np.flatnonzero(keep)
        peaks = region_peaks(prob, labels, n)[candidates]
        best = candidates[np.lexsort((sizes[candidates], peaks))[-1]]
        keep = np.zeros_like(keep)
        keep[best] = True
    return np.isin(labels, np.flatnonzero(keep) + 1)


def region_peaks(prob: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The highest value of ``prob`` in each of the regions ``1..n`` of ``labels`` (``ndimage.label``'s
    output), in label order; -inf for a label with no pixel. The same as ``ndimage.maximum(prob, labels,
    range(1, n + 1))``, which sorts the whole map and cost a worker 20 ms a call on a 512 px slice."""
    inside = labels > 0
    peaks = np.full(n, -np.inf, dtype=np.result_type(prob.dtype, np.float32))
    np.maximum.at(peaks, labels[inside] - 1, prob[inside])
    return peaks


def largest_region(mask: np.ndarray, *, structure: np.ndarray | None = None) -> np.ndarray:
    """The largest connected region of a bool mask (the first in scan order on a tie); all False when the
    mask is empty. ``structure`` is ``scipy.ndimage.label``'s: 4-connectivity unless given."""
    labels, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return np.zeros(np.shape(mask), dtype=bool)
    return labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1


def postprocess_options(post: dict | None) -> dict:
    """``binarize``'s keyword arguments from a bundle's ``postprocess`` metadata; absent keys mean no
    clean-up (and ``keep_by`` "area", as bundles written before the choice existed)."""
    post = post or {}
    return {
        "min_component_px": int(post.get("min_component_px", 0)),
        "keep_largest": bool(post.get("keep_largest", False)),
        "keep_by": str(post.get("keep_by", "area")),
    }


def other_regions(
    prob: np.ndarray, served: np.ndarray, threshold: float, *, min_component_px: int = 0, limit: int = 3
) -> list[tuple[np.ndarray, float, int]]:
    """The regions a model saw but left out of its mask: the connected components (8-connectivity) of
    ``prob > threshold`` of at least ``min_component_px`` pixels that do not touch ``served``, as
    ``(bool mask, peak probability, area in px)``, highest peak first, at most ``limit``.

    Where a missed tumour is in the map at all, it is mostly such a region, ranked below a brighter
    look-alike that the clean-up kept (docs/training.md, "Where the misses are"), so the correction page
    offers them to the clinician as lower-confidence starting points."""
    prob = np.asarray(prob)
    labels, n = ndimage.label(prob > threshold, structure=_EIGHT)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks = region_peaks(prob, labels, n).astype(float)
    touched = set(np.unique(labels[np.asarray(served, bool)]).tolist()) - {0}
    candidates = [i for i in range(n) if sizes[i] >= max(min_component_px, 1) and (i + 1) not in touched]
    candidates.sort(key=lambda i: (-peaks[i], -sizes[i], i))
    return [(labels == i + 1, float(peaks[i]), int(sizes[i])) for i in candidates[:limit]]


# ``likeliest_region``'s defaults: the region down to half the map's peak, offered only where the peak is at
# least 5/255, the least a run's stored 8-bit probability map tells apart from nothing.
LIKELIEST_FRACTION = 0.5
LIKELIEST_FLOOR = 5 / 255


def likeliest_region(
    prob: np.ndarray, *, fraction: float = LIKELIEST_FRACTION, floor: float = LIKELIEST_FLOOR
) -> tuple[np.ndarray, float, int] | None:
    """Where a map that outlines nothing is highest: the connected region (8-connectivity) of
    ``prob >= fraction * peak`` that holds the map's peak, as ``(bool mask, peak probability, area in px)``;
    None when the peak is under ``floor``.

    A map with no region above its threshold leaves the clinician with nothing to start from. Its highest
    place is the model's best guess below its own threshold: the correction page offers it, marked as
    such, never as the mask. How often it holds the tumour: docs/training.md, "A better choice among the
    regions?"."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1]; got {fraction!r}.")
    prob = np.asarray(prob)
    if prob.size == 0:
        return None
    top = np.unravel_index(int(np.argmax(prob)), prob.shape)
    peak = float(prob[top])
    if peak < floor or peak <= 0.0:
        return None
    labels, _ = ndimage.label(prob >= fraction * peak, structure=_EIGHT)
    region = labels == labels[top]
    return region, peak, int(region.sum())
