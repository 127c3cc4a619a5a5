"""Running the segmenters on one slice: probability maps, masks, and the ensemble members' agreement.

Nothing here touches the record; ``runs`` stores what these return.

A case gets one run per active model, each its own task. The first of them to run computes the maps of
every active single model in one graph call (``ml.inference.predict_proba_together``) and keeps them in
this process for the others (``_RECENT``, the last few slices): the runs that follow on the same worker
store a map already made, exactly the one they would have computed.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
from django.conf import settings

from ml.agreement import mask_agreement
from ml.inference import (
    Segmenter,
    ensemble_proba,
    load_segmenter,
    predict_proba_together,
    resolve_precision,
)
from ml.postprocess import binarize, postprocess_options
from segmentation.models import ModelVersion
from segmentation.services.errors import SegmentationError
from segmentation.services.registry import models_dir, weights_problem


def segmenter(version: ModelVersion) -> Segmenter:
    """The loaded model of a single (not ensemble) version, cached per process by ``ml.inference``."""
    path = models_dir() / version.file_path
    if not path.is_file():
        raise SegmentationError(
            f"The model file for {version.name} is missing ({version.file_path}); "
            "run `manage.py sync_models`."
        )
    # On another host, or after a file was copied over by hand, the file may hold other weights than the
    # version records: its runs would then name weights that did not make them. Hashed once per change.
    problem = weights_problem(version)
    if problem:
        raise SegmentationError(
            f"{version.name}: {problem} ({version.file_path}); copy the recorded bundle to this host "
            "or run `manage.py sync_models`."
        )
    precision = settings.TUMORSITE_INFERENCE_PRECISION
    return load_segmenter(
        path,
        precision=None if precision == "saved" else resolve_precision(precision),
        runtime=settings.TUMORSITE_INFERENCE_RUNTIME,
    )


# (slice digest, loaded segmenter, tta) -> probability map; the segmenter object changes with its weights.
_RECENT: OrderedDict[tuple, np.ndarray] = OrderedDict()
_RECENT_MAX = 24  # maps: a few cases' worth, about 6 MB for 256 x 256 slices
_RECENT_LOCK = threading.Lock()


def predict_probability(
    version: ModelVersion, image: np.ndarray, *, stored: dict | None = None
) -> np.ndarray:
    """One model's (or the ensemble's) probability map at the image's size, without touching the record.

    A single model's map is made together with those of the other active single models (their runs of
    the same case follow), or taken from those made so by an earlier run in this process."""
    if not version.is_ensemble:
        siblings = (
            ModelVersion.objects.segmenters().filter(is_active=True, is_ensemble=False).exclude(pk=version.pk)
        )
        return probabilities_together([version, *siblings], image)[0]
    return ensemble_proba([prob for _, prob in member_probabilities(version, image, stored=stored)])


def probabilities_together(
    versions: list[ModelVersion], image: np.ndarray, *, tta: bool | None = None
) -> list[np.ndarray]:
    """The maps of ``versions`` (single models) for ``image``, in their order: those not made recently in
    this process are made in one graph call. A model other than the first whose weights cannot be loaded
    is left out of the call (its own run reports the error); the first one's error is raised."""
    digest = hashlib.sha256(
        f"{image.dtype}{image.shape}".encode() + np.ascontiguousarray(image).tobytes()
    ).hexdigest()
    loaded: list[Segmenter | None] = []
    for i, version in enumerate(versions):
        try:
            loaded.append(segmenter(version))
        except (SegmentationError, OSError, ValueError):
            if i == 0:
                raise
            loaded.append(None)
    keys = [None if seg is None else (digest, seg, tta) for seg in loaded]
    with _RECENT_LOCK:
        found = {k: _RECENT[k] for k in keys if k is not None and k in _RECENT}
    missing = [(k, seg) for k, seg in zip(keys, loaded, strict=True) if k is not None and k not in found]
    if missing:
        maps = predict_proba_together([seg for _, seg in missing], [image], tta=tta)
        with _RECENT_LOCK:
            for (key, _), per_image in zip(missing, maps, strict=True):
                found[key] = _RECENT[key] = per_image[0]
                while len(_RECENT) > _RECENT_MAX:
                    _RECENT.popitem(last=False)
    return [found[k] if k is not None else None for k in keys]


def member_probabilities(
    version: ModelVersion, image: np.ndarray, *, stored: dict | None = None
) -> list[tuple[ModelVersion, np.ndarray]]:
    """Each member of the ensemble ``version`` with its probability map of ``image``: the ``stored`` map
    (by member name) when the member ran already with its own TTA, else a fresh prediction."""
    members = list(ModelVersion.objects.filter(name__in=version.members))
    if not members:
        raise SegmentationError("The ensemble has no member models; run `manage.py sync_models`.")
    tta = version.metadata.get("tta")  # None: each member's own choice, as its stored run made it
    probs = {}
    for member in members:
        prob = (stored or {}).get(member.name) if tta is None else None
        if prob is not None and prob.shape == image.shape:
            probs[member.pk] = prob
    fresh = [m for m in members if m.pk not in probs]
    for i, member in enumerate(fresh):  # one graph call for all of them, each member's error its own
        probs[member.pk] = probabilities_together([member, *fresh[:i], *fresh[i + 1 :]], image, tta=tta)[0]
    return [(member, probs[member.pk]) for member in members]


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
