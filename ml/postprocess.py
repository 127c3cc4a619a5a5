"""Turning a probability map into a mask.

1. Threshold at the model's own threshold, chosen on its validation split at training time.
2. Drop connected components (8-connectivity) smaller than ``min_component_px``.
3. Optionally keep only the largest component (``keep_largest``): each Figshare slice has one tumour,
   and whether this helps is also decided on the validation split and stored in the model's JSON.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def binarize(prob: np.ndarray, threshold: float = 0.5, *, min_component_px: int = 0,
             keep_largest: bool = False) -> np.ndarray:
    """Bool mask of ``prob > threshold`` after the clean-up steps above."""
    mask = np.asarray(prob) > threshold
    if not (min_component_px or keep_largest) or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = sizes >= max(min_component_px, 1)
    if keep_largest:
        keep = np.zeros_like(keep)
        keep[int(np.argmax(sizes))] = True
    return np.isin(labels, np.flatnonzero(keep) + 1)
