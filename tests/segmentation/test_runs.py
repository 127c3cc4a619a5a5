import shutil

import numpy as np
import pytest
from PIL import Image

from ml.agreement import mask_agreement
from segmentation import services
from segmentation.models import ModelVersion, RunStatus, SegmentationRun
from segmentation.services import runs as run_services
from segmentation.tasks import MAX_RETRIES, run_segmentation_task
from segmentation.testing import make_case, retrain_bundle

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(models_dir, media_dir, clinician):
    services.model_versions_sync()
    return make_case(user=clinician, size=80)


def _runs(case):
    return {
        r.model_version.name: r
        for r in SegmentationRun.objects.filter(case=case).select_related("model_version")
    }


def test_one_run_per_active_model_and_the_ensemble(case):
    runs = services.segmentation_runs_create_for_case(case=case)
    assert sorted(r.model_version.name for r in runs) == ["ensemble", "tiny_attention_unet", "tiny_unet"]
    assert all(r.status == RunStatus.QUEUED for r in runs)
    # Creating again keeps the existing runs.
    services.segmentation_runs_create_for_case(case=case)
    assert SegmentationRun.objects.filter(case=case).count() == 3


def test_a_run_stores_mask_probability_and_measurements_at_the_scans_size(case):
    services.segmentation_runs_create_for_case(case=case)
    assert run_segmentation_task.apply(args=[_runs(case)["tiny_unet"].pk]).get() == "done"  # and the others
    assert len(_runs(case)) == 3
    for run in _runs(case).values():
        assert run.status == RunStatus.DONE, run.error
        with run.mask_file.open("rb") as fh:
            mask = np.asarray(Image.open(fh))
        with run.probability_file.open("rb") as fh:
            prob = np.asarray(Image.open(fh))
        assert mask.shape == prob.shape == (80, 80) and mask.dtype == prob.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        assert run.area_px == int((mask > 0).sum()) and run.area_mm2 is None  # PNG: spacing unknown
        assert run.bbox is not None and run.centroid is not None
        assert run.runtime_ms > 0 and run.finished_at >= run.started_at
        assert run.attempts == 1
        version = run.model_version
        assert run.weights == (
            version.weights_key
            if not version.is_ensemble
            else "ensemble("
            + ", ".join(
                sorted(m.weights_key for m in version.__class__.objects.filter(name__in=version.members))
            )
            + ")"
        )
        assert "@" in run.weights


def test_a_run_keeps_the_weights_that_made_it_after_new_weights_arrive(case, models_dir, tmp_path, settings):
    services.segmentation_runs_create_for_case(case=case)
    run_segmentation_task.apply(args=[_runs(case)["tiny_unet"].pk])
    run = _runs(case)["tiny_unet"]
    made_by = run.weights
    for f in models_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    settings.TUMORSITE_MODELS_DIR = tmp_path
    retrain_bundle(tmp_path, "tiny_unet", seed=321)
    services.model_versions_sync()
    assert ModelVersion.objects.get(name="tiny_unet").weights_key != made_by
    run = SegmentationRun.objects.select_related("model_version").get(pk=run.pk)
    # The run's version row is never repointed: it retires, named by the weights that made the mask.
    assert run.weights == made_by == run.model_version.weights_key == run.model_version.name


def test_the_ensemble_averages_its_members_stored_probabilities(case):
    services.segmentation_runs_create_for_case(case=case)
    for name in ("tiny_unet", "tiny_attention_unet", "ensemble"):
        run_segmentation_task.apply(args=[_runs(case)[name].pk])
    runs = _runs(case)
    members = [services.load_probability(runs[n]) for n in ("tiny_unet", "tiny_attention_unet")]
    ensemble = services.load_probability(runs["ensemble"])
    np.testing.assert_allclose(ensemble, np.mean(members, axis=0), atol=1.5 / 255)


def test_a_task_delivered_twice_gives_one_result(case):
    services.segmentation_runs_create_for_case(case=case)
    run = _runs(case)["tiny_unet"]
    assert run_segmentation_task.apply(args=[run.pk]).get() == "done"
    first = SegmentationRun.objects.get(pk=run.pk)
    assert run_segmentation_task.apply(args=[run.pk]).get() == "skipped"
    again = SegmentationRun.objects.get(pk=run.pk)
    assert again.attempts == 1 and again.mask_file.name == first.mask_file.name
    assert again.finished_at == first.finished_at


def test_a_task_for_a_deleted_run_returns_quietly(case):
    assert run_segmentation_task.apply(args=[987654]).get() == "skipped"


def test_a_transient_error_is_retried_then_the_run_fails_with_its_message(case, monkeypatch):
    services.segmentation_runs_create_for_case(case=case)
    run = _runs(case)["tiny_unet"]
    calls = []

    def flaky(*, case):
        calls.append(1)
        raise ConnectionError("media storage did not answer")

    monkeypatch.setattr(run_services, "case_pixels", flaky)
    result = run_segmentation_task.apply(args=[run.pk])
    assert result.get() == "failed"
    run.refresh_from_db()
    assert len(calls) == MAX_RETRIES + 1 == run.attempts
    assert run.status == RunStatus.FAILED
    assert "media storage did not answer" in run.error and "Gave up after" in run.error


def test_a_transient_error_then_success_ends_done(case, monkeypatch):
    services.segmentation_runs_create_for_case(case=case)
    run = _runs(case)["tiny_unet"]
    real = run_services.case_pixels
    calls = []

    def flaky_once(*, case):
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("database is locked")
        return real(case=case)

    monkeypatch.setattr(run_services, "case_pixels", flaky_once)
    assert run_segmentation_task.apply(args=[run.pk]).get() == "done"
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.attempts == 2 and run.error == ""


