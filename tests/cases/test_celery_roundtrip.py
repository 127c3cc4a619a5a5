"""Production mode: a task really travels through Redis to a Celery worker, which reads the same database.

.ci/run starts the worker with DATABASE_URL pointing at the test database pytest creates
(tumorsite.settings.test fixes its name), so rows committed here are visible there.
"""

import os

import pytest
from celery.result import AsyncResult

from cases.services import case_create
from cases.tasks import scan_checksum_verify_task
from tests.cases.builders import png_bytes, synthetic_slice
from tumorsite.queue import enqueue

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(
        not os.environ.get("CELERY_BROKER_URL"), reason="CELERY_BROKER_URL is not set (embedded mode)"
    ),
    pytest.mark.django_db(transaction=True),
]


def test_a_task_goes_through_redis_to_the_worker_and_back(owner):
    case = case_create(image_file=png_bytes(synthetic_slice()[0]), filename="roundtrip.png", user=owner)
    result = enqueue(scan_checksum_verify_task, case.scan_id)
    assert isinstance(result, AsyncResult)
    # The worker found the row in the shared database and the file in the shared media folder.
    assert result.get(timeout=60) == {"scan_id": case.scan_id, "sha256": case.scan.sha256, "ok": True}


def test_a_missing_row_is_a_quiet_no_op_on_the_worker():
    assert enqueue(scan_checksum_verify_task, 987654321).get(timeout=60) is None
