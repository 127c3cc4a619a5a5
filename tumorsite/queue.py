"""Run a Celery task on whatever queue this mode has.

Production (``CELERY_BROKER_URL`` set): ``task.delay()`` to the real workers.
Embedded mode: the same task body runs through ``task.apply()`` on one process-wide background thread,
so an upload never waits for a segmentation and TensorFlow runs one job at a time; the periodic tasks
(``CELERY_BEAT_SCHEDULE``, the beat's job in production) run on that thread too, from the web server's
start (``tumorsite.wsgi``) or the first job queued (``manage.py runs_sweep`` sweeps at once).

Sending is bounded (``CELERY_BROKER_CONNECTION_TIMEOUT``, ``CELERY_TASK_PUBLISH_RETRY_POLICY``): with the
broker down ``enqueue`` raises within seconds, and the caller decides what waits for the broker's return.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pending: set[Future] = set()
_periodic: threading.Thread | None = None
_stop_periodic = threading.Event()


def enqueue(task: Any, *args: Any, **kwargs: Any) -> Any:
    """Queue ``task(*args, **kwargs)``: an AsyncResult with a broker, else a Future of the EagerResult."""
    if settings.CELERY_BROKER_URL:
        return task.delay(*args, **kwargs)
    future = _get_executor().submit(_run_in_process, task, args, kwargs)
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)
    return future


def enqueue_each(task: Any, ids: list[int], *, what: str) -> int:
    """``enqueue(task, id)`` for each id in order, stopping at the first that fails; the number sent.
    Never raises: what could not be sent waits in the database for its sweep (``what`` names it in the
    log, e.g. "segmentation run(s)")."""
    sent = 0
    for item in ids:
        try:
            enqueue(task, item)
        except Exception as exc:  # any broker error
            logger.warning(
                "could not queue %s %s (%s: %s); the sweep sends them later",
                what,
                ids[sent:],
                type(exc).__name__,
                exc,
            )
            break
        sent += 1
    return sent


def waiting(queue_name: str | None = None) -> int | None:
    """How many messages wait in ``queue_name`` (default: Celery's default queue), not yet taken by a
    worker; None if the broker cannot be reached. Embedded mode: the jobs queued or running on the
    background thread, whatever the queue (there is one)."""
    if not settings.CELERY_BROKER_URL:
        with _lock:
            # A job asking from the background thread is not waiting: it is the one running.
            running_here = threading.current_thread().name.startswith("tumorsite-tasks")
            return max(0, len(_pending) - running_here)
    from tumorsite.celery import app  # noqa: PLC0415 (only production mode needs the Celery app)

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT)
            name = queue_name or app.conf.task_default_queue
            declared = conn.default_channel.queue_declare(queue=name, passive=True)
            return declared.message_count
    except Exception as exc:  # unreachable, or the queue does not exist yet
        if type(exc).__name__ in ("ChannelError", "NotFound"):
            return 0
        logger.warning("the broker cannot be reached (%s: %s)", type(exc).__name__, exc)
        return None


def wait_idle(timeout: float = 30.0) -> bool:
    """Block until the in-process queue is empty (tasks queued by tasks included). False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with _lock:
            pending = list(_pending)
        if not pending:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for future in pending:
            # A failing task is logged by _run_in_process; waiting is all we do here.
            with contextlib.suppress(Exception):
                future.result(timeout=max(remaining, 0))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tumorsite-tasks")
            _start_periodic()
        return _executor


def start_periodic() -> None:
    """Start the embedded beat now (the web server calls this as it starts, so that runs left by a previous
    process are swept without waiting for a new job); nothing with a broker, where workers run the beat."""
    if settings.CELERY_BROKER_URL:
        return
    with _lock:
        _start_periodic()


def stop_periodic(timeout: float = 5.0) -> None:
    """Stop the embedded beat and wait for its thread; the next job or ``start_periodic`` starts it again."""
    global _periodic
    with _lock:
        thread, _periodic = _periodic, None
    if thread is None:
        return
    _stop_periodic.set()
    thread.join(timeout)


def _start_periodic() -> None:
    """The embedded beat: a daemon thread that queues each ``CELERY_BEAT_SCHEDULE`` entry on its
    schedule (seconds), unless ``TUMORSITE_EMBEDDED_BEAT`` is off (the tests' settings). Call with ``_lock``
    held."""
    global _periodic
    entries = [
        (entry["task"], float(entry["schedule"]))
        for entry in getattr(settings, "CELERY_BEAT_SCHEDULE", {}).values()
        if float(entry["schedule"]) > 0
    ]
    if not entries or _periodic is not None or not settings.TUMORSITE_EMBEDDED_BEAT:
        return
    _stop_periodic.clear()
    _periodic = threading.Thread(target=_beat, args=(entries,), name="tumorsite-beat", daemon=True)
    _periodic.start()


def _beat(entries: list[tuple[str, float]]) -> None:
    from tumorsite.celery import app  # noqa: PLC0415 (tasks are looked up by name, once apps are ready)

    # The first tick one period after the first job, as the beat does: not in the middle of start-up.
    next_run = {name: time.monotonic() + every for name, every in entries}
    while not _stop_periodic.is_set():
        now = time.monotonic()
        for name, every in entries:
            if now >= next_run[name]:
                next_run[name] = now + every
                with contextlib.suppress(Exception):
                    enqueue(app.tasks[name])
        _stop_periodic.wait(max(0.05, min(next_run.values()) - time.monotonic()))


def _forget(future: Future) -> None:
    with _lock:
        _pending.discard(future)


def _run_in_process(task: Any, args: tuple, kwargs: dict) -> Any:
    try:
        result = task.apply(args=args, kwargs=kwargs)
        if result.failed():
            logger.error("task %s%r failed in-process:\n%s", task.name, args, result.traceback)
        return result
    finally:
        # This thread lives for the whole process: don't leave its connections open between jobs.
        connections.close_all()
