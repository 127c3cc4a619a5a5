"""Hand-made case features from an MRI slice and its tumour mask (numpy + scipy, no Django).

The vector describes what a radiologist looks at when comparing brain tumours on a T1 post-contrast
slice: how big the lesion is, where it sits in the head (meningiomas hug the skull, pituitary tumours
sit low and central, gliomas lie inside the brain), its shape, and how it enhances compared to the
brain around it. Intensities are expressed relative to the head, because MRI grey levels have no
absolute scale.

Bump ``EXTRACTOR_VERSION`` whenever a feature changes: stored vectors of another version are
recomputed, never mixed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ml.postprocess import largest_region

EXTRACTOR_VERSION = "hf-2"

# (name, human-readable label used in "why" explanations)
FEATURES: tuple[tuple[str, str], ...] = (
    ("log_area_frac", "size relative to the head"),
    ("centroid_dx", "left-right position"),
    ("centroid_abs_dx", "distance from the midline"),
    ("centroid_dy", "height in the head"),
    ("centroid_radius", "distance from the head centre"),
    ("depth_centroid", "depth of the centre below the skull"),
    ("depth_min", "closeness to the skull"),
    ("eccentricity", "elongation"),
    ("solidity", "solidity (convexity)"),
    ("extent", "fill of its bounding box"),
    ("perimeter_ratio", "border irregularity"),
    ("orientation_cos2", "orientation"),
    ("n_components", "number of parts"),
    ("mean_in", "brightness inside"),
    ("std_in", "heterogeneity inside"),
    ("p10_in", "darkest parts inside"),
    ("p90_in", "brightest parts inside"),
    ("skew_in", "intensity skew inside"),
    ("mean_ring", "brightness around it"),
    ("contrast_ring", "enhancement against its surroundings"),
    ("core_rim_ratio", "necrotic-core pattern"),
    ("grad_in", "texture (gradient) inside"),
    ("grad_edge", "sharpness of its border"),
    ("glcm_contrast", "texture contrast"),
    ("glcm_homogeneity", "texture homogeneity"),
    ("glcm_energy", "texture uniformity"),
    ("glcm_correlation", "texture correlation"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
FEATURE_LABELS: dict[str, str] = dict(FEATURES)
N_FEATURES = len(FEATURES)

_GLCM_LEVELS = 8


class FeatureError(ValueError):
    """The image or mask cannot be described (e.g. an empty mask)."""


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head as a filled bool mask: above a low threshold, largest component, holes filled."""
    img = _as_float(image)
    positive = img[img > 0]
    if positive.size == 0:
        return np.ones(img.shape, dtype=bool)
    threshold = max(float(np.percentile(positive, 20)) * 0.5, float(img.max()) * 0.05)
    fg = img > threshold
    fg = ndimage.binary_opening(fg, iterations=2)
    if not fg.any():
        return np.ones(img.shape, dtype=bool)
    head = ndimage.binary_fill_holes(ndimage.binary_closing(largest_region(fg), iterations=3))
    return head


