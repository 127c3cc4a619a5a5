"""Runs are dispatched from the database (#31, item 2): the sweep's choice, the claim's exactly-once rule,
and sends that fail without failing the caller. Embedded mode; tests/reliability does it with a real
broker and worker."""

from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.utils import timezone

from segmentation import services, tasks
from segmentation.models import RunStatus, SegmentationRun
from segmentation.services import runs as run_services
from segmentation.tasks import run_segmentation_task, runs_send, runs_sweep_task
from segmentation.testing import make_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(models_dir, media_dir, clinician, settings):
    """The case's three runs (tiny_unet, tiny_attention_unet, ensemble), queued, never sent."""
    settings.TUMORSITE_RUN_QUEUED_DEADLINE_S = 180
    settings.TUMORSITE_RUN_CLAIM_DEADLINE_S = 300
    settings.TUMORSITE_RUN_MAX_ATTEMPTS = 3
    services.model_versions_sync()
    case = make_case(user=clinician, size=64)
    created = services.segmentation_runs_create_for_case(case=case)
    return {run.model_version.name: run for run in created}


def _set(run, **fields):
    SegmentationRun.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def _ago(seconds):
    return timezone.now() - timedelta(seconds=seconds)


def test_the_sweep_sends_again_only_runs_queued_or_claimed_past_their_deadline(runs):
    lost = _set(runs["tiny_unet"], created_at=_ago(181))
    released_lately = _set(runs["tiny_attention_unet"], created_at=_ago(600), started_at=_ago(10))
    fresh = runs["ensemble"]
    assert services.segmentation_runs_sweep().resend == [lost.pk]

    _set(lost, status=RunStatus.RUNNING, started_at=_ago(301), attempts=1)  # its worker died
    _set(released_lately, status=RunStatus.RUNNING, started_at=_ago(299), attempts=1)  # still working
    _set(fresh, status=RunStatus.DONE, created_at=_ago(9999), started_at=_ago(9999))
    sweep = services.segmentation_runs_sweep()
    assert sweep.resend == [lost.pk] and sweep.failed == []
    assert SegmentationRun.objects.get(pk=lost.pk).status == RunStatus.RUNNING  # sending changes nothing


def test_finished_and_failed_runs_are_never_sent_again(runs):
    for run, status in zip(runs.values(), (RunStatus.DONE, RunStatus.FAILED, RunStatus.DONE), strict=True):
        _set(run, status=status, created_at=_ago(9999), started_at=_ago(9999), attempts=1)
    assert services.segmentation_runs_sweep() == services.Sweep(resend=[], failed=[])


def test_an_orphan_whose_worker_died_on_every_attempt_fails_with_a_message_that_says_so(runs, settings):
    settings.TUMORSITE_RUN_MAX_ATTEMPTS = 2
    poison = _set(runs["tiny_unet"], status=RunStatus.RUNNING, started_at=_ago(301), attempts=2)
    retry = _set(runs["tiny_attention_unet"], status=RunStatus.RUNNING, started_at=_ago(301), attempts=1)
    sweep = services.segmentation_runs_sweep()
    assert sweep.failed == [poison.pk] and sweep.resend == [retry.pk]
    poison.refresh_from_db()
    assert poison.status == RunStatus.FAILED and poison.finished_at is not None
    assert poison.error.startswith("Gave up after 2 attempts: the worker stopped")


def test_a_run_is_claimed_once_however_often_it_is_delivered(runs):
    run = runs["tiny_unet"]
    claimed = services.segmentation_run_claim(run_id=run.pk)
    assert claimed is not None and claimed.status == RunStatus.RUNNING and claimed.attempts == 1
    assert services.segmentation_run_claim(run_id=run.pk) is None  # a second delivery, the claim is live
    assert SegmentationRun.objects.get(pk=run.pk).attempts == 1


def test_an_expired_claim_is_taken_over_once_and_a_finished_run_never(runs):
    orphan = _set(runs["tiny_unet"], status=RunStatus.RUNNING, started_at=_ago(301), attempts=1)
    taken = services.segmentation_run_claim(run_id=orphan.pk)
    assert taken is not None and taken.attempts == 2
    assert services.segmentation_run_claim(run_id=orphan.pk) is None

    done = _set(runs["tiny_attention_unet"], status=RunStatus.DONE, started_at=_ago(9999), attempts=1)
    assert services.segmentation_run_claim(run_id=done.pk) is None
    done.refresh_from_db()
    assert done.status == RunStatus.DONE and done.attempts == 1


def test_an_orphan_out_of_attempts_is_failed_by_its_next_delivery_not_run(runs, settings):
    settings.TUMORSITE_RUN_MAX_ATTEMPTS = 2
    orphan = _set(runs["tiny_unet"], status=RunStatus.RUNNING, started_at=_ago(301), attempts=2)
    assert run_segmentation_task.apply(args=[orphan.pk]).get() == "skipped"
    orphan.refresh_from_db()
    assert orphan.status == RunStatus.FAILED and orphan.attempts == 2
    assert "Gave up after 2 attempts" in orphan.error


def test_a_redelivered_finished_run_keeps_its_one_result(runs):
    run = runs["tiny_unet"]
    assert run_segmentation_task.apply(args=[run.pk]).get() == "done"
    first = SegmentationRun.objects.get(pk=run.pk)
    # Redelivered long after, when its claim would have expired had it still been running.
    _set(run, started_at=_ago(9999))
    assert run_segmentation_task.apply(args=[run.pk]).get() == "skipped"
    again = SegmentationRun.objects.get(pk=run.pk)
    assert (again.status, again.attempts, again.mask_file.name, again.finished_at) == (
        RunStatus.DONE,
        1,
        first.mask_file.name,
        first.finished_at,
    )


