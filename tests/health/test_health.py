"""/healthz/live, /healthz/ready and /healthz (issue #31, item 7): liveness checks nothing; readiness checks
the database, the broker, a worker and the active models' weights, and answers 503 naming what failed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
from django.db import OperationalError
from django.test import Client
from kombu.exceptions import OperationalError as BrokerError

from clinic import health
from segmentation.models import ModelVersion
from segmentation.services import registry
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db

PRODUCTION_BROKER = "redis://broker.internal:6379/0"


@pytest.fixture
def weights(settings, tmp_path):
    """Two active models whose weights match their records, and an ensemble of them."""
    settings.TUMORSITE_MODELS_DIR = tmp_path / "models"
    settings.TUMORSITE_MODELS_DIR.mkdir()
    for name in ("tiny_unet", "tiny_attention_unet"):
        data = f"weights of {name}".encode()
        (settings.TUMORSITE_MODELS_DIR / f"{name}.keras").write_bytes(data)
        _version(
            name=name,
            architecture="unet",
            file_path=f"{name}.keras",
            file_sha256=hashlib.sha256(data).hexdigest(),
        )
    _version(
        name="ensemble",
        architecture="ensemble",
        is_ensemble=True,
        metadata={"members": ["tiny_unet", "tiny_attention_unet"]},
    )
    registry._hashes.clear()
    return settings.TUMORSITE_MODELS_DIR


def _version(**fields) -> ModelVersion:
    # An active version serves the slot it is named after, where the model has slots (model lifecycle).
    if any(f.name == "slot" for f in ModelVersion._meta.get_fields()):
        fields.setdefault("slot", fields["name"])
    return ModelVersion.objects.create(**fields)


class _Broker:
    """A broker connection: ``reachable`` or refusing."""

    def __init__(self, reachable: bool):
        self.reachable = reachable

    def __call__(self, **kwargs):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def ensure_connection(self, **kwargs):
        if not self.reachable:
            raise BrokerError("Error 111 connecting to broker.internal:6379. Connection refused.")


class _Inspect:
    """Celery's ``control.inspect``: each worker's ``active_queues`` reply goes to the callback as it
    arrives (an exception the callback raises stops the collection, as in kombu's), or ``error`` is
    raised."""

    def __init__(self, *replies: dict, error: Exception | None = None):
        self.replies = replies
        self.error = error
        self.asked: dict = {}
        self.delivered = 0

    def __call__(self, **kwargs):
        self.asked = kwargs
        return self

    def active_queues(self):
        if self.error:
            raise self.error
        for reply in self.replies:
            self.delivered += 1
            self.asked["callback"](reply)
        return {worker: queues for reply in self.replies for worker, queues in reply.items()}


def _consumes(worker: str, *queues: str) -> dict:
    return {worker: [{"name": name, "exchange": {"name": name}} for name in queues]}


@pytest.fixture
def production(settings, monkeypatch):
    """A broker configured and reachable, and one worker consuming both queues (each test may break one)."""
    settings.CELERY_BROKER_URL = PRODUCTION_BROKER
    monkeypatch.setattr(health.celery_app, "connection_for_write", _Broker(reachable=True))
    monkeypatch.setattr(
        health.celery_app.control, "inspect", _Inspect(_consumes("celery@worker1", "celery", "segmentation"))
    )
    return monkeypatch


@pytest.fixture(autouse=True)
def _embedded_unless_told(settings, tmp_path):
    """The embedded mode (no broker, media in a local folder), even in CI's production pass (which sets a
    broker and an object store); the ``production`` fixture sets a broker, ``_media_storage`` a bucket."""
    settings.CELERY_BROKER_URL = ""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    settings.MEDIA_ROOT = tmp_path / "media"


def _ready(path: str = "/healthz/ready"):
    response = Client().get(path)
    return response.status_code, response.json()


# === Liveness ===


def test_live_answers_without_touching_anything(weights, django_assert_num_queries, monkeypatch):
    monkeypatch.setattr(health, "readiness", lambda: pytest.fail("liveness ran the readiness checks"))
    with django_assert_num_queries(0):
        response = Client().get("/healthz/live")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_live_stays_up_when_the_database_is_down(monkeypatch):
    monkeypatch.setattr(health.connection, "cursor", _database_down)
    assert Client().get("/healthz/live").status_code == 200


# === Readiness: all well ===


def test_ready_in_the_embedded_mode(weights):
    status, body = _ready()
    assert status == 200 and body["status"] == "ok" and body["failing"] == []
    checks = body["checks"]
    assert {name: check["status"] for name, check in checks.items()} == {
        "database": "ok",
        "broker": "skipped",
        "worker": "skipped",
        "media": "ok",
        "models": "ok",
    }
    assert checks["models"]["detail"] == "3 active model version(s)"


def test_ready_in_production(weights, production):
    status, body = _ready()
    assert status == 200 and {check["status"] for check in body["checks"].values()} == {"ok"}


def test_healthz_is_readiness(weights, production):
    status, body = _ready("/healthz")
    assert status == 200 and set(body["checks"]) == {"database", "broker", "worker", "media", "models"}
    production.setattr(health.celery_app.control, "inspect", _Inspect())
    status, body = _ready("/healthz")
    assert status == 503 and body["failing"] == ["worker"]


def test_no_sign_in_and_reads_only(weights):
    client = Client()
    assert client.get("/healthz/ready").status_code == 200
    assert client.head("/healthz/ready").status_code == 200
    assert client.post("/healthz/ready").status_code == 405
    assert client.post("/healthz/live").status_code == 405


# === Readiness: each failure is a 503 naming the check ===


def _database_down(*args, **kwargs):
    raise OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')


def test_database_down(weights, monkeypatch):
    monkeypatch.setattr(health.connection, "cursor", _database_down)
    status, body = _ready()
    assert status == 503 and body["status"] == "fail"
    assert body["failing"] == ["database", "models"]  # the models are not checked without the database
    assert "OperationalError" in body["checks"]["database"]["detail"]
    assert "10.0.0.5" not in json.dumps(body)  # no host names nor messages to anonymous callers


def test_broker_unreachable(weights, production):
    production.setattr(health.celery_app, "connection_for_write", _Broker(reachable=False))
    status, body = _ready()
    assert status == 503 and body["failing"] == ["broker", "worker"]
    assert body["checks"]["worker"]["detail"] == "not asked: the broker is unreachable"
    assert "broker.internal" not in json.dumps(body)


def test_no_worker_answers(weights, production):
    inspect = _Inspect()
    production.setattr(health.celery_app.control, "inspect", inspect)
    status, body = _ready()
    assert status == 503 and body["failing"] == ["worker"]
    assert body["checks"]["worker"]["detail"] == "no worker answered within 2 s"
    assert inspect.asked["timeout"] == health.WORKER_PING_TIMEOUT_S


def test_a_queue_that_no_worker_consumes_fails_naming_it(weights, production):
    """A CPU worker alone (-Q celery): the segmentation runs would wait for good."""
    production.setattr(health.celery_app.control, "inspect", _Inspect(_consumes("celery@cpu", "celery")))
    status, body = _ready()
    assert status == 503 and body["failing"] == ["worker"]
    detail = body["checks"]["worker"]["detail"]
    assert detail == "1 worker(s) answered, none consumes the queue(s) segmentation"


def test_a_gpu_and_a_cpu_worker_serve_every_queue_and_the_check_stops_at_the_first_complete_answer(
    weights, production
):
    inspect = _Inspect(
        _consumes("celery@gpu", "segmentation"),
        _consumes("celery@cpu", "celery"),
        _consumes("celery@another", "celery", "segmentation"),
    )
    production.setattr(health.celery_app.control, "inspect", inspect)
    status, body = _ready()
    assert status == 200 and body["checks"]["worker"]["status"] == "ok"
    assert body["checks"]["worker"]["detail"] == "2 worker(s) answered; every queue has a consumer"
    assert inspect.delivered == 2  # no wait for the third


def test_asking_the_workers_fails(weights, production):
    production.setattr(
        health.celery_app.control, "inspect", _Inspect(error=BrokerError("lost the connection to 10.0.0.7"))
    )
    status, body = _ready()
    assert status == 503 and body["failing"] == ["worker"]
    assert "10.0.0.7" not in json.dumps(body)


def test_missing_weights(weights):
    (weights / "tiny_unet.keras").unlink()
    status, body = _ready()
    assert status == 503 and body["failing"] == ["models"]
    detail = body["checks"]["models"]["detail"]
    assert "tiny_unet: the weights file is missing" in detail
    assert "ensemble: member tiny_unet is not an active model with valid weights" in detail
    assert str(weights) not in detail


def test_weights_that_changed(weights):
    (weights / "tiny_attention_unet.keras").write_bytes(b"other weights, another size")
    status, body = _ready()
    assert status == 503 and body["failing"] == ["models"]
    assert "tiny_attention_unet: the weights file's SHA-256 differs" in body["checks"]["models"]["detail"]


def test_no_active_model(weights):
    ModelVersion.objects.update(is_active=False)
    status, body = _ready()
    assert status == 503 and body["failing"] == ["models"]
    assert "no active model version" in body["checks"]["models"]["detail"]


def test_an_ensemble_member_that_is_not_active(weights):
    ModelVersion.objects.filter(name="tiny_unet").update(is_active=False)
    status, body = _ready()
    assert status == 503 and body["failing"] == ["models"]
    assert "member tiny_unet is not an active model" in body["checks"]["models"]["detail"]


def test_the_hash_is_computed_again_only_when_the_file_changes(weights):
    path = weights / "tiny_unet.keras"
    assert _ready()[0] == 200
    stat = path.stat()
    path.write_bytes(b"X" * stat.st_size)  # same size; the old modification time put back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _ready()[0] == 200  # cached: the file was not read again
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    status, body = _ready()
    assert (
        status == 503
        and "tiny_unet: the weights file's SHA-256 differs" in body["checks"]["models"]["detail"]
    )


def test_readiness_imports_no_tensorflow():
    """The web process answers a probe without loading TensorFlow (a fresh interpreter: this one may have)."""
    code = (
        "import sys, django; django.setup(); from clinic.health import readiness; readiness(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tumorsite.settings.test"}
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


# === The media storage ===


class _Bucket:
    """An object store's storage: answers a listing, fails it, or hangs."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour

    def listdir(self, path):
        if self.behaviour == "hangs":
            time.sleep(health.MEDIA_TIMEOUT_S + 2)
        if self.behaviour == "refuses":
            raise OSError("Could not connect to the endpoint URL: http://10.0.0.7:8333/scans")
        return [], []


