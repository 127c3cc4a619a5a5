"""The production path: tasks travel through Redis to a real Celery worker (CI starts one)."""

import time

import pytest

from segmentation import services
from segmentation.models import ModelVersion, RunStatus, SegmentationRun
from segmentation.tasks import run_segmentation_task
from segmentation.testing import make_case, needs_services


@needs_services
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_message_delivered_twice_to_the_worker_gives_one_result(tiny_bundles_dir, settings, clinician):
    settings.TUMORSITE_MODELS_DIR = tiny_bundles_dir
    services.model_versions_sync()
    # Absolute paths, so the worker finds the bundles whatever its own TUMORSITE_MODELS_DIR.
    for version in ModelVersion.objects.filter(is_ensemble=False):
        version.file_path = str(tiny_bundles_dir / version.file_path)
        version.save()
    case = make_case(user=clinician, patient="WORKER-1", size=64)
    ModelVersion.objects.exclude(name="tiny_unet").update(is_active=False)
    (run,) = services.segmentation_runs_create_for_case(case=case)  # enqueued once, on commit
    run_segmentation_task.delay(run.pk)  # ...and delivered again (the task stores no result: its row is it)
    deadline = time.monotonic() + 180
    while SegmentationRun.objects.get(pk=run.pk).status != RunStatus.DONE and time.monotonic() < deadline:
        time.sleep(0.5)
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.attempts == 1
    assert SegmentationRun.objects.filter(case=case).count() == 1
