"""A case's runs share one graph call: the first delivery takes every queued run of its case, makes every
active model's map in one call and stores each run; the other runs' messages find them taken."""

import threading
import time

import numpy as np
import pytest
from django.db import connection

from cases.selectors import case_pixels
from segmentation import services
from segmentation.models import RunStatus, SegmentationRun
from segmentation.services import inference as inference_services
from segmentation.services import runs as run_services
from segmentation.tasks import run_segmentation_task
from segmentation.testing import make_case, needs_postgres
from tests.media import isolate_media
from tumorsite import queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(models_dir, media_dir, clinician):
    services.model_versions_sync()
    return make_case(user=clinician, size=80)


@pytest.fixture(autouse=True)
def no_maps_from_other_tests():
    inference_services._RECENT.clear()
    yield
    inference_services._RECENT.clear()


@pytest.fixture
def graph_calls(monkeypatch):
    """The segmenters of each ``predict_proba_together`` call, by name."""
    calls = []
    real = inference_services.predict_proba_together

    def counting(segmenters, images, **kwargs):
        calls.append(sorted(s.name for s in segmenters))
        return real(segmenters, images, **kwargs)

    monkeypatch.setattr(inference_services, "predict_proba_together", counting)
    return calls


def _runs(case):
    return {
        r.model_version.name: r
        for r in SegmentationRun.objects.filter(case=case).select_related("model_version")
    }


def _deliver_in_turn(case, names) -> list[str]:
    return [run_segmentation_task.apply(args=[_runs(case)[name].pk]).get() for name in names]


def test_the_first_delivery_makes_every_run_of_its_case_from_one_graph_call(case, graph_calls):
    services.segmentation_runs_create_for_case(case=case)
    assert _deliver_in_turn(case, ("tiny_unet", "tiny_attention_unet", "ensemble")) == [
        "done",
        "skipped",  # taken and finished by the first delivery
        "skipped",
    ]
    assert graph_calls == [["tiny_attention_unet", "tiny_unet"]]
    runs = _runs(case).values()
    assert {r.status for r in runs} == {RunStatus.DONE} and {r.attempts for r in runs} == {1}


def test_a_map_made_together_is_the_one_the_model_makes_alone(case):
    services.segmentation_runs_create_for_case(case=case)
    for name in ("tiny_unet", "tiny_attention_unet"):
        run_segmentation_task.apply(args=[_runs(case)[name].pk])
    image = case_pixels(case=case)
    for name, run in _runs(case).items():
        if name == "ensemble":
            continue
        alone = services.segmenter(run.model_version).predict_proba([image])[0]
        stored = services.load_probability(run)  # 8-bit PNG: within one grey level
        np.testing.assert_allclose(stored, alone, atol=1 / 255 + 1e-6)


def test_an_ensemble_delivered_first_stores_its_members_runs_before_its_own(case, graph_calls):
    services.segmentation_runs_create_for_case(case=case)
    assert _deliver_in_turn(case, ("ensemble", "tiny_unet", "tiny_attention_unet")) == [
        "done",
        "skipped",
        "skipped",
    ]
    assert graph_calls == [["tiny_attention_unet", "tiny_unet"]]
    runs = _runs(case)
    assert runs["ensemble"].finished_at > max(
        runs[n].finished_at for n in ("tiny_unet", "tiny_attention_unet")
    )
    members = [services.load_probability(runs[n]) for n in ("tiny_unet", "tiny_attention_unet")]
    np.testing.assert_allclose(
        services.load_probability(runs["ensemble"]), np.mean(members, axis=0), atol=1.5 / 255
    )


def test_runs_taken_by_another_worker_are_left_to_it(case, graph_calls):
    services.segmentation_runs_create_for_case(case=case)
    other = _runs(case)["tiny_attention_unet"]
    assert services.segmentation_run_claim(run_id=other.pk) is not None  # a second worker has it
    assert _deliver_in_turn(case, ("tiny_unet",)) == ["done"]
    runs = _runs(case)
    assert runs["tiny_unet"].status == runs["ensemble"].status == RunStatus.DONE
    assert (
        runs["tiny_attention_unet"].status == RunStatus.RUNNING and runs["tiny_attention_unet"].attempts == 1
    )


def test_a_new_slice_is_not_answered_from_an_earlier_ones_maps(models_dir, media_dir, clinician, graph_calls):
    services.model_versions_sync()
    first, second = (
        make_case(user=clinician, size=80),
        make_case(user=clinician, size=80, seed=1, patient="P2"),
    )
    for case in (first, second):
        services.segmentation_runs_create_for_case(case=case)
        run_segmentation_task.apply(args=[_runs(case)["tiny_unet"].pk])
    assert len(graph_calls) == 2


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_handed_runs_of_one_case_at_once_make_its_maps_once(
    models_dir, settings, tmp_path, clinician, graph_calls, monkeypatch
):
    isolate_media(settings, tmp_path)  # services tests share the media otherwise
    monkeypatch.setattr(queue, "enqueue", lambda task, *args, **kwargs: None)  # only the two below deliver
    real_claim = run_services.segmentation_run_claim
    first_has_claimed = threading.Event()

    claims = []

    def claim_then_pause(**kwargs):  # the first worker has its run and has not yet taken the others
        claims.append(threading.current_thread().name)
        run = real_claim(**kwargs)
        if threading.current_thread().name == "first":
            first_has_claimed.set()
            time.sleep(1.0)
        return run

    services.model_versions_sync()
    case = make_case(user=clinician, size=80, patient="RACE-1")
    services.segmentation_runs_create_for_case(case=case)
    runs = _runs(case)
    monkeypatch.setattr(run_services, "segmentation_run_claim", claim_then_pause)
    outcome = {}

    def deliver(name: str) -> None:  # as two solo workers, each with its own connection
        try:
            if threading.current_thread().name == "second":
                assert first_has_claimed.wait(20)
            outcome[name] = run_segmentation_task.apply(args=[runs[name].pk]).get()
        except Exception as exc:
            outcome[name] = repr(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=deliver, args=(name,), name=which)
        for name, which in (("tiny_unet", "first"), ("tiny_attention_unet", "second"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # The second worker waited for the first's claim to commit, and found its run taken with the others.
    assert outcome == {"tiny_unet": "done", "tiny_attention_unet": "skipped"}
    # Without the lock each would claim its own run, then wait for the other's in a deadlock that PostgreSQL
    # breaks by failing one transaction, which the task retries: the second would claim twice.
    assert claims.count("second") == 1
    assert graph_calls == [["tiny_attention_unet", "tiny_unet"]]
    after = _runs(case).values()
    assert {r.status for r in after} == {RunStatus.DONE} and {r.attempts for r in after} == {1}
