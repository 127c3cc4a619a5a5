"""Running the segmenters on one slice: probability maps, masks, and the ensemble members' agreement.

Nothing here touches the record; ``runs`` stores what these return.
"""

from __future__ import annotations

import numpy as np

from ml.agreement import mask_agreement
from ml.inference import Segmenter, ensemble_proba, load_segmenter
from ml.postprocess import binarize, postprocess_options
from segmentation.models import ModelVersion
from segmentation.services.errors import SegmentationError
from segmentation.services.registry import models_dir


def segmenter(version: ModelVersion) -> Segmenter:
    """The loaded model of a single (not ensemble) version, cached per process by ``ml.inference``."""
    path = models_dir() / version.file_path
    if not path.is_file():
        raise SegmentationError(
            f"The model file for {version.name} is missing ({version.file_path}); "
            "run `manage.py sync_models`."
        )
    return load_segmenter(path)


def predict_probability(
    version: ModelVersion, image: np.ndarray, *, stored: dict | None = None
) -> np.ndarray:
    """One model's (or the ensemble's) probability map at the image's size, without touching the record."""
    if not version.is_ensemble:
        return segmenter(version).predict_proba([image])[0]
    return ensemble_proba([prob for _, prob in member_probabilities(version, image, stored=stored)])


def member_probabilities(
    version: ModelVersion, image: np.ndarray, *, stored: dict | None = None
) -> list[tuple[ModelVersion, np.ndarray]]:
    """Each member of the ensemble ``version`` with its probability map of ``image``: the ``stored`` map
    (by member name) when the member ran already with its own TTA, else a fresh prediction."""
    members = list(ModelVersion.objects.filter(name__in=version.members))
    if not members:
        raise SegmentationError("The ensemble has no member models; run `manage.py sync_models`.")
    tta = version.metadata.get("tta")  # None: each member's own choice, as its stored run made it
    out = []
    for member in members:
        prob = (stored or {}).get(member.name) if tta is None else None
        if prob is None or prob.shape != image.shape:
            prob = segmenter(member).predict_proba([image], tta=tta)[0]
        out.append((member, prob))
    return out


def member_agreement(version: ModelVersion, members: list[tuple[ModelVersion, np.ndarray]]) -> dict:
    """``agreement``: mean pairwise Dice of the members' masks, each made with the member's own threshold
    and clean-up (``ml.agreement.mask_agreement``); ``agreement_flagged``: whether it is below the
    ensemble's ``agreement.flag_below`` (chosen on the validation split by ``python -m ml.agreement
    --write``), or None when no such choice is stored."""
    value = mask_agreement([mask_from_probability(member, prob) for member, prob in members])
    flag_below = (version.metadata.get("agreement") or {}).get("flag_below")
    flagged = None if value is None or flag_below is None else bool(value < flag_below)
    return {"agreement": None if value is None else round(value, 4), "agreement_flagged": flagged}


def segment_image(version: ModelVersion, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probability map, bool mask) of one slice, as a run would store them; nothing is stored."""
    prob = predict_probability(version, image)
    return prob, mask_from_probability(version, prob)


def mask_from_probability(version: ModelVersion, prob: np.ndarray) -> np.ndarray:
    """The version's bool mask: its own threshold and clean-up (``ml.postprocess``)."""
    return binarize(prob, version.threshold, **postprocess_options(version.metadata.get("postprocess")))
