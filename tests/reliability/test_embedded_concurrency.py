"""Issue #31, item 1: the embedded mode (SQLite) takes uploads sent at once, none lost to a locked database.

Against a live server (its request threads are real concurrent writers on the SQLite file database of
tumorsite.settings.test): 8 files from the upload page (the session and CSRF token the page sends) and
50 API uploads (token) fired together all answer 201 and make as many distinct cases. Every upload also
creates its segmentation run (one active model version), but the runs are not started: the in-process
worker would load TensorFlow, which makes the test slow and is not what it is about.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from django.conf import settings as django_settings
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connection
from django.test import Client
from django.test.testcases import LiveServerThread, _StaticFilesHandler
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
from cases.models import Case, Patient, Scan
from segmentation.models import ModelVersion, SegmentationRun
from segmentation.signals import runs_queued
from tests.cases.builders import png_bytes

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
        reason="the embedded mode's database (CI's production pass runs Postgres)",
    ),
]


class _BurstServer(ThreadedWSGIServer):
    # socketserver listens with a backlog of 5, so a burst of 50 connections is partly reset before a
    # request is read; gunicorn's backlog is 2048. The test is about the database, not the listen queue.
    request_queue_size = 128


class _BurstLiveServerThread(LiveServerThread):
    server_class = _BurstServer


@pytest.fixture
def server_url(transactional_db):
    """A live server of this process (its own threads and database connections) that takes a burst."""
    thread = _BurstLiveServerThread("localhost", _StaticFilesHandler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://{thread.host}:{thread.port}"
    thread.terminate()


@pytest.fixture
def no_segmentation_started(monkeypatch):
    """Each upload still creates its run row (queued); nobody is told, so the in-process worker stays idle."""
    ModelVersion.objects.create(name="stand-in", architecture="unet", file_path="absent.keras")
    monkeypatch.setattr(runs_queued, "send", lambda *args, **kwargs: [])


def _distinct_pngs(n: int) -> list[bytes]:
    """n small slices that differ (the same file twice would be refused as a duplicate)."""
    images = []
    for i in range(n):
        pixels = np.full((32, 32), 40, np.uint8)
        pixels[i // 32, i % 32] = 200
        images.append(png_bytes(pixels))
    return images


def _post_all_at_once(url: str, files: list[bytes], **request_kwargs) -> list[requests.Response]:
    start = threading.Barrier(len(files))

    def post(i: int) -> requests.Response:
        start.wait()
        return requests.post(
            url, files={"image": (f"slice-{i}.png", files[i], "image/png")}, timeout=120, **request_kwargs
        )

    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        return list(pool.map(post, range(len(files))))


def test_the_embedded_database_is_in_wal_mode_and_writers_queue():
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
    options = django_settings.DATABASES["default"]["OPTIONS"]
    assert options["transaction_mode"] == "IMMEDIATE" and options["timeout"] >= 10


def test_eight_files_sent_at_once_from_the_upload_page_all_become_cases(
    server_url, owner, no_segmentation_started
):
    browser = Client()
    browser.force_login(owner)
    csrf = "k" * 32  # the page sends its cookie's token in X-CSRFToken
    cookies = {"sessionid": browser.cookies["sessionid"].value, "csrftoken": csrf}
    headers = {"X-CSRFToken": csrf, "Accept": "application/json", "Referer": server_url + "/upload/"}

    answers = _post_all_at_once(
        server_url + "/api/cases/", _distinct_pngs(8), cookies=cookies, headers=headers
    )

    assert [a.status_code for a in answers] == [201] * 8, [
        a.text[:200] for a in answers if a.status_code != 201
    ]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 8
    assert set(Case.objects.values_list("pk", flat=True)) == ids
    assert (Scan.objects.count(), Patient.objects.count(), SegmentationRun.objects.count()) == (8, 8, 8)
    assert AuditEntry.objects.filter(event="case.uploaded").count() == 8


def test_fifty_api_uploads_sent_at_once_all_become_cases(server_url, owner, no_segmentation_started):
    token = Token.objects.create(user=owner)
    answers = _post_all_at_once(
        server_url + "/api/cases/",
        _distinct_pngs(50),
        headers={"Authorization": f"Token {token.key}"},
    )

    assert [a.status_code for a in answers] == [201] * 50, [
        a.text[:200] for a in answers if a.status_code != 201
    ]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 50 and Case.objects.count() == 50
    assert len(set(Scan.objects.values_list("file", flat=True))) == 50
    assert SegmentationRun.objects.count() == 50