def extract(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Describe a tumour: a float32 vector ordered as ``FEATURE_NAMES``.

    Args:
        image: (H, W) grayscale slice, any dtype.
        mask: (H, W) tumour mask, bool or 0/255, same size as the image.
    Raises:
        FeatureError: the mask is empty or does not match the image.
    """
    img = _as_float(image)
    m = np.asarray(mask) > 0
    if m.shape != img.shape:
        raise FeatureError(f"mask shape {m.shape} does not match image shape {img.shape}")
    area = int(m.sum())
    if area == 0:
        raise FeatureError("the tumour mask is empty: there is nothing to describe")

    head = head_mask(img) | m
    head_area = float(head.sum())
    head_vals = img[head]
    h_mean = float(head_vals.mean())
    h_std = float(head_vals.std()) + 1e-6

    f: dict[str, float] = {}
    f["log_area_frac"] = float(np.log(area / head_area))

    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    hys, hxs = np.nonzero(head)
    hcy, hcx = hys.mean(), hxs.mean()
    h_ry = (hys.max() - hys.min() + 1) / 2.0
    h_rx = (hxs.max() - hxs.min() + 1) / 2.0
    dx = (cx - hcx) / h_rx
    dy = (cy - hcy) / h_ry
    f["centroid_dx"] = float(dx)
    f["centroid_abs_dx"] = float(abs(dx))
    f["centroid_dy"] = float(dy)
    f["centroid_radius"] = float(np.hypot(dx, dy))

    depth = ndimage.distance_transform_edt(head)
    max_depth = float(depth.max()) or 1.0
    f["depth_centroid"] = float(depth[round(cy), round(cx)] / max_depth)
    f["depth_min"] = float(depth[m].min() / max_depth)

    # Shape from second moments (as skimage.regionprops defines eccentricity and orientation).
    yc, xc = ys - cy, xs - cx
    cov = np.array([[np.mean(xc * xc), np.mean(xc * yc)], [np.mean(xc * yc), np.mean(yc * yc)]])
    evals, evecs = np.linalg.eigh(cov)
    l_min, l_max = max(evals[0], 0.0), max(evals[1], 1e-12)
    f["eccentricity"] = float(np.sqrt(1.0 - l_min / l_max))
    major = evecs[:, 1]
    f["orientation_cos2"] = float(np.cos(2 * np.arctan2(major[1], major[0])))
    f["solidity"] = float(area / _convex_area(ys, xs, area))
    f["extent"] = float(area / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))
    perimeter = float((m & ~ndimage.binary_erosion(m)).sum())
    f["perimeter_ratio"] = float(perimeter**2 / (4 * np.pi * area))
    f["n_components"] = float(np.log1p(ndimage.label(m)[1]))

    inside = (img[m] - h_mean) / h_std
    f["mean_in"] = float(inside.mean())
    f["std_in"] = float(inside.std())
    f["p10_in"] = float(np.percentile(inside, 10))
    f["p90_in"] = float(np.percentile(inside, 90))
    sd = inside.std()
    f["skew_in"] = float(np.mean((inside - inside.mean()) ** 3) / (sd**3)) if sd > 1e-6 else 0.0

    ring_width = max(2, round(np.sqrt(area) * 0.25))
    ring = ndimage.binary_dilation(m, iterations=ring_width) & ~m & head
    ring_vals = (img[ring] - h_mean) / h_std if ring.any() else np.array([0.0])
    f["mean_ring"] = float(ring_vals.mean())
    f["contrast_ring"] = float(inside.mean() - ring_vals.mean())

    core = ndimage.binary_erosion(m, iterations=max(1, round(np.sqrt(area) * 0.15)))
    rim = m & ~core
    if core.any() and rim.any():
        f["core_rim_ratio"] = float(
            ((img[core] - h_mean) / h_std).mean() - ((img[rim] - h_mean) / h_std).mean()
        )
    else:
        f["core_rim_ratio"] = 0.0

    gy, gx = np.gradient(img / h_std)
    grad = np.hypot(gx, gy)
    f["grad_in"] = float(grad[m].mean())
    edge = ndimage.binary_dilation(m) & ~ndimage.binary_erosion(m)
    f["grad_edge"] = float(grad[edge].mean())

    f.update(_glcm(img, m))
    return np.array([f[name] for name in FEATURE_NAMES], dtype=np.float32)


def describe_agreement(
    z_query: np.ndarray, z_other: np.ndarray, *, limit: int = 3, tolerance: float = 0.5
) -> list[str]:
    """The labels of the standardised features on which two cases agree best (|dz| < tolerance)."""
    diffs = np.abs(np.asarray(z_query, dtype=np.float64) - np.asarray(z_other, dtype=np.float64))
    order = np.argsort(diffs, kind="stable")
    return [FEATURE_LABELS[FEATURE_NAMES[i]] for i in order[:limit] if diffs[i] < tolerance]


def _as_float(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise FeatureError(f"expected a 2-D grayscale image, got shape {img.shape}")
    return img.astype(np.float64)


def _convex_area(ys: np.ndarray, xs: np.ndarray, area: int) -> float:
    """Area of the convex hull of the pixel squares (at least the pixel count)."""
    if area < 3:
        return float(area)
    corners = np.concatenate(
        [np.stack([ys + dy, xs + dx], axis=1) for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)]
    )
    try:
        return max(float(ConvexHull(corners).volume), float(area))
    except QhullError:
        return float(area)


def _glcm(img: np.ndarray, m: np.ndarray) -> dict[str, float]:
    """Grey-level co-occurrence statistics over the mask, 8 levels, offsets right and down, symmetric."""
    vals = img[m]
    lo, hi = np.percentile(vals, [1, 99])
    q = np.clip(((img - lo) / max(hi - lo, 1e-6) * _GLCM_LEVELS).astype(np.int64), 0, _GLCM_LEVELS - 1)
    glcm = np.zeros((_GLCM_LEVELS, _GLCM_LEVELS), dtype=np.float64)
    for a_sl, b_sl in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        both = m[a_sl] & m[b_sl]
        np.add.at(glcm, (q[a_sl][both], q[b_sl][both]), 1.0)
    glcm = glcm + glcm.T
    total = glcm.sum()
    if total == 0:
        return {"glcm_contrast": 0.0, "glcm_homogeneity": 1.0, "glcm_energy": 1.0, "glcm_correlation": 0.0}
    p = glcm / total
    i, j = np.indices(p.shape)
    mu = float((i * p).sum())
    var = float(((i - mu) ** 2 * p).sum())
    return {
        "glcm_contrast": float(((i - j) ** 2 * p).sum()),
        "glcm_homogeneity": float((p / (1.0 + np.abs(i - j))).sum()),
        "glcm_energy": float(np.sqrt((p**2).sum())),
        "glcm_correlation": float(((i - mu) * (j - mu) * p).sum() / var) if var > 1e-12 else 0.0,
    }
