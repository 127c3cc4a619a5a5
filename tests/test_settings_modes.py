"""The embedded and production modes, chosen by the environment alone, and loud failures on bad values.

Settings are read once per process, so each mode is checked in a fresh Python process.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from celery import shared_task

from cases.tasks import scan_checksum_verify_task
from tests.conftest import CaseFactory
from tests.media import OBJECT_STORE_VARIABLES
from tumorsite.env import EnvError, envbool, envfloat, envint, parse_database_url
from tumorsite.queue import enqueue, start_periodic, stop_periodic, wait_idle

REPO = Path(__file__).resolve().parent.parent
PROBE = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({"engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST"),
    "port": db.get("PORT"), "user": db.get("USER"), "test_name": db.get("TEST", {}).get("NAME"),
    "broker": settings.CELERY_BROKER_URL, "backend": settings.CELERY_RESULT_BACKEND,
    "media": str(settings.MEDIA_ROOT), "debug": settings.DEBUG}))
"""
MODE_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SECRET_KEY",
    "DEBUG",
    "TUMORSITE_VAR_DIR",
    "ALLOWED_HOSTS",
    # CI's production pass keeps its media in an object store: the probes start from no store at all.
    *OBJECT_STORE_VARIABLES,
)


def _run(args, settings_module, tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in MODE_VARIABLES and k != "DJANGO_SETTINGS_MODULE"}
    clean.update(DJANGO_SETTINGS_MODULE=settings_module, TUMORSITE_VAR_DIR=str(tmp_path / "var"), **env)
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120
    )


def _probe(tmp_path, settings_module="tumorsite.settings.base", **env) -> dict:
    result = _run(["-c", PROBE], settings_module, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_no_environment_means_embedded_sqlite_and_in_process_tasks(tmp_path):
    probe = _probe(tmp_path)
    assert probe["engine"] == "django.db.backends.sqlite3"
    assert probe["name"] == str(tmp_path / "var" / "db.sqlite3")
    assert probe["media"] == str(tmp_path / "var" / "media")
    assert probe["broker"] == "" and probe["backend"] is None


def test_service_urls_mean_postgres_and_a_redis_broker(tmp_path):
    probe = _probe(
        tmp_path,
        "tumorsite.settings.test",
        DATABASE_URL="postgres://ts:s%40cret@db.internal:5433/tumorsite",
        CELERY_BROKER_URL="redis://cache:6379/0",
    )
    assert probe["engine"] == "django.db.backends.postgresql"
    assert (probe["name"], probe["host"], probe["port"], probe["user"]) == (
        "tumorsite",
        "db.internal",
        "5433",
        "ts",
    )
    assert probe["test_name"] == "test_tumorsite"  # what .ci/run points the Celery worker at
    assert probe["broker"] == probe["backend"] == "redis://cache:6379/0"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("DEBUG", "perhaps", "DEBUG='perhaps' is not a boolean"),
        ("DATABASE_URL", "mysql://u:p@h/db", "unsupported scheme 'mysql'"),
        ("DATABASE_URL", "postgres://u:p@h:port/db", "port that is not a number"),
        ("TUMORSITE_MAX_UPLOAD_MB", "fifty", "is not an integer"),
        ("TUMORSITE_TYPE_CLASSIFIER_WEIGHT", "half", "is not a number"),
        ("TUMORSITE_TYPE_CLASSIFIER_WEIGHT", "1.5", "use a number in [0, 1]"),
        ("TUMORSITE_SEGMENTATION_QUEUE", "celery", "give the segmentation runs a queue of their own"),
        ("TUMORSITE_SEGMENTATION_QUEUE", " ", "cannot be empty"),
        ("TUMORSITE_S3_ADDRESSING_STYLE", "dns", "use path, virtual or auto"),
    ],
)
def test_a_bad_value_stops_start_up_with_its_name(tmp_path, variable, value, words):
    result = _run(["-c", PROBE], "tumorsite.settings.base", tmp_path, **{variable: value})
    assert result.returncode != 0
    assert words in result.stderr and "EnvError" in result.stderr


STORAGE_PROBE = """
import json, django
from django.conf import settings
django.setup()
from django.core.files.storage import storages
media = storages["default"]
config = getattr(media, "client_config", None)
print(json.dumps({"backend": settings.STORAGES["default"]["BACKEND"], "options": {
    k: getattr(media, k, None) for k in ("bucket_name", "endpoint_url", "region_name", "location",
    "file_overwrite", "default_acl", "querystring_auth")}, "client": config and {
    "addressing_style": config.s3["addressing_style"], "signature_version": config.signature_version,
    "connect_timeout": config.connect_timeout, "retries": config.retries}}))
"""
PRODUCTION_SECRETS = {"SECRET_KEY": "s" * 50, "TUMORSITE_PSEUDONYM_KEY": "k" * 40}


