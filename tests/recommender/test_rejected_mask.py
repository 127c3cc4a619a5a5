"""A rejected AI mask never describes a case: once a clinician rejects it, the case's description and
the type suggestion made from it are gone, until a clinician outlines the case.

No segmenter is registered as a Keras model here (the runs are made finished), so no TensorFlow loads.
"""

import pytest

from cases.models import Case, TypeSource
from recommender.models import CaseFeatures, MaskKind
from recommender.services import case_analyse, case_base_build, case_mask
from segmentation.services import segmentation_run_review
from segmentation.testing import make_case, make_case_base, synthetic_case_kwargs, synthetic_slice
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db


def _segmented(tumour_type: str, *, patient: str, seed: int):
    """An upload without ground truth, with a finished primary (ensemble) run and another model's run."""
    kwargs = synthetic_case_kwargs(tumour_type, 500 + seed)
    case = make_case(patient=patient, **kwargs)
    _, lesion = synthetic_slice(96, center=kwargs["center"], radius=kwargs["radius"], seed=seed)
    other = add_finished_run(case, "unet_a", lesion)
    primary = add_finished_run(case, "ensemble", lesion, ensemble=True)
    return case, primary, other


def test_the_cases_mask_is_never_a_rejected_one(media_dir, clinician):
    case, primary, other = _segmented("glioma", patient="MASK", seed=1)
    assert case_mask(case)[1] == MaskKind.PRIMARY
    segmentation_run_review(run=other, user=clinician, validated=False)
    assert case_mask(case)[1] == MaskKind.PRIMARY  # another model's rejection leaves the primary mask
    segmentation_run_review(run=primary, user=clinician, validated=False)
    assert case_mask(case) is None
    segmentation_run_review(run=other, user=clinician, validated=True)
    assert case_mask(case)[1] == MaskKind.VALIDATED


def test_rejecting_the_primary_mask_clears_the_description_and_the_suggestion(
    media_dir, clinician, django_capture_on_commit_callbacks, queued_tasks_inline
):
    make_case_base(n_per_type=3, user=clinician)
    case_base_build(use_embedding=False)
    case, primary, _ = _segmented("glioma", patient="REJECTED", seed=2)
    assert case_analyse(case=case).mask_kind == MaskKind.PRIMARY
    case.refresh_from_db()
    assert case.predicted_tumour_type and case.tumour_type_source == TypeSource.PREDICTED

    with django_capture_on_commit_callbacks(execute=True):  # the recommender hears the review
        segmentation_run_review(run=primary, user=clinician, validated=False)
    assert queued_tasks_inline == ["recommender.tasks.case_analyse_task"]
    case = Case.objects.get(pk=case.pk)
    assert not CaseFeatures.objects.filter(case=case).exists()
    assert (case.predicted_tumour_type, case.predicted_confidence, case.predicted_type_sources) == (
        None,
        None,
        None,
    )
    assert (case.tumour_type, case.tumour_type_source) == (None, None)


def test_a_clinicians_type_survives_the_rejection(media_dir, clinician):
    make_case_base(n_per_type=3, user=clinician)
    case_base_build(use_embedding=False)
    case, primary, _ = _segmented("pituitary", patient="TYPED", seed=3)
    Case.objects.filter(pk=case.pk).update(tumour_type="meningioma", tumour_type_source=TypeSource.CLINICIAN)
    case.refresh_from_db()
    case_analyse(case=case)
    segmentation_run_review(run=primary, user=clinician, validated=False)
    assert case_analyse(case=case) is None
    case.refresh_from_db()
    assert (case.tumour_type, case.tumour_type_source) == ("meningioma", TypeSource.CLINICIAN)
    assert case.predicted_tumour_type is None
