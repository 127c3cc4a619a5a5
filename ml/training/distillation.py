"""Knowledge distillation: soft training targets from teacher models.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531).
"""

from __future__ import annotations

import time

import numpy as np

from ml.inference import file_sha256, load_segmenter, loaded_for_now


def teacher_targets(
    teacher_paths,
    images: np.ndarray,
    masks: np.ndarray,
    weight: float,
    *,
    precision: str | None = None,
    log=print,
) -> np.ndarray:
    """Soft training targets for knowledge distillation (Hinton, Vinyals & Dean 2015, arXiv:1503.02531):
    ``(1 - weight) * mask + weight * teacher``, where teacher is the mean tumour probability of the
    ``teacher_paths`` bundles on each prepared ``(N, S, S, 1)`` image, each with flip TTA, at the
    model input size (no zoom, threshold or clean-up). The teachers must take ``S``-pixel inputs.

    Why: the student learns where the teachers (an ensemble, typically) are unsure, e.g. at a faint
    tumour border, instead of only the expert's hard outline, which it otherwise overfits.
    """
    size = images.shape[1]
    probs = np.zeros(images.shape, np.float32)
    with loaded_for_now():  # free the teachers afterwards, but not models the process already held
        for path in teacher_paths:
            teacher = load_segmenter(path, precision=precision)
            if teacher.input_size != size:
                raise ValueError(
                    f"teacher {path} takes {teacher.input_size} px inputs; this run trains at {size} px."
                )
            started = time.time()
            probs += teacher.predict_small(images, tta=True) / len(teacher_paths)
            log(f"teacher {teacher.name}: {len(images)} training slices in {time.time() - started:.0f} s")
    return ((1.0 - weight) * masks + weight * probs).astype(np.float32)


def distillation_meta(cfg) -> dict | None:
    """What the soft targets were made of, with each teacher's SHA-256 (None without distillation)."""
    if not cfg.distill_from:
        return None
    return {
        "weight": cfg.distill_weight,
        "target": (
            "(1 - weight) * expert mask + weight * mean teacher probability (flip TTA, model input size)"
        ),
        "teachers": [{"path": str(p), "sha256": file_sha256(p)} for p in cfg.distill_from],
    }
