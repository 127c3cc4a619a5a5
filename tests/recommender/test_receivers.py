"""The record and segmentation announce a clinician's decisions with signals, sent once the decision is
committed; the recommender listens.

The decisions made in web requests (a review, a correction, a chosen type) only queue
``recommender.tasks.case_analyse_task``: describing a case runs Keras models, which only a worker loads.
``queued_tasks_inline`` runs what is queued at once, in the test's transaction.

No model is registered here, so describing a case needs no TensorFlow (features without an embedding).
"""

import pytest

from cases.models import TypeSource
from cases.review import case_mask_correct, case_tumour_type_set
from recommender import receivers, tasks
from recommender.models import CaseFeatures, MaskKind
from segmentation.models import RunStatus, SegmentationRun
from segmentation.testing import make_case, synthetic_slice
from tumorsite import queue
from tumorsite.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_a_corrected_outline_brings_a_typed_case_into_the_base(
    media_dir, clinician, django_capture_on_commit_callbacks, queued_tasks_inline
):
    case = make_case(user=clinician, patient="CORRECTED", tumour_type="glioma")
    assert not CaseFeatures.objects.filter(case=case).exists()  # no mask yet: nothing to describe
    _, lesion = synthetic_slice(96, center=(48, 48), radius=10)
    with django_capture_on_commit_callbacks() as announced:
        case_mask_correct(case=case, mask=lesion, user=clinician)
    assert not CaseFeatures.objects.filter(case=case).exists()  # nothing is heard before the commit
    with django_capture_on_commit_callbacks(execute=True):  # the commit: the receiver queues on commit too
        for callback in announced:
            callback()
    assert queued_tasks_inline == ["recommender.tasks.case_analyse_task"]
    features = CaseFeatures.objects.get(case=case)
    assert features.mask_kind == MaskKind.GROUND_TRUTH and features.in_base
    assert features.tumour_type == "glioma"


def test_choosing_the_tumour_type_re_describes_the_case(
    media_dir, clinician, django_capture_on_commit_callbacks, queued_tasks_inline
):
    case = make_case(user=clinician, patient="UNTYPED", ground_truth=True)
    tasks.case_analyse_task.apply(args=[case.pk])  # described before any type is known
    assert not CaseFeatures.objects.get(case=case).in_base
    with django_capture_on_commit_callbacks(execute=True):
        case_tumour_type_set(case=case, tumour_type="pituitary", user=clinician)
    features = CaseFeatures.objects.get(case=case)
    assert features.in_base and features.tumour_type == "pituitary"


def test_a_failed_description_keeps_the_clinicians_decision(
    media_dir, clinician, monkeypatch, django_capture_on_commit_callbacks, queued_tasks_inline
):
    case = make_case(user=clinician, patient="BROKEN", ground_truth=True)

    def broken(*, case):
        raise RuntimeError("no model installed")

    monkeypatch.setattr(tasks, "case_analyse", broken)
    with django_capture_on_commit_callbacks(execute=True):
        case_tumour_type_set(case=case, tumour_type="meningioma", user=clinician)
    assert queued_tasks_inline == ["recommender.tasks.case_analyse_task"]  # it ran, and failed
    case.refresh_from_db()
    assert (case.tumour_type, case.tumour_type_source) == ("meningioma", TypeSource.CLINICIAN)
    assert not CaseFeatures.objects.filter(case=case).exists()


def test_decisions_in_a_web_request_only_queue_the_description(
    media_dir, clinician, monkeypatch, django_capture_on_commit_callbacks
):
    """No model runs in the request: the review, the correction and the type each queue one task."""
    case = make_case(user=clinician, patient="QUEUED", ground_truth=True)
    sent = []
    monkeypatch.setattr(queue, "enqueue", lambda task, *args: sent.append((task.name, args)))

    def no_model_here(*, case):
        raise AssertionError("case_analyse ran in the web request")

    monkeypatch.setattr(receivers, "case_analyse", no_model_here)
    monkeypatch.setattr(tasks, "case_analyse", no_model_here)
    _, lesion = synthetic_slice(96, center=(40, 40), radius=8)
    with django_capture_on_commit_callbacks(execute=True):
        case_mask_correct(case=case, mask=lesion, user=clinician)
    with django_capture_on_commit_callbacks(execute=True):
        case_tumour_type_set(case=case, tumour_type="glioma", user=clinician)
    assert sent == [("recommender.tasks.case_analyse_task", (case.pk,))] * 2
    assert not CaseFeatures.objects.filter(case=case).exists()


def test_a_review_queues_the_description(
    media_dir, clinician, monkeypatch, django_capture_on_commit_callbacks
):
    case = make_case(user=clinician, patient="REVIEWED")
    run = SegmentationRun(case=case, status=RunStatus.DONE)
    sent = []
    monkeypatch.setattr(queue, "enqueue", lambda task, *args: sent.append((task.name, args)))
    receivers.describe_after_review(sender=None, run=run)
    assert sent == []  # on commit only
    with django_capture_on_commit_callbacks(execute=True):
        receivers.describe_after_review(sender=None, run=run)
    assert sent == [("recommender.tasks.case_analyse_task", (case.pk,))]


def test_the_broker_being_down_keeps_the_decision_and_says_so(
    media_dir, clinician, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    case = make_case(user=clinician, patient="NO-BROKER", ground_truth=True)

    def down(task, *args):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(queue, "enqueue", down)
    with django_capture_on_commit_callbacks(execute=True):
        case_tumour_type_set(case=case, tumour_type="pituitary", user=clinician)
    case.refresh_from_db()
    assert (case.tumour_type, case.tumour_type_source) == ("pituitary", TypeSource.CLINICIAN)
    assert f"could not queue the description of case(s) [{case.pk}]" in caplog.text
    assert "the sweep sends them later" in caplog.text


def test_the_task_describes_the_case_as_its_record_says_and_again_alike(media_dir, clinician):
    case = make_case(user=clinician, patient="TWICE", tumour_type="meningioma", ground_truth=True)
    assert tasks.case_analyse_task.apply(args=[case.pk]).get() == "described"
    first = CaseFeatures.objects.get(case=case)
    assert first.in_base and first.tumour_type == "meningioma"
    assert tasks.case_analyse_task.apply(args=[case.pk]).get() == "described"  # a redelivery: same result
    again = CaseFeatures.objects.get(case=case)
    assert again.pk == first.pk and list(again.features) == list(first.features)


def test_the_task_skips_a_case_that_is_gone(db):
    assert tasks.case_analyse_task.apply(args=[987654]).get() == "skipped"
    assert not CaseFeatures.objects.exists()


def test_a_worker_finds_the_task():
    celery_app.loader.import_default_modules()  # what a worker does at start-up (autodiscover_tasks)
    assert celery_app.tasks["recommender.tasks.case_analyse_task"].run is tasks.case_analyse_task.run