def _broker_down(monkeypatch):
    sent = []

    def enqueue(task, *args):
        sent.append(args)
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.queue, "enqueue", enqueue)
    return sent


def test_creating_runs_with_the_broker_down_commits_them_queued_without_raising(
    models_dir, media_dir, clinician, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    tried = _broker_down(monkeypatch)
    services.model_versions_sync()
    case = make_case(user=clinician, size=64)
    with django_capture_on_commit_callbacks(execute=True):
        created = services.segmentation_runs_create_for_case(case=case)
    assert len(tried) == 1  # the first refusal stops the others: each would wait for the same broker
    assert {run.status for run in SegmentationRun.objects.filter(case=case)} == {RunStatus.QUEUED}
    assert len(created) == 3
    assert "the sweep sends them later" in caplog.text


def test_runs_send_returns_how_many_went_and_never_raises(monkeypatch):
    _broker_down(monkeypatch)
    assert runs_send([1, 2, 3]) == 0
    sent = []
    monkeypatch.setattr(tasks.queue, "enqueue", lambda task, *args: sent.append(args))
    assert runs_send([1, 2, 3]) == 3 and sent == [(1,), (2,), (3,)]


@pytest.mark.parametrize(("waiting", "sent"), [(0, 1), (4, 0), (None, 0)])
def test_the_sweep_task_sends_only_when_nothing_waits_in_the_queue(runs, monkeypatch, waiting, sent):
    _set(runs["tiny_unet"], created_at=_ago(181))
    went = []
    monkeypatch.setattr(tasks.queue, "waiting", lambda queue_name: waiting)
    monkeypatch.setattr(tasks.queue, "enqueue", lambda task, *args: went.append(args))
    assert runs_sweep_task() == {"overdue": 1, "sent": sent, "failed": 0, "waiting": waiting}
    assert went == [(runs["tiny_unet"].pk,)] * sent


def test_runs_sweep_command_sends_every_queued_run_with_queued_after_0(runs, monkeypatch, capsys):
    went = []
    monkeypatch.setattr(tasks.queue, "waiting", lambda queue_name: 0)
    monkeypatch.setattr(tasks.queue, "enqueue", lambda task, *args: went.append(args))
    call_command("runs_sweep")
    assert went == [] and "0 overdue run(s), 0 sent" in capsys.readouterr().out
    call_command("runs_sweep", "--queued-after", "0")
    assert sorted(went) == sorted((run.pk,) for run in runs.values())
    assert "3 overdue run(s), 3 sent" in capsys.readouterr().out


def test_runs_sweep_command_says_when_the_broker_cannot_be_reached(runs, monkeypatch):
    monkeypatch.setattr(tasks.queue, "waiting", lambda queue_name: None)
    with pytest.raises(CommandError, match="The broker cannot be reached"):
        call_command("runs_sweep", "--queued-after", "0")
    with pytest.raises(CommandError, match="0 or more"):
        call_command("runs_sweep", "--queued-after", "-1")


@pytest.mark.django_db(transaction=True)
def test_after_a_restart_of_the_embedded_mode_runs_sweep_runs_what_was_left(
    models_dir, media_dir, clinician, settings, monkeypatch, capsys
):
    settings.CELERY_BROKER_URL = ""
    services.model_versions_sync()
    case = make_case(user=clinician, size=64)
    with monkeypatch.context() as lost:  # the process died before its queue ran them
        lost.setattr(tasks.queue, "enqueue", lambda task, *args: None)
        services.segmentation_runs_create_for_case(case=case)
    assert set(SegmentationRun.objects.filter(case=case).values_list("status", flat=True)) == {
        RunStatus.QUEUED
    }
    call_command("runs_sweep", "--queued-after", "0")
    assert "The runs sent have finished." in capsys.readouterr().out
    finished = set(SegmentationRun.objects.filter(case=case).values_list("status", "attempts"))
    assert finished == {(RunStatus.DONE, 1)}


def test_a_worker_whose_claim_was_taken_over_stores_nothing(runs):
    run = runs["tiny_unet"]
    first = services.segmentation_run_claim(run_id=run.pk)
    claimed_long_ago = _ago(301)  # the first worker hangs past the claim deadline...
    _set(run, started_at=claimed_long_ago)
    first.started_at = claimed_long_ago
    second = services.segmentation_run_claim(run_id=run.pk)  # ...and another takes the run over
    assert second is not None and second.attempts == 2
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:30] = True
    run_services._store_result(first, mask, mask.astype(np.float32), 1.0)  # the first one wakes up
    run.refresh_from_db()
    assert (run.status, run.mask_file.name) == (RunStatus.RUNNING, "")
    run_services._store_result(second, mask, mask.astype(np.float32), 1.0)
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.area_px == 100 and run.mask_file.name


def test_a_sweep_that_cannot_read_the_database_says_so_and_sends_nothing(monkeypatch):
    def unreadable(**kwargs):
        raise OperationalError('database "test_tumorsite" does not exist')

    went = []
    monkeypatch.setattr(tasks.services, "segmentation_runs_sweep", unreadable)
    monkeypatch.setattr(tasks.queue, "enqueue", lambda task, *args: went.append(args))
    assert runs_sweep_task() == {"overdue": None, "sent": 0, "failed": 0, "waiting": None}
    with pytest.raises(CommandError, match="The database cannot be read"):
        call_command("runs_sweep")
    assert went == []
