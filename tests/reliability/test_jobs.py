"""No job lost or stuck (#31, item 2), with a real Redis and real workers that these tests start, stop and
kill themselves: the database holds the work, the broker only carries reminders."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from segmentation import services
from segmentation.models import RunStatus, SegmentationRun
from segmentation.tasks import run_segmentation_task
from segmentation.testing import make_case, needs_services, png_bytes, synthetic_slice
from tests.reliability.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Short deadlines, so that the sweep acts within seconds instead of minutes.
FAST_SWEEP = {
    "TUMORSITE_RUNS_SWEEP_EVERY_S": 2,
    "TUMORSITE_RUN_QUEUED_DEADLINE_S": 3,
    "TUMORSITE_RUN_CLAIM_DEADLINE_S": 10,
}


def _status(run_id):
    return SegmentationRun.objects.get(pk=run_id).status


@needs_services
def test_a_worker_killed_mid_task_and_restarted_finishes_the_run_once_within_a_minute(
    tiny_models_for_workers, make_worker, clinician
):
    worker = make_worker(**FAST_SWEEP).start()
    case = make_case(user=clinician, patient="KILL-9", size=64)
    (run,) = services.segmentation_runs_create_for_case(case=case)  # sent on commit

    wait_for(lambda: _status(run.pk) == RunStatus.RUNNING, timeout=120, every=0.02, what="the claim")
    worker.kill9()
    killed = SegmentationRun.objects.get(pk=run.pk)
    assert (killed.status, killed.attempts, killed.mask_file.name) == (RunStatus.RUNNING, 1, "")

    worker.start()
    # Within a minute of the restart (the spec's bound, with the short deadlines above).
    wait_for(lambda: _status(run.pk) != RunStatus.RUNNING, timeout=60, every=0.2, what="the run's end")
    run.refresh_from_db()
    assert run.status == RunStatus.DONE, run.error
    assert run.attempts == 2  # the killed claim, then the one that finished
    finished = (run.finished_at, run.mask_file.name)

    # The dead worker's message is still unacknowledged in Redis, which hands it out again after the
    # visibility timeout: that copy, sent here at once, finds the run finished.
    run_segmentation_task.delay(run.pk)
    wait_for(lambda: "'skipped'" in worker.logs(), timeout=60, what="the redelivered copy being skipped")
    run.refresh_from_db()
    assert (run.status, run.attempts, run.finished_at, run.mask_file.name) == (RunStatus.DONE, 2, *finished)
    assert worker.logs().count("'done'") == 1


def _upload(api, seed):
    image, _ = synthetic_slice(64, seed=seed)
    data = {
        "image": SimpleUploadedFile(f"outage-{seed}.png", png_bytes(image), content_type="image/png"),
        "patient": f"OUTAGE-{seed}",
    }
    return api.post("/api/cases/", data, format="multipart")


@needs_services
def test_uploads_during_a_broker_outage_get_201_and_every_run_finishes_once_it_is_back(
    tiny_models_for_workers, make_worker, own_broker, clinician
):
    worker = make_worker(**FAST_SWEEP).start()
    api = APIClient()
    api.force_authenticate(clinician)

    own_broker.stop()
    responses = [_upload(api, seed) for seed in (1, 2, 3)]
    assert [r.status_code for r in responses] == [201, 201, 201], [r.content for r in responses]
    case_ids = [r.json()["id"] for r in responses]
    runs = SegmentationRun.objects.filter(case_id__in=case_ids)
    assert runs.count() == 3 and {run.status for run in runs} == {RunStatus.QUEUED}

    own_broker.start()
    wait_for(
        lambda: set(runs.values_list("status", flat=True)) == {RunStatus.DONE},
        timeout=180,
        every=0.5,
        what="every run finishing after the broker came back",
    )
    assert set(runs.values_list("attempts", flat=True)) == {1}
    assert worker.process.poll() is None
