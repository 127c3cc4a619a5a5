"""Faults on a real deployment's parts: a Redis and Celery workers that the tests start, stop and kill
themselves (never the machine's own Redis), on the PostgreSQL test database pytest creates.

These tests are marked ``services`` (CI's production pass: DATABASE_URL=postgres://..., CELERY_BROKER_URL
set). The Redis is ``/usr/bin/redis-server`` (or ``TUMORSITE_REDIS_SERVER``) on a free port; while a test
uses it, this process's Celery app sends there too (``own_broker``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import kombu.pools
import pytest
from django.conf import settings as django_settings
from django.db import connection

from segmentation.models import ModelVersion
from segmentation.services import model_versions_sync
from segmentation.testing import *  # noqa: F403  (shared fixtures: tiny_bundles_dir, the personas)
from tests.media import in_object_store
from tumorsite.celery import app as celery_app

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = (
    os.environ.get("TUMORSITE_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float, every: float = 0.2, what: str = "the condition"):
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(every)


@dataclass
class RedisServer:
    """A throw-away redis-server (no persistence) on its own port; ``stop()`` and ``start()`` again on the
    same port, as a broker outage."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.answers, timeout=20, what=f"redis-server on port {self.port} answering")
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


@dataclass
class Worker:
    """``celery -A tumorsite worker --pool=solo -B`` on the test database and the own Redis, in its own
    process group (the beat is a child process: a kill takes both, as a container's would)."""

    directory: Path
    env: dict
    name: str
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.directory / f"worker-{self.starts}.log"

    def start(self, *, timeout: float = 120) -> Worker:
        self.starts += 1
        queues = (django_settings.TUMORSITE_SEGMENTATION_QUEUE, django_settings.CELERY_TASK_DEFAULT_QUEUE)
        command = [
            sys.executable, "-m", "celery", "-A", "tumorsite", "worker", "--pool=solo", "--concurrency=1",
            "-B", "--schedule", str(self.directory / "beat-schedule"), "--loglevel=INFO",
            "-n", f"{self.name}-{self.starts}@%h",
            # Both queues, as CI's worker and a CPU-only host (docs/operations.md, "Workers").
            "-Q", ",".join(queues),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=timeout, every=0.5, what="the Celery worker's start")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the Celery worker died at start-up:\n{self.log.read_text()[-3000:]}")
        return " ready." in self.log.read_text()

    def kill9(self) -> None:
        """SIGKILL to the worker and its beat: no shutdown, no acknowledgement, no clean-up."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def logs(self) -> str:
        return "".join((self.directory / f"worker-{n}.log").read_text() for n in range(1, self.starts + 1))


def _database_url() -> str:
    """The database pytest made (test_<name>), for the worker: it must see what the test commits."""
    s = connection.settings_dict
    user = quote(s["USER"] or "", safe="")
    password = quote(s["PASSWORD"] or "", safe="")
    return f"postgres://{user}:{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(directory=tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def own_broker(own_redis, settings, monkeypatch):
    """This process's Celery app sends to ``own_redis`` for the test (and to the CI broker again after).
    Celery reads CELERY_BROKER_URL from the environment before its settings, and keeps a connection pool."""

    def reset_pools():
        # Close every pooled broker connection AND empty kombu's registries: a pool closed but left there
        # would be handed to the next test that sends to the same broker ("Acquire on closed pool").
        kombu.pools.reset()
        celery_app._after_fork()

    monkeypatch.setenv("CELERY_BROKER_URL", own_redis.url)
    settings.CELERY_BROKER_URL = own_redis.url
    reset_pools()
    yield own_redis
    monkeypatch.undo()
    reset_pools()


@pytest.fixture
def tiny_models_for_workers(settings, tiny_bundles_dir):
    """The tiny bundles, registered with absolute paths (a worker finds them whatever its models
    directory), and only ``tiny_unet`` active: one run per case keeps these tests short."""
    settings.TUMORSITE_MODELS_DIR = tiny_bundles_dir
    model_versions_sync()
    for version in ModelVersion.objects.filter(is_ensemble=False):
        version.file_path = str(tiny_bundles_dir / version.file_path)
        version.save()
    ModelVersion.objects.exclude(name="tiny_unet").update(is_active=False)
    return tiny_bundles_dir


@pytest.fixture
def make_worker(own_broker, tmp_path, settings):
    """``make_worker(**env)``: a worker (not started) on the own Redis and the test database, with extra
    environment (e.g. short sweep deadlines). Stopped at the end of the test."""
    workers = []

    def make(**extra_env) -> Worker:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tumorsite.settings.test",
            DATABASE_URL=_database_url(),
            CELERY_BROKER_URL=own_broker.url,
            # With media in an object store (CI), a folder of its own: no disk shared with the test.
            TUMORSITE_VAR_DIR=str(
                tmp_path / "worker-var" if in_object_store(settings) else settings.TUMORSITE_VAR_DIR
            ),
            PYTHONUNBUFFERED="1",
        )
        env.update({key: str(value) for key, value in extra_env.items()})
        worker = Worker(directory=tmp_path, env=env, name=f"reliability-{os.getpid()}")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()
