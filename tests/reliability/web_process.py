"""A web process in production mode, driven through a clinician's whole flow; run by
``test_no_tensorflow_in_web.py`` in fresh interpreters (``python -m tests.reliability.web_process PHASE``).

Phases, each its own process on one SQLite file (``TUMORSITE_VAR_DIR``):

- ``setup``: migrate, a clinician who also reviews, a segmenter's row (no weights: the web never loads
  them) and a small described case base, as an administrator and ``build_case_base`` leave them;
- ``web``: what gunicorn runs: ``tumorsite.wsgi`` with ``tumorsite.settings.production``, then the flow
  through the API (token) and the pages (session): upload, review, correction, tumour type, the case page,
  its similar cases, the report. The broker is Celery's in-memory transport: the messages are recorded
  as they are sent (``before_task_publish``) and nothing in this process consumes them. Where a worker
  would act, this phase runs ``worker`` in another process and waits for it;
- ``worker``: the worker's part: the results of the queued runs (a synthetic mask, written as
  ``segmentation_run_execute`` writes one), then the queued ``recommender`` tasks, for real.

``web`` prints one JSON line: the TensorFlow/Keras modules loaded after start-up and after the flow, the
status codes, and the task names sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("tensorflow", "keras", "tf_keras")
CLINICIAN = "dr_flow"
PASSWORD = "pw-flow-12345"


def heavy_modules() -> list[str]:
    return sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def _django(settings_module: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django  # noqa: PLC0415 (after the settings module is chosen)

    django.setup()


def setup() -> None:
    _django("tumorsite.settings.base")
    from django.contrib.auth import get_user_model  # noqa: PLC0415 (Django is set up first)
    from django.contrib.auth.models import Group  # noqa: PLC0415 (Django is set up first)
    from django.core.management import call_command  # noqa: PLC0415 (Django is set up first)

    from recommender.services import case_base_build  # noqa: PLC0415 (Django is set up first)
    from segmentation.models import ModelVersion  # noqa: PLC0415 (Django is set up first)
    from segmentation.testing import make_case_base  # noqa: PLC0415 (Django is set up first)

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(CLINICIAN, password=PASSWORD)
    user.groups.add(*Group.objects.filter(name__in=["clinician", "reviewer"]))
    # The primary model. No members: the embedding and the type classifier are left out (a worker's
    # models, which the worker phase has none of), so similar cases come from the features alone.
    ModelVersion.objects.create(
        name="ensemble", architecture="ensemble", is_ensemble=True, metadata={"members": []}
    )
    make_case_base(n_per_type=3, user=user)
    case_base_build(use_embedding=False)


def worker(case_id: int, tasks: list[list]) -> None:
    _django("tumorsite.settings.base")
    import numpy as np  # noqa: PLC0415 (Django is set up first)
    from django.utils import timezone  # noqa: PLC0415 (Django is set up first)

    from cases.storage import atomic_with_files  # noqa: PLC0415 (Django is set up first)
    from recommender.tasks import case_analyse_task  # noqa: PLC0415 (Django is set up first)
    from segmentation.models import RunStatus, SegmentationRun  # noqa: PLC0415 (Django is set up first)
    from segmentation.services.files import run_files_save  # noqa: PLC0415 (Django is set up first)

    for run in SegmentationRun.objects.filter(case_id=case_id, status=RunStatus.QUEUED).select_related(
        "model_version", "case__scan"
    ):
        h, w = run.case.scan.height, run.case.scan.width
        yy, xx = np.mgrid[:h, :w]
        prob = np.clip(1.2 - np.hypot(yy - h * 0.45, xx - w * 0.36) / (0.1 * min(h, w)), 0, 1)
        with atomic_with_files():
            run_files_save(run, prob > 0.5, prob)
            run.status, run.finished_at = RunStatus.DONE, timezone.now()
            run.save(update_fields=["status", "finished_at", "mask_file", "probability_file"])
    for name, args in tasks:
        if name == case_analyse_task.name:
            case_analyse_task.apply(args=args)


def web() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tumorsite.settings.production"
    import tumorsite.wsgi  # noqa: F401, PLC0415 (what gunicorn imports)

    loaded = {"after_start": heavy_modules()}
    from celery.signals import before_task_publish  # noqa: PLC0415 (after the app, as gunicorn does)
    from django.conf import settings  # noqa: PLC0415 (Django is set up first)
    from django.contrib.auth import get_user_model  # noqa: PLC0415 (Django is set up first)
    from django.test import Client  # noqa: PLC0415 (Django is set up first)
    from django.test.utils import override_settings  # noqa: PLC0415 (Django is set up first)
    from django.urls import get_resolver  # noqa: PLC0415 (Django is set up first)
    from rest_framework.test import APIClient  # noqa: PLC0415 (Django is set up first)

    from cases.rendering import png_bytes  # noqa: PLC0415 (Django is set up first)
    from tests.cases.builders import synthetic_slice  # noqa: PLC0415 (no pytest: the web image has none)

    get_resolver().url_patterns  # noqa: B018 (every view module, as the first request imports them)
    loaded["after_urls"] = heavy_modules()

    sent: list[list] = []
    before_task_publish.connect(
        lambda headers=None, body=None, **kw: sent.append([headers["task"], list(body[0])]), weak=False
    )
    statuses: dict[str, int] = {}

    def step(name, response, expected=200):
        statuses[name] = response.status_code
        if response.status_code != expected:
            body = response.content[:500].decode(errors="replace")
            raise SystemExit(f"{name}: HTTP {response.status_code}, expected {expected}: {body}")
        return response

    https = {"HTTP_X_FORWARDED_PROTO": "https"}  # the proxy in front of gunicorn terminates TLS
    # The manifest storage wants collectstatic's output; which file a page links to is not this test's.
    plain_static = {"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    with override_settings(STORAGES={**settings.STORAGES, **plain_static}):
        api = APIClient(**https)
        token = step("token", api.post("/api/auth/token/", {"username": CLINICIAN, "password": PASSWORD}))
        api.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
        image, lesion = synthetic_slice(96, 96, centre=(43, 35), radius=9)
        upload = open_png(png_bytes(image))
        created = step("upload", api.post("/api/cases/", {"image": upload, "patient": "FLOW"}), 201)
        case_id = created.json()["id"]
        _run_worker(case_id, [])  # the runs are segmented elsewhere

        detail = step("case_api", api.get(f"/api/cases/{case_id}/")).json()
        primary = next(r for r in detail["segmentations"] if r["model"] == "ensemble")
        step("review", api.post(f"/api/segmentations/{primary['id']}/review/", {"validated": True}))
        mask = open_png(png_bytes((lesion * 255).astype("uint8")), "mask.png")
        step("correct", api.post(f"/api/cases/{case_id}/masks/", {"mask": mask}), 201)
        step("type", api.patch(f"/api/cases/{case_id}/", {"tumour_type": "glioma"}, format="json"))
        _run_worker(case_id, sent)  # the worker describes the case the decisions changed

        pages = Client(**https)
        pages.force_login(get_user_model().objects.get(username=CLINICIAN))
        step("case_list", pages.get("/"))
        step("upload_page", pages.get("/upload/"))
        step("case_page", pages.get(f"/cases/{case_id}/"))
        step("case_state", pages.get(f"/cases/{case_id}/state.json"))
        step("overlay", pages.get(f"/cases/{case_id}/overlay.png"))
        similar = step("similar_page", pages.get(f"/cases/{case_id}/similar/"))
        statuses["similar_status"] = similar["X-Similar-Status"]
        similar_api = step("similar_api", api.get(f"/api/cases/{case_id}/similar/")).json()
        statuses["similar_count"] = len(similar_api.get("results", similar_api))
        step("report", pages.get(f"/cases/{case_id}/report/"))
        step("diagnosis", api.post(f"/api/cases/{case_id}/diagnoses/", {"name": "Glioblastoma"}), 201)
    loaded["after_flow"] = heavy_modules()
    print(json.dumps({"loaded": loaded, "statuses": statuses, "sent": sent, "case": case_id}))


def open_png(data: bytes, name: str = "slice.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: PLC0415 (Django is set up first)

    return SimpleUploadedFile(name, data, content_type="image/png")


def _run_worker(case_id: int, tasks: list[list]) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tumorsite.settings.base"}
    python = os.environ.get("TUMORSITE_WORKER_PYTHON") or sys.executable  # the web's may have no TensorFlow
    command = [
        python,
        "-m",
        "tests.reliability.web_process",
        "worker",
        str(case_id),
        json.dumps(tasks),
    ]
    subprocess.run(command, env=env, check=True, timeout=300)


if __name__ == "__main__":
    phase = sys.argv[1]
    if phase == "setup":
        setup()
    elif phase == "worker":
        worker(int(sys.argv[2]), json.loads(sys.argv[3]))
    elif phase == "web":
        web()
    else:
        raise SystemExit(f"unknown phase {phase!r}: setup, worker or web")