def test_a_permanent_error_fails_at_once_with_a_readable_message(case, monkeypatch):
    services.segmentation_runs_create_for_case(case=case)
    run = _runs(case)["tiny_unet"]
    run.model_version.file_path = "gone.keras"
    run.model_version.save()
    assert run_segmentation_task.apply(args=[run.pk]).get() == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.attempts == 1
    assert "model file for tiny_unet is missing" in run.error


def test_a_permanent_error_in_a_run_taken_with_the_delivered_one_fails_it_alone(case):
    services.segmentation_runs_create_for_case(case=case)
    version = _runs(case)["tiny_attention_unet"].model_version
    version.file_path = "gone.keras"
    version.save()
    assert run_segmentation_task.apply(args=[_runs(case)["tiny_unet"].pk]).get() == "done"
    runs = _runs(case)
    assert runs["tiny_unet"].status == RunStatus.DONE
    assert runs["tiny_attention_unet"].status == RunStatus.FAILED
    assert "model file for tiny_attention_unet is missing" in runs["tiny_attention_unet"].error
    assert runs["ensemble"].status == RunStatus.FAILED  # one of its members cannot run


def test_a_transient_error_in_a_run_taken_with_the_delivered_one_requeues_it_with_a_new_message(
    case, monkeypatch
):
    services.segmentation_runs_create_for_case(case=case)
    runs = _runs(case)
    real = run_services._store_result
    failed = []

    def attention_disk_full_once(run, *args, **kwargs):
        if run.model_version.name == "tiny_attention_unet" and not failed:
            failed.append(run.pk)
            raise OSError(28, "No space left on device")
        return real(run, *args, **kwargs)

    announced = []
    monkeypatch.setattr(run_services, "_store_result", attention_disk_full_once)
    monkeypatch.setattr(run_services, "_announce_queued", announced.extend)
    # The delivered run was stored before the error, so the task's retry finds it done.
    assert run_segmentation_task.apply(args=[runs["tiny_unet"].pk]).get() == "skipped"
    after = _runs(case)
    assert after["tiny_unet"].status == RunStatus.DONE
    assert after["tiny_attention_unet"].status == after["ensemble"].status == RunStatus.QUEUED
    assert "No space left on device" in after["tiny_attention_unet"].error
    assert sorted(announced) == sorted([runs["tiny_attention_unet"].pk, runs["ensemble"].pk])
    # Their new messages finish them.
    monkeypatch.setattr(run_services, "_announce_queued", lambda ids: None)
    assert run_segmentation_task.apply(args=[runs["ensemble"].pk]).get() == "done"
    assert {r.status for r in _runs(case).values()} == {RunStatus.DONE}


def test_measurements_use_the_pixel_spacing_when_known():
    mask = np.zeros((10, 20), bool)
    mask[2:4, 5:10] = True
    m = services.measurements(mask, (0.5, 0.25))
    assert m == {"area_px": 10, "area_mm2": 1.25, "bbox": [5, 2, 10, 4], "centroid": [7.0, 2.5]}


def test_a_storage_error_while_saving_is_retried(case, monkeypatch):
    services.segmentation_runs_create_for_case(case=case)
    run = _runs(case)["tiny_unet"]
    real = run_services._store_result
    calls = []

    def full_disk_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(run_services, "_store_result", full_disk_once)
    assert run_segmentation_task.apply(args=[run.pk]).get() == "done"
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.attempts == 2


def test_the_ensemble_run_records_how_far_its_members_agree(case):
    services.segmentation_runs_create_for_case(case=case)
    for name in ("tiny_unet", "tiny_attention_unet", "ensemble"):
        run_segmentation_task.apply(args=[_runs(case)[name].pk])
    runs = _runs(case)
    assert runs["tiny_unet"].agreement is None and runs["tiny_unet"].agreement_flagged is None
    # From the members' masks as stored (8-bit maps can move a pixel at the threshold, hence the tolerance).
    stored_masks = [services.load_mask(runs[n]) for n in ("tiny_unet", "tiny_attention_unet")]
    assert runs["ensemble"].agreement == pytest.approx(mask_agreement(stored_masks), abs=0.01)
    assert 0.0 <= runs["ensemble"].agreement <= 1.0
    assert runs["ensemble"].agreement_flagged is None  # no level chosen for these tiny members


@pytest.mark.parametrize("flag_below, flagged", [(1.01, True), (0.0, False)])
def test_the_ensemble_run_is_flagged_below_the_validated_agreement(case, flag_below, flagged):
    ensemble = ModelVersion.objects.get(name="ensemble")
    ensemble.metadata = {**ensemble.metadata, "agreement": {"flag_below": flag_below, "chosen_on": "val"}}
    ensemble.save()
    services.segmentation_runs_create_for_case(case=case)
    run_segmentation_task.apply(args=[_runs(case)["ensemble"].pk])  # the ensemble runs its members itself
    run = _runs(case)["ensemble"]
    assert run.status == RunStatus.DONE and run.agreement is not None
    assert run.agreement_flagged is flagged


def test_a_worker_refuses_weights_other_than_the_version_records(case, models_dir):
    """A worker on another host (or a bundle copied over by hand) must not make masks under the name of
    weights it does not hold: the run fails saying so, and nothing is stored as that version's mask."""
    services.segmentation_runs_create_for_case(case=case)
    run = _runs(case)["tiny_unet"]
    path = models_dir / run.model_version.file_path
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # other bytes, same name
    run_segmentation_task.apply(args=[run.pk])
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and not run.mask_file and not run.probability_file
    assert "tiny_unet: the weights file's SHA-256 differs from the recorded one" in run.error
