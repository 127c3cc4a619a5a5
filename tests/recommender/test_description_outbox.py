"""A description asked for from a web request is never lost (#31, item 2): the ask is recorded before its
message is sent, the task that describes the case clears it, and the sweep sends again the asks whose
message was lost (the broker was down) or whose worker died."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cases.review import case_tumour_type_set
from recommender import tasks
from recommender.models import CaseFeatures, DescriptionRequest
from recommender.services import description_request, description_requests_answered
from segmentation.testing import make_case
from tumorsite import queue

pytestmark = pytest.mark.django_db


def _age(case, *, seconds: float, sent: bool = False) -> None:
    then = timezone.now() - timedelta(seconds=seconds)
    DescriptionRequest.objects.filter(case=case).update(requested_at=then, sent_at=then if sent else None)


@pytest.fixture
def broker_down(monkeypatch):
    def down(task, *args):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(queue, "enqueue", down)
    monkeypatch.setattr(queue, "waiting", lambda name=None: None)


def test_a_description_asked_while_the_broker_is_down_is_sent_by_the_sweep_once_it_is_back(
    media_dir, clinician, broker_down, monkeypatch, django_capture_on_commit_callbacks
):
    case = make_case(user=clinician, patient="OUTBOX", ground_truth=True)
    with django_capture_on_commit_callbacks(execute=True):
        case_tumour_type_set(case=case, tumour_type="glioma", user=clinician)
    ask = DescriptionRequest.objects.get(case=case)
    assert (ask.sent_at, ask.sends, ask.reason) == (None, 0, "after its tumour type was chosen")
    assert not CaseFeatures.objects.filter(case=case).exists()

    assert tasks.descriptions_sweep_task.apply(kwargs={"lost_after_s": 0}).get()["sent"] == 0  # still down

    # The broker is back; what is sent runs at once, in this test's transaction.
    monkeypatch.setattr(queue, "enqueue", lambda task, *args: task.apply(args=args))
    monkeypatch.setattr(queue, "waiting", lambda name=None: 0)
    _age(case, seconds=600)
    swept = tasks.descriptions_sweep_task.apply(kwargs={"lost_after_s": 300}).get()
    assert swept == {"overdue": 1, "sent": 1, "waiting": 0}
    assert CaseFeatures.objects.get(case=case).tumour_type == "glioma"
    assert not DescriptionRequest.objects.exists()  # answered


def test_the_sweep_leaves_recent_asks_and_asks_behind_a_backlog(media_dir, clinician, monkeypatch):
    sent = []
    monkeypatch.setattr(queue, "enqueue", lambda task, *args: sent.append(args))
    recent, lost = (make_case(user=clinician, patient=f"P{i}", seed=i) for i in range(2))
    for case in (recent, lost):
        description_request(case_id=case.pk, reason="after a review of its segmentation")
    _age(lost, seconds=900, sent=True)  # sent 15 minutes ago and never done: its worker died

    monkeypatch.setattr(queue, "waiting", lambda name=None: 3)
    assert tasks.descriptions_sweep_task.apply(kwargs={"lost_after_s": 300}).get()["sent"] == 0
    monkeypatch.setattr(queue, "waiting", lambda name=None: 0)
    assert tasks.descriptions_sweep_task.apply(kwargs={"lost_after_s": 300}).get()["sent"] == 1
    assert sent == [(lost.pk,)]
    row = DescriptionRequest.objects.get(case=lost)
    assert row.sends == 2 and row.sent_at > timezone.now() - timedelta(seconds=60)
    # Just sent: not sent again until it is overdue once more.
    assert tasks.descriptions_sweep_task.apply(kwargs={"lost_after_s": 300}).get()["overdue"] == 0


def test_an_ask_made_while_a_description_runs_outlives_it(media_dir, clinician):
    case = make_case(user=clinician, patient="LATE-ASK", ground_truth=True)
    started = timezone.now()
    description_request(case_id=case.pk, reason="after its outline was corrected")  # after the start
    description_requests_answered(case_id=case.pk, started=started)
    assert DescriptionRequest.objects.filter(case=case).exists()
    assert tasks.case_analyse_task.apply(args=[case.pk]).get() == "described"
    assert not DescriptionRequest.objects.filter(case=case).exists()


def test_the_beat_runs_the_descriptions_sweep(settings):
    entries = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "recommender.tasks.descriptions_sweep_task" in entries
