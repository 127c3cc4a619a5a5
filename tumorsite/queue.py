"""Run a Celery task on whatever queue this mode has.

Production (``CELERY_BROKER_URL`` set): ``task.delay()`` to the real workers.
Embedded mode: the same task body runs through ``task.apply()`` on one process-wide background thread,
so an upload never waits for a segmentation and TensorFlow runs one job at a time.
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


def enqueue(task: Any, *args: Any, **kwargs: Any) -> Any:
    """Queue ``task(*args, **kwargs)``: an AsyncResult with a broker, else a Future of the EagerResult."""
    if settings.CELERY_BROKER_URL:
        return task.delay(*args, **kwargs)
    future = _get_executor().submit(_run_in_process, task, args, kwargs)
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)
    return future


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
        return _executor


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
