"""TensorFlow never loads in the web process in production (#31, item 5).

A fresh interpreter imports ``tumorsite.wsgi`` with ``tumorsite.settings.production``, as gunicorn does, and
a clinician goes through a whole case (``tests/reliability/web_process.py``: upload through the API, the
worker's results, review, correction, tumour type, the case page, similar cases, the report). The broker is
Celery's in-memory transport, whose messages the web process records and never consumes; the worker's part
runs in processes of its own. Neither ``tensorflow`` nor ``keras`` may be in the web process's
``sys.modules``, after start-up or after the flow.

The web image has no TensorFlow at all (Dockerfile's ``web`` stage, ``requirements/web.txt``), so a page
that needed it would fail there: with ``TUMORSITE_WEB_PYTHON`` naming the Python of a virtualenv made from
that lock (``python3.11 -m venv V && V/bin/pip install --require-hashes -r requirements/web.txt && V/bin/pip
install --no-deps --no-build-isolation -e .``), the web phase runs there, and the worker's in this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> dict:
    var = tmp_path_factory.mktemp("web-process")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "CELERY_", "DJANGO_", "TUMORSITE_"))
    }
    env.update(
        TUMORSITE_VAR_DIR=str(var),  # its own SQLite file and media
        TUMORSITE_MODELS_DIR=str(var / "models"),  # no weights: the web never loads any
        SECRET_KEY="a-long-random-key-for-this-test-only-" + "x" * 30,
        TUMORSITE_PSEUDONYM_KEY="a-long-pseudonym-key-for-this-test-only-" + "y" * 30,
        ALLOWED_HOSTS="testserver",
        CELERY_BROKER_URL="memory://",
        PYTHONPATH=str(REPO_ROOT),
        TUMORSITE_WORKER_PYTHON=sys.executable,
    )

    def phase(name: str, python: str = sys.executable) -> str:
        done = subprocess.run(
            [python, "-m", "tests.reliability.web_process", name],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"phase {name} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
        return done.stdout

    phase("setup")
    web_python = os.environ.get("TUMORSITE_WEB_PYTHON") or sys.executable
    return json.loads(phase("web", web_python).strip().splitlines()[-1])


def test_the_web_process_starts_without_tensorflow(flow):
    assert flow["loaded"]["after_start"] == []
    assert flow["loaded"]["after_urls"] == []  # every view and API module imported


def test_a_clinicians_whole_flow_loads_no_tensorflow_in_the_web_process(flow):
    assert flow["statuses"] == {
        "token": 200,
        "upload": 201,
        "case_api": 200,
        "review": 200,
        "correct": 201,
        "type": 200,
        "case_list": 200,
        "upload_page": 200,
        "case_page": 200,
        "case_state": 200,
        "overlay": 200,
        "similar_page": 200,
        "similar_status": "ready",  # the worker described the case
        "similar_api": 200,
        "similar_count": flow["statuses"]["similar_count"],
        "report": 200,
        "diagnosis": 201,
    }
    assert flow["statuses"]["similar_count"] > 0
    assert flow["loaded"]["after_flow"] == []


def test_the_model_work_went_to_the_broker(flow):
    """The upload queued its run; the review, the correction and the type each queued the case's
    description for a worker."""
    case = flow["case"]
    assert flow["sent"] == [
        ["segmentation.tasks.run_segmentation_task", [flow["sent"][0][1][0]]],
        ["recommender.tasks.case_analyse_task", [case]],
        ["recommender.tasks.case_analyse_task", [case]],
        ["recommender.tasks.case_analyse_task", [case]],
    ]
