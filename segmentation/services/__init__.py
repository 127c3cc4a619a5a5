"""Writes for the segmentation app, by concern:

- ``registry``: model versions, sync, the ensemble's calibration, the primary model;
- ``runs``: the run state machine (create, claim, execute, release, fail, requeue, sweep) and the review;
- ``inference``: loading a segmenter, probability maps, masks, the ensemble members' agreement;
- ``files``: storing a run's mask and probability map (reading them back is in ``selectors``).

The names other apps use are importable from here.
"""

from segmentation.selectors import load_mask, load_probability
from segmentation.services.errors import SegmentationError, TransientError
from segmentation.services.inference import (
    mask_from_probability,
    member_agreement,
    member_probabilities,
    predict_probability,
    segment_image,
    segmenter,
)
from segmentation.services.registry import (
    best_per_architecture,
    model_versions_sync,
    models_dir,
    primary_model_version,
    type_classifier_version,
    val_dice,
    version_file,
    weights_problem,
    weights_used,
)
from segmentation.services.runs import (
    REVIEW_REASON_MAX_LENGTH,
    Sweep,
    lost_run_after,
    measurements,
    segmentation_run_claim,
    segmentation_run_execute,
    segmentation_run_fail,
    segmentation_run_release,
    segmentation_run_requeue,
    segmentation_run_review,
    segmentation_runs_create_for_case,
    segmentation_runs_sweep,
    stale_run_after,
)

__all__ = [
    "REVIEW_REASON_MAX_LENGTH",
    "SegmentationError",
    "Sweep",
    "TransientError",
    "best_per_architecture",
    "load_mask",
    "load_probability",
    "lost_run_after",
    "mask_from_probability",
    "measurements",
    "member_agreement",
    "member_probabilities",
    "model_versions_sync",
    "models_dir",
    "predict_probability",
    "primary_model_version",
    "segment_image",
    "segmentation_run_claim",
    "segmentation_run_execute",
    "segmentation_run_fail",
    "segmentation_run_release",
    "segmentation_run_requeue",
    "segmentation_run_review",
    "segmentation_runs_create_for_case",
    "segmentation_runs_sweep",
    "segmenter",
    "stale_run_after",
    "type_classifier_version",
    "val_dice",
    "version_file",
    "weights_problem",
    "weights_used",
]
