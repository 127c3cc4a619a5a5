"""Queues (#31, item 6): a segmentation run goes to the segmentation queue, for the GPU workers; every other
task (describing a case, the runs sweep, checksums) to the default queue, for a CPU worker. Celery's own
router decides, so no broker is needed for the routes; the sends go through Celery's in-memory transport."""

from __future__ import annotations

import threading

import kombu.pools
import pytest
from celery.signals import before_task_publish

from cases.tasks import scan_checksum_verify_task
from recommender.tasks import case_analyse_task, descriptions_sweep_task
from segmentation import tasks
from segmentation.tasks import run_segmentation_task, runs_send, runs_sweep_task
from tumorsite import queue
from tumorsite.celery import app as celery_app

SEGMENTATION = "segmentation"
DEFAULT = "celery"


def _queue_of(task) -> str:
    return celery_app.amqp.router.route({}, task.name)["queue"].name


def test_the_queue_names_come_from_the_settings(settings):
    assert settings.TUMORSITE_SEGMENTATION_QUEUE == SEGMENTATION
    assert celery_app.conf.task_default_queue == settings.CELERY_TASK_DEFAULT_QUEUE == DEFAULT


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (run_segmentation_task, SEGMENTATION),
        # The sweep reads the database and sends messages: it must run while the segmentation workers are
        # busy or dead, so it goes to the CPU worker's queue.
        (runs_sweep_task, DEFAULT),
        (case_analyse_task, DEFAULT),
        # Like the runs' sweep: no model, and it must run whatever the segmentation workers do.
        (descriptions_sweep_task, DEFAULT),
        (scan_checksum_verify_task, DEFAULT),
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_each_task_routes_to_its_queue(task, expected):
    assert _queue_of(task) == expected


def test_every_task_of_the_project_has_an_intended_queue():
    """A new task lands on the default queue unless routed: this lists them, so adding one is a decision."""
    ours = sorted(name for name in celery_app.tasks if not name.startswith(("celery.", "tests.")))
    routed = (
        run_segmentation_task,
        runs_sweep_task,
        case_analyse_task,
        descriptions_sweep_task,
        scan_checksum_verify_task,
    )
    assert ours == sorted(task.name for task in routed)


def test_a_worker_started_without_q_consumes_both_queues():
    """One worker on a CPU-only host does everything: `celery worker` without -Q takes both queues."""
    assert set(celery_app.amqp.queues.consume_from) == {DEFAULT, SEGMENTATION}


@pytest.fixture
def memory_broker(settings, monkeypatch):
    """This process sends to Celery's in-memory transport (no Redis), and records what it publishes."""

    def reset_pools():
        kombu.pools.reset()
        celery_app._after_fork()

    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    settings.CELERY_BROKER_URL = "memory://"
    reset_pools()
    published = []

    test_thread = threading.get_ident()

    # Celery publishes to a direct queue through the anonymous exchange: the routing key is the queue.
    # Only this thread's sends: a job another test left on the in-process queue may send meanwhile.
    def record(sender=None, routing_key=None, body=None, **kwargs):
        if threading.get_ident() == test_thread:
            published.append((sender, routing_key, tuple(body[0])))

    before_task_publish.connect(record, weak=False)
    yield published
    before_task_publish.disconnect(record)
    with celery_app.connection_for_write() as conn:
        for name in (DEFAULT, SEGMENTATION):
            conn.default_channel.queue_purge(name)
    monkeypatch.undo()
    reset_pools()


def test_a_run_sent_again_by_the_sweep_waits_on_the_segmentation_queue(memory_broker):
    assert runs_send([101, 102]) == 2
    assert memory_broker == [
        (run_segmentation_task.name, SEGMENTATION, (101,)),
        (run_segmentation_task.name, SEGMENTATION, (102,)),
    ]
    assert (queue.waiting(SEGMENTATION), queue.waiting(DEFAULT)) == (2, 0)


def test_a_case_description_waits_on_the_default_queue(memory_broker):
    queue.enqueue(case_analyse_task, 7)
    assert memory_broker == [(case_analyse_task.name, DEFAULT, (7,))]
    assert (queue.waiting(SEGMENTATION), queue.waiting(DEFAULT)) == (0, 1)


@pytest.mark.django_db
def test_the_sweep_counts_the_messages_waiting_on_the_segmentation_queue(monkeypatch):
    asked = []
    monkeypatch.setattr(tasks.queue, "waiting", lambda queue_name: asked.append(queue_name) or 0)
    runs_sweep_task()
    assert asked == [SEGMENTATION]
