"""Fixtures for the server-side page tests: a case with finished AI runs, made without TensorFlow."""

from __future__ import annotations

import pytest

from segmentation.testing import *  # noqa: F403  (shared fixtures: media_dir, models_dir, ...)
from segmentation.testing import make_case, synthetic_slice
from tests.web.builders import add_finished_run


@pytest.fixture
def segmented_case(db, media_dir, owner):
    """A clinician's upload (patient WEB-1, no ground truth) with two finished AI masks."""
    case = make_case(user=owner, patient="WEB-1", seed=3)
    _, lesion = synthetic_slice(96, center=(48, 48), radius=10, seed=3)
    add_finished_run(case, "unet_a", lesion)
    add_finished_run(case, "ensemble", lesion, ensemble=True)
    return case