@pytest.mark.parametrize("module", ["tumorsite.settings.base", "tumorsite.settings.production"])
def test_a_bucket_puts_the_media_in_an_s3_object_store_in_either_mode(tmp_path, module):
    result = _run(
        ["-c", STORAGE_PROBE],
        module,
        tmp_path,
        TUMORSITE_S3_BUCKET="scans",
        TUMORSITE_S3_ENDPOINT_URL="http://seaweedfs:8333",
        TUMORSITE_S3_PREFIX="/tumorsite/media/",
        TUMORSITE_S3_REGION="",  # compose passes an unset variable as empty: the default then
        **PRODUCTION_SECRETS,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe == {
        "backend": "storages.backends.s3.S3Storage",
        "options": {
            "bucket_name": "scans",
            "endpoint_url": "http://seaweedfs:8333",
            "region_name": "us-east-1",
            "location": "tumorsite/media",
            "file_overwrite": False,  # a stored name is never replaced
            "default_acl": None,  # no public-read: the bucket's own (private) policy
            "querystring_auth": True,
        },
        # Bounded, so a store that stops answering fails a request (or a readiness probe) in seconds.
        "client": {
            "addressing_style": "path",
            "signature_version": "s3v4",
            "connect_timeout": 5,
            "retries": {"max_attempts": 3, "mode": "standard"},
        },
    }


def test_without_a_bucket_production_keeps_the_media_folder(tmp_path):
    result = _run(["-c", STORAGE_PROBE], "tumorsite.settings.production", tmp_path, **PRODUCTION_SECRETS)
    assert result.returncode == 0, result.stderr
    backend = json.loads(result.stdout.strip().splitlines()[-1])["backend"]
    assert backend == "django.core.files.storage.FileSystemStorage"


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _run(["manage.py", "check"], "tumorsite.settings.production", tmp_path)
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


def test_production_passes_the_deployment_checklist(tmp_path):
    secret = "x7Kq!2vR9mZ$pL4wT8nB3cY6hJ1dF5gS0aE-uI_oP+lM=zN&rW"
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        "tumorsite.settings.production",
        tmp_path,
        SECRET_KEY=secret,
        TUMORSITE_PSEUDONYM_KEY=secret[::-1],
        ALLOWED_HOSTS="tumorsite.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/db.sqlite3", {"ENGINE": "django.db.backends.sqlite3", "NAME": "var/db.sqlite3"}),
        ("sqlite:////abs/db.sqlite3", {"ENGINE": "django.db.backends.sqlite3", "NAME": "/abs/db.sqlite3"}),
        (
            "postgresql://me:p%2Fw@localhost/ts?sslmode=require",
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "ts",
                "USER": "me",
                "PASSWORD": "p/w",
                "HOST": "localhost",
                "PORT": "",
                "OPTIONS": {"sslmode": "require"},
            },
        ),
    ],
)
def test_database_urls_are_parsed(url, expected):
    assert parse_database_url(url) == expected


@pytest.mark.parametrize("url", ["sqlite://", "postgres://u:p@h:5432/", "redis://h/0"])
def test_unusable_database_urls_are_refused(url):
    with pytest.raises(EnvError):
        parse_database_url(url)


def test_typed_helpers_read_defaults_and_values():
    assert envbool("X", True, environ={}) is True
    assert envbool("X", environ={"X": "off"}) is False
    assert envint("N", 3, environ={"N": " 12 "}) == 12
    with pytest.raises(EnvError, match=r"N='1\.5' is not an integer"):
        envint("N", 3, environ={"N": "1.5"})
    assert envfloat("W", 0.5, environ={}) == 0.5 and envfloat("W", 0.5, environ={"W": " 0.25 "}) == 0.25
    with pytest.raises(EnvError, match="W='x' is not a number"):
        envfloat("W", 0.5, environ={"W": "x"})


# === The in-process queue of the embedded mode ===

release = threading.Event()
seen = []


@shared_task
def _wait_then_record_task(value):
    release.wait(timeout=10)
    seen.append((value, threading.current_thread().name))
    return value * 2


def test_embedded_enqueue_returns_at_once_and_runs_jobs_one_at_a_time(settings):
    settings.CELERY_BROKER_URL = ""
    release.clear()
    seen.clear()
    futures = [enqueue(_wait_then_record_task, n) for n in (1, 2, 3)]
    assert seen == []  # the caller was not kept waiting
    release.set()
    assert wait_idle(timeout=20)
    assert [f.result().get() for f in futures] == [2, 4, 6]
    assert [value for value, _ in seen] == [1, 2, 3]
    assert {thread for _, thread in seen} == {"tumorsite-tasks_0"}


ticks = []


@shared_task
def _record_a_tick_task():
    ticks.append(threading.current_thread().name)


def test_the_embedded_beat_queues_its_schedule_on_the_in_process_queue_until_stopped(settings):
    settings.CELERY_BROKER_URL = ""
    settings.CELERY_BEAT_SCHEDULE = {"tick": {"task": _record_a_tick_task.name, "schedule": 0.1}}
    ticks.clear()
    settings.TUMORSITE_EMBEDDED_BEAT = False  # the tests' settings: no beat
    start_periodic()
    assert not any(t.name == "tumorsite-beat" for t in threading.enumerate())
    settings.TUMORSITE_EMBEDDED_BEAT = True
    start_periodic()
    try:
        for _ in range(100):  # a tick every 0.1 s: three within 10 s however busy the machine is
            if len(ticks) >= 3:
                break
            time.sleep(0.1)
    finally:
        stop_periodic()
    assert not any(t.name == "tumorsite-beat" for t in threading.enumerate())
    assert wait_idle(timeout=20)
    assert len(ticks) >= 3 and set(ticks) == {"tumorsite-tasks_0"}  # run by the in-process queue
    stopped_at = len(ticks)
    time.sleep(0.5)
    assert len(ticks) == stopped_at  # stopped: nothing queued since


@pytest.mark.django_db(transaction=True)
def test_embedded_tasks_see_the_database(settings):
    settings.CELERY_BROKER_URL = ""
    case = CaseFactory()
    future = enqueue(scan_checksum_verify_task, case.scan_id)
    assert wait_idle(timeout=20)
    result = future.result().get()
    assert result["scan_id"] == case.scan_id and result["ok"] is False  # the factory's sha256 is made up


@pytest.mark.django_db
def test_healthz_answers_without_signing_in(client):
    response = client.get("/healthz/live")  # /healthz is readiness: tests/health
    assert response.status_code == 200 and response.json() == {"status": "ok"}
