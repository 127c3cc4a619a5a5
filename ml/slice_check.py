"""Is this a brain MRI slice like the training ones? And how small can a training tumour be?

Two honest, simple checks the web app makes before it suggests a tumour type or similar cases:

- **Not a brain MRI slice like the training ones** (out of distribution): a slice is described by a
  handful of whole-image statistics (``slice_statistics``: how much of the frame the head fills, how the
  head's intensities spread, how dark the background and the frame are, how round, centred and
  left-right symmetric it is). Their Mahalanobis distance to the development slices' mean (covariance
  from the same slices, with a small ridge) is compared with a level: beyond it, the slice is flagged.
  The level is chosen by 5-fold cross-validation over the development patients (the training and
  validation groups; the test groups are never read): each fold's slices are measured against a
  reference fitted on the other folds, and the level is the 99th percentile of those out-of-fold
  distances, so about 1 % of new patients' slices like the training ones are flagged. (The 99th
  percentile of the fitting slices' own distances flagged 2.9 % of the validation patients: a reference
  is closer to the slices it was fitted on.) The per-fold rates are stored beside the level.
- **The smallest tumour**: the smallest expert mask of the development slices, as a fraction of its
  slice. A model's mask smaller than half of that is treated as no tumour found.

Run (writes ``models/slice_reference.json``, which the web app reads; summary statistics only, no
image)::

    python -m ml.slice_check --data ../shared/data/figshare --write models/slice_reference.json

No Django here (``ml`` never imports it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ml.data import kfold_by_patient, load_slices, normalise, read_records, split_by_patient

GRID = 64  # statistics are taken on the slice area-resized to GRID x GRID, whatever its size
FOREGROUND = 0.1  # of the min-max normalised range: what is brighter is the head
PERCENTILE = 99.0
FOLDS = 5
SMALLEST_TUMOUR_SHARE = 0.5  # a mask below this share of the smallest training tumour counts as none
STATISTICS = (
    "foreground share",
    "largest part's share of the foreground",
    "foreground's fill of its bounding box",
    "foreground's height / width",
    "foreground centre row offset",
    "foreground centre column offset",
    "frame brightness",
    "background brightness",
    "left-right asymmetry",
    "head intensity p10",
    "head intensity p50",
    "head intensity p90",
    "head intensity SD",
    "head edge density",
)


def _resize(x: np.ndarray, size: int = GRID) -> np.ndarray:
    """Area-average to size x size (Pillow's box filter: no TensorFlow, the web process calls this)."""
    return np.asarray(
        Image.fromarray(x.astype(np.float32), mode="F").resize((size, size), Image.BOX), np.float64
    )


def slice_statistics(image: np.ndarray) -> np.ndarray:
    """The whole-slice statistics named in ``STATISTICS`` (float64, len(STATISTICS)).

    Args:
        image: one grayscale slice (H, W), any size and intensity range (RGB is averaged).
    """
    x = _resize(normalise(image).astype(np.float64))
    x = normalise(x).astype(np.float64)
    fg = x > FOREGROUND
    n = int(fg.sum())
    stats = np.zeros(len(STATISTICS))
    stats[0] = n / fg.size
    frame = np.concatenate([x[:2].ravel(), x[-2:].ravel(), x[:, :2].ravel(), x[:, -2:].ravel()])
    stats[6] = frame.mean()
    stats[7] = float(x[~fg].mean()) if n < fg.size else 1.0
    stats[8] = float(np.abs(x - x[:, ::-1]).mean())
    if n == 0:
        return stats
    labels, _ = ndimage.label(fg)
    sizes = np.bincount(labels.ravel())[1:]
    stats[1] = sizes.max() / n
    rr, cc = np.nonzero(fg)
    height, width = np.ptp(rr) + 1, np.ptp(cc) + 1
    stats[2] = n / (height * width)
    stats[3] = height / width
    stats[4] = rr.mean() / GRID - 0.5
    stats[5] = cc.mean() / GRID - 0.5
    head = x[fg]
    stats[9:12] = np.percentile(head, [10, 50, 90])
    stats[12] = head.std()
    gy, gx = np.gradient(x)
    stats[13] = float((np.hypot(gy, gx)[fg] > 0.1).mean())
    return stats


@dataclass
class SliceReference:
    """The training slices' statistics: mean, inverse covariance, the flagging level."""

    mean: np.ndarray
    inverse_covariance: np.ndarray
    flag_above: float

    @classmethod
    def fit(cls, stats: np.ndarray, percentile: float = PERCENTILE) -> SliceReference:
        """Mean and covariance of ``stats``; the level is the ``percentile`` of their own distances (see
        ``fit_cross_validated`` for a level that holds on slices the reference was not fitted on)."""
        stats = np.asarray(stats, np.float64)
        mean = stats.mean(axis=0)
        cov = np.cov(stats, rowvar=False)
        cov += np.eye(len(mean)) * 1e-3 * np.trace(cov) / len(mean)  # ridge: some statistics correlate
        ref = cls(mean, np.linalg.inv(cov), 0.0)
        ref.flag_above = float(np.percentile(ref.distances(stats), percentile))
        return ref

    @classmethod
    def fit_cross_validated(
        cls, stats: np.ndarray, folds: list[np.ndarray], percentile: float = PERCENTILE
    ) -> tuple[SliceReference, list[float]]:
        """A reference fitted on all ``stats``, its level the ``percentile`` of the out-of-fold distances
        (each fold measured against a reference fitted on the others); with each fold's flag rate at that
        level.

        Args:
            stats: (N, len(STATISTICS)) statistics of the development slices.
            folds: index arrays into ``stats``, one per fold (whole patient groups in each).
        """
        stats = np.asarray(stats, np.float64)
        out_of_fold = np.empty(len(stats))
        for held in folds:
            rest = np.setdiff1d(np.arange(len(stats)), held)
            out_of_fold[held] = cls.fit(stats[rest]).distances(stats[held])
        ref = cls.fit(stats)
        ref.flag_above = float(np.percentile(out_of_fold, percentile))
        return ref, [float((out_of_fold[held] > ref.flag_above).mean()) for held in folds]

    def distances(self, stats: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(stats) - self.mean
        return np.sqrt(np.einsum("ij,jk,ik->i", d, self.inverse_covariance, d))

    def distance(self, image: np.ndarray) -> float:
        return float(self.distances(slice_statistics(image))[0])

    def is_unlike(self, image: np.ndarray) -> bool:
        """True when the slice lies beyond the training slices' ``flag_above``."""
        return self.distance(image) > self.flag_above

    def to_json(self) -> dict:
        return {
            "statistics": list(STATISTICS),
            "grid": GRID,
            "mean": self.mean.round(6).tolist(),
            "inverse_covariance": self.inverse_covariance.tolist(),
            "flag_above": round(self.flag_above, 4),
        }

    @classmethod
    def from_json(cls, data: dict) -> SliceReference:
        if data.get("statistics") != list(STATISTICS) or data.get("grid") != GRID:
            raise ValueError("the slice reference was made by another version of ml.slice_check: rerun it")
        return cls(
            np.asarray(data["mean"], np.float64),
            np.asarray(data["inverse_covariance"], np.float64),
            float(data["flag_above"]),
        )


def smallest_tumour_share(masks) -> float:
    """The smallest non-empty mask's area as a fraction of its slice."""
    return float(min(m.sum() / m.size for m in masks if m.any()))


def _read_any(path: Path) -> np.ndarray:
    """A DICOM (pydicom, its first frame) or an image Pillow reads, as a float array."""
    import pydicom  # noqa: PLC0415 (only --check needs it)

    if path.read_bytes()[128:132] == b"DICM":
        pixels = pydicom.dcmread(path).pixel_array
        return np.asarray(
            pixels[0] if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4) else pixels, np.float64
        )
    return np.asarray(Image.open(path).convert("L"), np.float64)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ml.slice_check",
        description="Fit the 'brain MRI slice like the training ones' check on the development patients "
        "(train + validation; the test patients are never read), its level by 5-fold cross-validation over "
        "patient groups, and measure the smallest development tumour; optionally judge extra files (e.g. "
        "pydicom's CT_small.dcm) to see what it says of them.",
    )
    parser.add_argument("--data", required=True, help="dataset folder (cases.csv, images/, masks/)")
    parser.add_argument("--seed", type=int, default=42, help="patient split seed, as the models (42)")
    parser.add_argument(
        "--write", metavar="JSON", help="store the reference here (models/slice_reference.json)"
    )
    parser.add_argument("--check", nargs="*", default=[], metavar="FILE", help="image files to judge")
    args = parser.parse_args(argv)

    records = read_records(args.data)
    test = set(split_by_patient(records, seed=args.seed)["test"])
    development = [r for r in records if r.id not in test]
    slices = load_slices(args.data, [r.id for r in development])
    position = {r.id: i for i, r in enumerate(slices.records)}
    folds = [
        np.array([position[i] for i in fold]) for fold in kfold_by_patient(development, FOLDS, seed=args.seed)
    ]
    reference, fold_rates = SliceReference.fit_cross_validated(
        np.stack([slice_statistics(i) for i in slices.images]), folds
    )
    smallest = smallest_tumour_share(slices.masks)
    report = {
        "development_slices": len(slices.images),
        "folds": FOLDS,
        "flag_above": round(reference.flag_above, 4),
        "out_of_fold_flag_rate_by_fold": [round(r, 4) for r in fold_rates],
        "smallest_development_tumour_share": round(smallest, 6),
        "smallest_development_tumour_px_at_512": round(smallest * 512 * 512, 1),
        "min_tumour_share": round(SMALLEST_TUMOUR_SHARE * smallest, 6),
    }
    for path in args.check:
        image = _read_any(Path(path))
        report[f"check {Path(path).name}"] = {
            "distance": round(reference.distance(image), 2),
            "flagged": reference.is_unlike(image),
        }
    print(json.dumps(report, indent=2))
    if args.write:
        Path(args.write).write_text(
            json.dumps(
                {**reference.to_json(), "min_tumour_share": report["min_tumour_share"], "measured": report},
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
