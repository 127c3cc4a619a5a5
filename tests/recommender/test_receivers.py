"""The record and segmentation announce a clinician's decisions with signals, sent once the decision is
committed; the recommender listens.

No model is registered here, so describing a case needs no TensorFlow (features without an embedding).
"""

import pytest

from cases.models import TypeSource
from cases.review import case_mask_correct, case_tumour_type_set
from recommender import receivers
from recommender.models import CaseFeatures, MaskKind
from segmentation.testing import make_case, synthetic_slice

pytestmark = pytest.mark.django_db


def test_a_corrected_outline_brings_a_typed_case_into_the_base(
    media_dir, clinician, django_capture_on_commit_callbacks
):
    case = make_case(user=clinician, patient="CORRECTED", tumour_type="glioma")
    assert not CaseFeatures.objects.filter(case=case).exists()  # no mask yet: nothing to describe
    _, lesion = synthetic_slice(96, center=(48, 48), radius=10)
    with django_capture_on_commit_callbacks() as announced:
        case_mask_correct(case=case, mask=lesion, user=clinician)
    assert not CaseFeatures.objects.filter(case=case).exists()  # nothing is heard before the commit
    for callback in announced:
        callback()
    features = CaseFeatures.objects.get(case=case)
    assert features.mask_kind == MaskKind.GROUND_TRUTH and features.in_base
    assert features.tumour_type == "glioma"


def test_choosing_the_tumour_type_re_describes_the_case(
    media_dir, clinician, django_capture_on_commit_callbacks
):
    case = make_case(user=clinician, patient="UNTYPED", ground_truth=True)
    receivers.describe_after_correction(sender=None, case=case)  # described before any type is known
    assert not CaseFeatures.objects.get(case=case).in_base
    with django_capture_on_commit_callbacks(execute=True):
        case_tumour_type_set(case=case, tumour_type="pituitary", user=clinician)
    features = CaseFeatures.objects.get(case=case)
    assert features.in_base and features.tumour_type == "pituitary"


def test_a_failed_description_is_logged_and_keeps_the_clinicians_decision(
    media_dir, clinician, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    case = make_case(user=clinician, patient="BROKEN", ground_truth=True)

    def broken(*, case):
        raise RuntimeError("no model installed")

    monkeypatch.setattr(receivers, "case_analyse", broken)
    with django_capture_on_commit_callbacks(execute=True):
        case_tumour_type_set(case=case, tumour_type="meningioma", user=clinician)
    case.refresh_from_db()
    assert (case.tumour_type, case.tumour_type_source) == ("meningioma", TypeSource.CLINICIAN)
    assert f"describing case {case.pk} after its tumour type was chosen failed" in caplog.text
