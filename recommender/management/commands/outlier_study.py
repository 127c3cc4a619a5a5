"""``manage.py outlier_study --data ../shared/data/figshare``: how often the outlier rule flags an outline.

The rule (recommender.analysis) flags an AI outline whose size relative to the head, elongation,
solidity or number of parts lies beyond the case base's 1st-99th percentiles. Here the "case base" is
the training split's expert masks and the outlines judged are the validation patients' expert masks: the
rate at which the rule flags a correct outline; then the same masks grown k times their area.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand
from scipy import ndimage

from ml.data import load_slices, read_records, split_by_patient
from recommender.analysis import OUTLIER_FEATURES, OUTLIER_PERCENTILES
from recommender.features import FEATURE_NAMES, FeatureError, extract


def _features(images, masks) -> np.ndarray:
    rows = []
    for image, mask in zip(images, masks, strict=True):
        try:
            rows.append(extract(image, mask))
        except FeatureError:
            continue
    return np.stack(rows).astype(np.float64)


def _grown(mask: np.ndarray, factor: float) -> np.ndarray:
    """The mask dilated until its area reaches ``factor`` times the original (or the frame)."""
    target, grown = factor * mask.sum(), mask
    while grown.sum() < target and not grown.all():
        grown = ndimage.binary_dilation(grown)
    return grown


class Command(BaseCommand):
    help = (
        "How often the outlier rule (recommender.analysis) flags correct outlines: percentiles of the "
        "outline features on the training split's expert masks, the share of the validation split's "
        "expert masks beyond them, and of those masks grown k times (as an over-segmenting model draws)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="dataset folder (cases.csv, images/, masks/)")
        parser.add_argument("--seed", type=int, default=42, help="patient split seed, as the models (42)")
        parser.add_argument("--grow", type=float, nargs="*", default=[2.0, 2.4], help="area factors to try")
        parser.add_argument("--json", dest="json_path", metavar="PATH", help="also write the figures here")

    def handle(self, *args, **options):
        split = split_by_patient(read_records(options["data"]), seed=options["seed"])
        train = load_slices(options["data"], split["train"])
        val = load_slices(options["data"], split["val"])
        base = _features(train.images, train.masks)
        columns = [FEATURE_NAMES.index(name) for name in OUTLIER_FEATURES]
        lo, hi = np.percentile(base[:, columns], OUTLIER_PERCENTILES, axis=0)

        def rate(feats: np.ndarray) -> dict:
            out = (feats[:, columns] < lo) | (feats[:, columns] > hi)
            per = {name: round(float(out[:, i].mean()), 4) for i, name in enumerate(OUTLIER_FEATURES)}
            return {"any": round(float(out.any(axis=1).mean()), 4), **per}

        report = {
            "train_expert_masks": len(base),
            "percentiles": {
                name: {"p1": round(float(lo[i]), 4), "p99": round(float(hi[i]), 4)}
                for i, name in enumerate(OUTLIER_FEATURES)
            },
            "val_expert_masks_flagged": rate(_features(val.images, val.masks)),
        }
        for factor in options["grow"]:
            grown = [_grown(m, factor) for m in val.masks]
            report[f"val_masks_grown_{factor:g}x_flagged"] = rate(_features(val.images, grown))
        self.stdout.write(json.dumps(report, indent=2))
        if options["json_path"]:
            Path(options["json_path"]).write_text(json.dumps(report, indent=2) + "\n")
