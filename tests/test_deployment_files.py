"""docker-compose.yml and the Dockerfile (#31, item 6): a GPU worker on the segmentation queue, a CPU worker
for the rest and the beat, the web image without TensorFlow, and the object-store variables for every
process. No Docker engine is needed: compose resolves its file itself (``docker-compose config``), and the
Dockerfile is read as text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media import OBJECT_STORE_VARIABLES

REPO = Path(__file__).resolve().parent.parent
COMPOSE = Path(sys.executable).parent / "docker-compose"


def _compose(**env: str) -> dict:
    """The resolved services, with placeholder secrets and ``env`` as the caller's environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TUMORSITE_", "AWS_", "COMPOSE_"))}
    clean.update(SECRET_KEY="placeholder", POSTGRES_PASSWORD="placeholder", **env)
    done = subprocess.run(
        [str(COMPOSE), "-f", "docker-compose.yml", "config", "--format", "json"],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["services"]


def _option(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def _stages() -> dict[str, str]:
    """The Dockerfile's stages by name, each with its text."""
    text = (REPO / "Dockerfile").read_text()
    parts = re.split(r"^FROM \S+ AS (\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.fixture(scope="module")
def services() -> dict:
    return _compose()


def test_the_gpu_worker_consumes_only_the_segmentation_queue_on_a_reserved_gpu(services):
    gpu = services["worker-gpu"]
    assert gpu["build"]["target"] == "worker-gpu"
    assert _option(gpu["command"], "-Q") == "segmentation" and "-B" not in gpu["command"]
    assert "--pool=solo" in gpu["command"]  # TensorFlow is not fork-safe
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    assert "celery" in " ".join(gpu["healthcheck"]["test"])


def test_the_cpu_worker_consumes_the_default_queue_and_runs_the_one_beat(services):
    cpu = services["worker"]
    assert cpu["build"]["target"] == "worker"
    assert _option(cpu["command"], "-Q") == "celery" and "-B" in cpu["command"]
    assert "deploy" not in cpu  # no GPU
    assert [name for name, service in services.items() if "-B" in (service.get("command") or [])] == [
        "worker"
    ]


def test_a_host_without_a_gpu_gives_the_cpu_worker_both_queues():
    services = _compose(TUMORSITE_WORKER_QUEUES="celery,segmentation")
    assert _option(services["worker"]["command"], "-Q") == "celery,segmentation"


def test_renamed_queues_reach_every_process_and_both_workers(services):
    renamed = _compose(TUMORSITE_SEGMENTATION_QUEUE="seg-a100", TUMORSITE_DEFAULT_QUEUE="default")
    assert _option(renamed["worker-gpu"]["command"], "-Q") == "seg-a100"
    for name in ("web", "worker", "worker-gpu", "migrate"):
        environment = renamed[name]["environment"]
        assert (environment["TUMORSITE_SEGMENTATION_QUEUE"], environment["TUMORSITE_DEFAULT_QUEUE"]) == (
            "seg-a100",
            "default",
        )


def test_every_process_gets_the_object_store_variables_and_their_defaults_are_the_settings_own(services):
    for name in ("web", "worker", "worker-gpu", "migrate"):
        environment = services[name]["environment"]
        assert set(OBJECT_STORE_VARIABLES) <= set(environment), name
        assert environment["TUMORSITE_S3_BUCKET"] == ""  # unset: local media
        # An empty region or addressing style would be refused or wrong: compose passes the defaults.
        assert (environment["TUMORSITE_S3_REGION"], environment["TUMORSITE_S3_ADDRESSING_STYLE"]) == (
            "us-east-1",
            "path",
        )
    configured = _compose(TUMORSITE_S3_BUCKET="scans", TUMORSITE_S3_ENDPOINT_URL="https://s3.example.org")
    assert configured["worker-gpu"]["environment"]["TUMORSITE_S3_BUCKET"] == "scans"
    assert configured["web"]["environment"]["TUMORSITE_S3_ENDPOINT_URL"] == "https://s3.example.org"


def test_each_image_installs_exactly_its_lock_and_only_the_workers_get_tensorflow():
    stages = _stages()
    assert list(stages) == ["runtime", "web", "worker-gpu", "worker"]  # `docker build .` gives the worker
    locks = {
        name: re.findall(r"pip install --require-hashes -r (requirements/\S+)", text)
        for name, text in stages.items()
    }
    assert locks == {
        "runtime": [],
        "web": ["requirements/web.txt"],
        "worker-gpu": ["requirements/gpu.txt"],
        "worker": ["requirements/base.txt"],
    }
    pins = {
        lock: set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", (REPO / lock).read_text(), flags=re.MULTILINE))
        for lock in ("requirements/web.txt", "requirements/gpu.txt", "requirements/base.txt")
    }
    assert not {"tensorflow", "tensorflow-cpu", "keras"} & pins["requirements/web.txt"]
    assert {"tensorflow", "nvidia-cudnn-cu12"} <= pins["requirements/gpu.txt"]
    assert "tensorflow-cpu" in pins["requirements/base.txt"]
    commands = {
        name: json.loads(re.search(r"^CMD (.*)$", stages[name], re.MULTILINE)[1])
        for name in stages
        if name != "runtime"
    }
    assert _option(commands["worker-gpu"], "-Q") == "segmentation"
    assert "-Q" not in commands["worker"]  # alone on a CPU-only host, it takes both queues
    assert commands["web"][0] == "gunicorn"