def _media_storage(monkeypatch, storage) -> None:
    monkeypatch.setattr(health, "storages", {"default": storage})


def test_an_object_store_that_answers_is_ready(weights, monkeypatch):
    _media_storage(monkeypatch, _Bucket("answers"))
    status, body = _ready()
    assert status == 200 and body["checks"]["media"] == {**body["checks"]["media"], "status": "ok"}
    assert body["checks"]["media"]["detail"] == "_Bucket"


def test_an_object_store_that_refuses_or_hangs_fails_within_the_bound(weights, monkeypatch):
    _media_storage(monkeypatch, _Bucket("refuses"))
    status, body = _ready()
    assert status == 503 and body["failing"] == ["media"]
    assert "OSError" in body["checks"]["media"]["detail"] and "10.0.0.7" not in json.dumps(body)

    _media_storage(monkeypatch, _Bucket("hangs"))
    status, body = _ready()
    assert status == 503 and body["failing"] == ["media"]
    assert (
        body["checks"]["media"]["detail"]
        == f"the media storage did not answer within {health.MEDIA_TIMEOUT_S:g} s"
    )
    assert body["checks"]["media"]["ms"] < (health.MEDIA_TIMEOUT_S + 1.5) * 1000  # not the whole hang


def test_a_local_media_folder_whose_parent_is_gone_fails(weights, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "gone" / "media"
    status, body = _ready()
    assert status == 503 and body["failing"] == ["media"]
    settings.MEDIA_ROOT = tmp_path / "media"  # not made yet: the first upload makes it
    assert _ready()[0] == 200
