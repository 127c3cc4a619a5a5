"""Health endpoints for compose and load balancers (issue #31, item 7).

- ``/healthz/live``: the process answers. Nothing else is checked, so a restart policy acting on it never
  restarts a web process because the database or the broker is down.
- ``/healthz/ready`` (and ``/healthz``, its alias): this process can serve the site: the database answers a
  trivial query; with a broker (``CELERY_BROKER_URL``) it is reachable and each queue (the default one and
  the segmentation one) has a live worker consuming it; the media storage answers (a listing of the
  bucket, or the local folder exists); every active model version's weights are present with the SHA-256
  recorded for them. 503 when a check fails, with every check's status in the body.

No sign-in, and nothing about patients: names of checks and models, statuses, exception class names
(never their messages, which can carry host names or paths). The weights' hashes are cached per file
(size and modification time), so a probe reads a file only after it changed; TensorFlow is never imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from segmentation.models import ModelVersion
from segmentation.services.registry import weights_problem
from tumorsite.celery import app as celery_app

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0
WORKER_PING_TIMEOUT_S = 2.0
MEDIA_TIMEOUT_S = 3.0

OK, FAIL, SKIPPED = "ok", "fail", "skipped"


@dataclass
class CheckResult:
    status: str
    detail: str = ""

    def as_dict(self, ms: float) -> dict:
        body = {"status": self.status, "ms": round(ms, 1)}
        if self.detail:
            body["detail"] = self.detail
        return body


def _failure(exc: BaseException, what: str) -> CheckResult:
    logger.warning("health check: %s failed", what, exc_info=exc)
    return CheckResult(FAIL, f"{what} failed ({type(exc).__name__}); the server log has the details")


# === The checks ===


def check_database() -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _failure(exc, "SELECT 1")
    return CheckResult(OK)


def check_broker() -> CheckResult:
    if not settings.CELERY_BROKER_URL:
        return CheckResult(SKIPPED, "embedded mode: no broker, tasks run in the web process")
    try:
        with celery_app.connection_for_write(connect_timeout=BROKER_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_S)
    except Exception as exc:
        return _failure(exc, "connecting to the broker")
    return CheckResult(OK)


def check_media() -> CheckResult:
    """The media storage answers: for an object store, one listing of the media's top folder within
    MEDIA_TIMEOUT_S (a probe never waits on botocore's retries); for a local folder, that it exists or can
    be made (the first upload creates it)."""
    storage = storages["default"]
    if isinstance(storage, FileSystemStorage):
        root = Path(storage.location)  # MEDIA_ROOT unless the storage was given its own
        if root.is_dir() or root.parent.is_dir():
            return CheckResult(OK, "local folder")
        return CheckResult(FAIL, "the media folder and its parent are missing")
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(storage.listdir, "").result(timeout=MEDIA_TIMEOUT_S)
    except FutureTimeout:
        return CheckResult(FAIL, f"the media storage did not answer within {MEDIA_TIMEOUT_S:g} s")
    except Exception as exc:
        return _failure(exc, "listing the media storage")
    finally:
        pool.shutdown(wait=False)
    return CheckResult(OK, type(storage).__name__)


class _EnoughReplies(Exception):
    """Raised from the reply callback to stop waiting: every queue has a consumer, or time is up."""


def check_worker(*, broker_ok: bool) -> CheckResult:
    """Every queue (the default one and the segmentation one) is consumed by a live worker: one broadcast
    of Celery's ``inspect active_queues``, which stops as soon as each queue has been seen. Bounded: a
    queue nobody consumes makes it wait for ``WORKER_PING_TIMEOUT_S`` of silence, and it stops taking
    replies ``WORKER_PING_TIMEOUT_S`` after it started."""
    if not settings.CELERY_BROKER_URL:
        return CheckResult(SKIPPED, "embedded mode: the web process runs the tasks itself")
    if not broker_ok:
        return CheckResult(FAIL, "not asked: the broker is unreachable")
    consumers = dict.fromkeys((settings.CELERY_TASK_DEFAULT_QUEUE, settings.TUMORSITE_SEGMENTATION_QUEUE), 0)
    answered = 0
    deadline = time.monotonic() + WORKER_PING_TIMEOUT_S

    def on_reply(reply: dict) -> None:  # {worker: [{"name": queue, ...}, ...]}
        nonlocal answered
        for queues in reply.values():
            answered += 1
            for queue in queues if isinstance(queues, list) else []:
                if isinstance(queue, dict) and queue.get("name") in consumers:
                    consumers[queue["name"]] += 1
        if all(consumers.values()) or time.monotonic() > deadline:
            raise _EnoughReplies

    try:
        celery_app.control.inspect(timeout=WORKER_PING_TIMEOUT_S, callback=on_reply).active_queues()
    except _EnoughReplies:
        pass
    except Exception as exc:
        return _failure(exc, "asking the workers for their queues")
    if not answered:
        return CheckResult(FAIL, f"no worker answered within {WORKER_PING_TIMEOUT_S:g} s")
    idle = [name for name, count in consumers.items() if not count]
    if idle:
        return CheckResult(
            FAIL, f"{answered} worker(s) answered, none consumes the queue(s) {', '.join(idle)}"
        )
    return CheckResult(OK, f"{answered} worker(s) answered; every queue has a consumer")


def check_models() -> CheckResult:
    # The segmenters: without the type classifier the suggestion is the kNN vote alone (a worker warns).
    active = list(ModelVersion.objects.segmenters().filter(is_active=True))
    if not active:
        return CheckResult(FAIL, "no active model version: run manage.py sync_models")
    weights_ok = {}
    problems = []
    for version in (v for v in active if not v.is_ensemble):
        problem = weights_problem(version)
        weights_ok[version.name] = problem is None
        if problem:
            problems.append(f"{version.name}: {problem}")
    for version in (v for v in active if v.is_ensemble):
        problems += [
            f"{version.name}: member {member} is not an active model with valid weights"
            for member in version.members
            if not weights_ok.get(member)
        ]
    if problems:
        return CheckResult(FAIL, "; ".join(problems))
    return CheckResult(OK, f"{len(active)} active model version(s)")


# === The views ===


def _timed(check: Callable[[], CheckResult]) -> tuple[CheckResult, float]:
    """The check's result and its duration; a check that raises has failed (a probe never gets a 500)."""
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:
        result = _failure(exc, "the check")
    return result, (time.perf_counter() - started) * 1000.0


def readiness() -> tuple[bool, dict]:
    """(ready, the body): every check's status, and the names of those that failed."""
    database, database_ms = _timed(check_database)
    broker, broker_ms = _timed(check_broker)
    worker, worker_ms = _timed(lambda: check_worker(broker_ok=broker.status != FAIL))
    media, media_ms = _timed(check_media)
    # The models check reads the database: not attempted when it is down.
    if database.status == FAIL:
        models, models_ms = CheckResult(FAIL, "not checked: the database is unreachable"), 0.0
    else:
        models, models_ms = _timed(check_models)
    checks = {
        "database": database.as_dict(database_ms),
        "broker": broker.as_dict(broker_ms),
        "worker": worker.as_dict(worker_ms),
        "media": media.as_dict(media_ms),
        "models": models.as_dict(models_ms),
    }
    failing = [name for name, check in checks.items() if check["status"] == FAIL]
    return not failing, {"status": FAIL if failing else OK, "failing": failing, "checks": checks}


@never_cache
@require_safe
def health_live(request: HttpRequest) -> JsonResponse:
    """The process answers: nothing else is checked."""
    return JsonResponse({"status": OK})


@never_cache
@require_safe
def health_ready(request: HttpRequest) -> JsonResponse:
    """Ready to serve: 200, or 503 naming the failing checks."""
    ready, body = readiness()
    return JsonResponse(body, status=200 if ready else 503)
